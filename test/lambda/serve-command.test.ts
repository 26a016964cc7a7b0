import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CALTECH_DIR, MODELS_DIR, testDatabaseUrl } from '../helpers/shared';

const BIN = resolve(__dirname, '..', '..', 'dist', 'bin', 'lambda-local.js');

/**
 * `npm run lambda:local` as a user runs it: the built command synthesizes the stage, deploys it through
 * the harness, prints where its API and bucket are, indexes what lands in the bucket, answers the API
 * behind its key, and stops cleanly on SIGTERM.
 */
describe('npm run lambda:local (serve)', () => {
  it('deploys the stage locally, indexes a photo PUT into its bucket, answers behind the API key, and exits 0 on SIGTERM', async () => {
    // Prepare
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` (npm ci runs it).`);
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(
      process.execPath,
      [
        BIN,
        'serve',
        '--quiet',
        '--model',
        'mobilenetv2-int8',
        '--models-dir',
        MODELS_DIR,
        '--port',
        '0',
        '--database-url',
        testDatabaseUrl(),
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    try {
      for (let waited = 0; !stdout.includes('stops it.'); waited += 250) {
        if (waited > 240_000 || child.exitCode !== null)
          throw new Error(`did not start:\n${stderr.slice(-2_000)}`);
        await new Promise((done) => setTimeout(done, 250));
      }
      const api = /API:\s+(\S+)\s+x-api-key: (\S+)/.exec(stdout)!;
      const bucket = /bucket:\s+(\S+) at (\S+)/.exec(stdout)!;
      const s3 = new S3Client({
        endpoint: bucket[2]!,
        forcePathStyle: true,
        region: 'us-east-1',
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      });
      const photo = readFileSync(join(CALTECH_DIR, 'Leopards', 'image_0001.jpg'));

      // Act
      await s3.send(new PutObjectCommand({ Bucket: bucket[1], Key: 'leopards/first.jpg', Body: photo }));
      s3.destroy();
      const search = (key?: string) =>
        fetch(`${api[1]}/search?n=1`, {
          method: 'POST',
          headers: { 'content-type': 'image/jpeg', ...(key ? { 'x-api-key': key } : {}) },
          body: photo,
        });
      let hits: { key: string }[] = [];
      for (let attempt = 0; hits.length === 0 && attempt < 80; attempt++) {
        await new Promise((done) => setTimeout(done, 250));
        hits = ((await (await search(api[2])).json()) as { hits: { key: string }[] }).hits;
      }
      const forbidden = await search();

      // Assess
      expect(hits.map((h) => h.key)).toEqual(['leopards/first.jpg']);
      expect(forbidden.status).toBe(403);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 300_000);
});
