import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BUILTIN_MODELS } from '../../lib/adapters/models/model-registry';
import { bytesUnder, LAMBDA_UNZIPPED_LIMIT } from '../../lib/lambda-local/measure';
import { MODELS_DIR } from '../helpers/shared';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
interface Manifest {
  files: Record<string, { source: { path: string } }>;
}

/**
 * `cdk synth` as a user runs it, offline, for two stages: the app compiles, esbuild bundles the
 * functions locally (no Docker), the native layer is pruned and the model layer verified, and
 * cdk-nag passes. Then the packages are checked against Lambda's limits and loaded like Lambda does.
 */
describe('cdk synth (offline, two stages)', () => {
  const out = mkdtempSync(join(tmpdir(), 'ompf-cdk-'));
  const assets: Record<string, string> = {};
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it.each(['dev', 'prod'])(
    'synthesizes stage %s',
    async (stage) => {
      // Act
      await run(
        join(ROOT, 'node_modules', '.bin', 'cdk'),
        [
          'synth',
          '-c',
          `stage=${stage}`,
          '-c',
          'model=mobilenetv2-int8',
          '-c',
          `modelsDir=${MODELS_DIR}`,
          '--no-notices',
          '-q',
          '-o',
          out,
        ],
        { cwd: ROOT, env: { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' }, maxBuffer: 64 * 1024 * 1024 },
      );
      // Assess
      const template = JSON.parse(readFileSync(join(out, `Ompf-${stage}.template.json`), 'utf8')) as {
        Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
      };
      expect(
        Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function').length,
      ).toBeGreaterThanOrEqual(3);
      const manifest = JSON.parse(readFileSync(join(out, `Ompf-${stage}.assets.json`), 'utf8')) as Manifest;
      for (const file of Object.values(manifest.files)) {
        const dir = join(out, file.source.path);
        if (!statSync(dir).isDirectory()) continue; // the template itself
        const entries = readdirSync(dir);
        if (entries.includes('nodejs')) assets.native = dir;
        else if (entries.includes('models')) assets.model = dir;
        else if (entries.includes('index.js') && entries.includes('migrations')) assets.bundle = dir;
      }
      expect(Object.keys(assets).sort()).toEqual(['bundle', 'model', 'native']);
    },
    300_000,
  ); // about 10 s per stage alone; much more on two cores shared with other suites

  it('fits Lambda: native layer + function bundle + the ResNet50 model stay under 250 MB unzipped', () => {
    const native = bytesUnder(assets.native!);
    const bundle = bytesUnder(assets.bundle!);
    const resnet50 = Math.max(...BUILTIN_MODELS.resnet50!.accepted.map((file) => file.sizeBytes!));
    // Measured here: about 66 MB native layer, 8 MB bundle (half of it the source map), 103 MB model.
    expect(native).toBeLessThan(80_000_000);
    expect(bundle).toBeLessThan(15_000_000);
    expect(native + bundle + resnet50).toBeLessThan(LAMBDA_UNZIPPED_LIMIT);
    const binaries = readdirSync(
      join(assets.native!, 'nodejs', 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6'),
    );
    expect(binaries).toEqual(['linux']);
    expect(
      readdirSync(
        join(assets.native!, 'nodejs', 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux'),
      ),
    ).toEqual(['x64']);
    expect(readdirSync(join(assets.model!, 'models'))).toEqual(['mobilenetv2-12-int8.onnx']);
    // Every migration the store ships, whatever their number, and the control schema's (the index catalogue).
    const sqlFiles = (dir: string) =>
      readdirSync(dir, { recursive: true, encoding: 'utf8' })
        .filter((f) => f.endsWith('.sql'))
        .sort();
    const migrations = sqlFiles(join(ROOT, 'lib', 'adapters', 'store', 'migrations'));
    expect(migrations).toEqual(
      expect.arrayContaining(['0001_images.sql', 'control/0001_index_catalogue.sql']),
    );
    expect(sqlFiles(join(assets.bundle!, 'migrations'))).toEqual(migrations);
  });

  it('loads a bundled function the way Lambda does: the layer on the module path, config checked at import', async () => {
    const script = `const m = require(${JSON.stringify(join(assets.bundle!, 'index.js'))}); console.log(typeof m.handler);`;
    const env = {
      PATH: process.env.PATH ?? '',
      NODE_PATH: join(assets.native!, 'nodejs', 'node_modules'),
      OMPF_BUCKET: 'ompf-dev-gallery',
      OMPF_DB_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db',
      OMPF_MODEL: 'mobilenetv2-int8',
      OMPF_MODELS_DIR: join(assets.model!, 'models'),
    };
    // From a directory without node_modules above it, so only the layer can satisfy native requires.
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: tmpdir(), env });
    expect(stdout.trim()).toBe('function');
    const missing = run(process.execPath, ['-e', script], {
      cwd: tmpdir(),
      env: { ...env, OMPF_BUCKET: '', OMPF_DB_SECRET_ARN: '' },
    });
    await expect(missing).rejects.toThrow(/OMPF_BUCKET.*OMPF_DB_SECRET_ARN \/ DATABASE_URL/s);
  });
});
