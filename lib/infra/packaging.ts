import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AssetHashType, DockerImage } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { ModelSpec } from '../core/model-spec';

/** The repository root (cdk runs the app from it; tests may not). */
export const REPO_ROOT = findRoot(__dirname);

function findRoot(from: string): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, 'cdk.json')) && existsSync(join(dir, 'package.json'))) return dir;
    const parent = join(dir, '..');
    if (parent === dir) throw new Error(`No cdk.json above ${from}.`);
    dir = parent;
  }
}

/** Local bundling only: no Docker here. The image is never pulled. */
const NO_DOCKER = DockerImage.fromRegistry('ompf/local-bundling-only');

function packageVersion(name: string): string {
  return (
    JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;
}

/**
 * onnxruntime-node and sharp, pruned to the Linux binaries of one architecture
 * (layers/build-native-layer.sh). The asset hash names what goes in, so a new version or another
 * architecture publishes a new layer version and nothing else does.
 */
export function nativeLayer(
  scope: Construct,
  id: string,
  architecture: lambda.Architecture,
): lambda.LayerVersion {
  const script = join(REPO_ROOT, 'layers', 'build-native-layer.sh');
  const hash = createHash('sha256')
    .update(readFileSync(script))
    .update(
      `onnxruntime-node@${packageVersion('onnxruntime-node')} sharp@${packageVersion('sharp')} ${architecture.name}`,
    )
    .digest('hex');
  return new lambda.LayerVersion(scope, id, {
    description: `ompf native runtime: onnxruntime-node ${packageVersion('onnxruntime-node')} + sharp ${packageVersion('sharp')}, linux ${architecture.name}`,
    compatibleArchitectures: [architecture],
    code: lambda.Code.fromAsset(join(REPO_ROOT, 'layers'), {
      assetHashType: AssetHashType.CUSTOM,
      assetHash: hash,
      bundling: {
        image: NO_DOCKER,
        local: {
          tryBundle(outputDir) {
            execFileSync('bash', [script, outputDir, architecture.name], {
              stdio: ['ignore', 'ignore', 'inherit'],
            });
            return true;
          },
        },
      },
    }),
  });
}

/**
 * The model file as a layer (/opt/models/<file>), copied from the models directory only after its
 * SHA-256 matches the spec; the functions verify it again at cold start. Hashed by the model's
 * checksum: the layer changes exactly when the model does.
 */
export function modelLayer(
  scope: Construct,
  id: string,
  spec: ModelSpec,
  modelsDir: string,
): lambda.LayerVersion {
  return new lambda.LayerVersion(scope, id, {
    description: `ompf model ${spec.id} (${spec.file}, sha256 ${spec.sha256})`,
    code: lambda.Code.fromAsset(join(REPO_ROOT, 'layers'), {
      assetHashType: AssetHashType.CUSTOM,
      assetHash: `model-${spec.sha256}`,
      bundling: {
        image: NO_DOCKER,
        local: {
          tryBundle(outputDir) {
            const source = join(modelsDir, spec.file);
            if (!existsSync(source)) {
              throw new Error(
                `Model '${spec.id}' is not at ${source}. Run \`npx ompf models pull ${spec.id}\` (or set -c modelsDir=DIR), then deploy again.`,
              );
            }
            const actual = createHash('sha256').update(readFileSync(source)).digest('hex');
            if (actual !== spec.sha256) {
              throw new Error(
                `${source} has SHA-256 ${actual}, expected ${spec.sha256}: refusing to deploy it.`,
              );
            }
            mkdirSync(join(outputDir, 'models'), { recursive: true });
            copyFileSync(source, join(outputDir, 'models', spec.file));
            return true;
          },
        },
      },
    }),
  });
}
