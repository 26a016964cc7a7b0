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
