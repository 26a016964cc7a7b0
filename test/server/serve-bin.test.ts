import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { MODELS_DIR } from '../helpers/shared';
import { call, eventually, photo, workDir, type StatusBody } from './server-helpers';

const BIN = resolve(__dirname, '..', '..', 'dist', 'bin', 'ompf.js');

/** `npm start` runs the built `ompf serve`: it must start, index, answer, and stop cleanly on SIGTERM. */
describe('ompf serve (the built binary behind npm start)', () => {
  it('starts on a free port, indexes the gallery, and exits 0 on SIGTERM', async () => {
    // Prepare
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` (npm ci runs it).`);
    const work = workDir({ 'okapi/1.jpg': photo('okapi', 1), 'rhino/1.jpg': photo('rhino', 1) });
    const child = spawn(process.execPath, [BIN, '--json', 'serve', '--port', '0'], {
      env: {
        ...process.env,
        OMPF_MODELS_DIR: MODELS_DIR,
        OMPF_MODEL: 'mobilenetv2-int8',
        OMPF_DATA_DIR: work.data,
        OMPF_GALLERY_DIR: work.gallery,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    try {
      // Act
      const { url } = await eventually(async () => JSON.parse(stdout) as { url: string }, 60_000);
      const status = await eventually(async () => {
        const body = (await call({ url }, 'GET', '/status')).json<StatusBody>();
        expect(body).toMatchObject({ state: 'idle', counts: { indexed: 2, pending: 0 } });
        return body;
      }, 60_000);
      const page = await call({ url }, 'GET', '/');
      child.kill('SIGTERM');
      // Assess
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(status.gallery).toBe(work.gallery);
      expect(page.status).toBe(200);
      expect(await exited).toBe(0);
      expect(stderr).toContain('stopping');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
