import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { CALTECH_DIR, MODELS_DIR } from '../helpers/shared';

const run = promisify(execFile);
const BIN = resolve(__dirname, '..', '..', 'dist', 'bin', 'ompf.js');

/** The installed `ompf` binary as users run it: compiled output, migrations shipped beside it. */
describe('the built ompf binary', () => {
  it('exists (npm ci builds it through the prepare script)', () => {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` (npm ci runs it).`);
  });

  it('indexes a folder and answers a search in a fresh store', async () => {
    // Prepare
    const work = mkdtempSync(join(tmpdir(), 'ompf-bin-'));
    mkdirSync(join(work, 'gallery'));
    copyFileSync(join(CALTECH_DIR, 'okapi', 'image_0001.jpg'), join(work, 'gallery', 'a.jpg'));
    copyFileSync(join(CALTECH_DIR, 'rhino', 'image_0001.jpg'), join(work, 'gallery', 'b.jpg'));
    const env = {
      ...process.env,
      OMPF_MODELS_DIR: MODELS_DIR,
      OMPF_MODEL: 'mobilenetv2-int8',
      OMPF_DATA_DIR: join(work, 'store'),
    };
    // Act
    await run(process.execPath, [BIN, 'index', join(work, 'gallery')], { env });
    const { stdout } = await run(
      process.execPath,
      [BIN, '--json', 'search', join(CALTECH_DIR, 'okapi', 'image_0002.jpg'), '-n', '2'],
      { env },
    );
    // Assess
    const { hits } = JSON.parse(stdout) as { hits: { key: string }[] };
    expect(hits.map((h) => h.key)).toEqual(['a.jpg', 'b.jpg']);
  });
});

/** The other commands a user runs (npm run soak, npm run lambda:local): each explains itself. */
describe('the built soak and lambda:local commands', () => {
  const bin = (name: string) => resolve(__dirname, '..', '..', 'dist', 'bin', `${name}.js`);
  const env = { ...process.env };
  delete env.NODE_OPTIONS;

  it.each([
    ['soak', ['--help'], /--restart-command[\s\S]*--harness/],
    ['lambda-local', ['--help'], /serve \[options\][\s\S]*measure \[options\]/],
    ['lambda-local', ['serve', '--help'], /--stage <name>[\s\S]*--port <port>/],
    ['lambda-local', ['measure', '--help'], /--model <names\.\.\.>[\s\S]*--cold-starts <n>/],
  ])('%s %j prints its options and exits 0', async (name, args, options) => {
    // Act
    const { stdout } = await run(process.execPath, [bin(name), ...args], { env });

    // Assess
    expect(stdout).toMatch(options);
  });

  it('soak refuses a bad option value at once, saying what it needs', async () => {
    // Act
    const failure = await run(process.execPath, [bin('soak'), '--events', 'many'], { env }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );

    // Assess
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toMatch(/--events <n>' argument 'many' is invalid\. a positive whole number/);
  });
});
