import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { AssetHashType, DockerImage } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import {
  BUILTIN_MODELS,
  modelDownloadUrls,
  modelPath,
  verifyModelFile,
} from '../adapters/models/model-registry';
import { ModelFileError } from '../core/errors';
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

/** A custom model's spec travels in the model layer under this name (the functions' OMPF_MODEL). */
export const CUSTOM_MODEL_SPEC_FILE = 'model-spec.json';

export function isBuiltinModel(spec: ModelSpec): boolean {
  return BUILTIN_MODELS[spec.id] === spec;
}

/**
 * The spec a custom model's functions load (/opt/models/model-spec.json): the same model, its file
 * named relative to the spec (next to it in the layer), its checksum the one verified at synth.
 */
function layerSpec(spec: ModelSpec, sha256: string): string {
  return `${JSON.stringify(
    {
      id: spec.id,
      description: spec.description,
      file: basename(spec.file),
      sha256,
      dimension: spec.dimension,
      preprocess: spec.preprocess,
      ...(spec.inputName === undefined ? {} : { inputName: spec.inputName }),
      ...(spec.featureTensor === undefined ? {} : { featureTensor: spec.featureTensor }),
    },
    null,
    2,
  )}\n`;
}

/**
 * The model file as a layer (/opt/models/<file>; a custom model also gets its spec there), copied from the models directory only when it is
 * exactly one of the files the spec accepts (size and SHA-256, as every load checks); the functions
 * verify it again at cold start. Hashed by the file's own checksum: the layer changes exactly when
 * the model file does.
 */
export function modelLayer(
  scope: Construct,
  id: string,
  spec: ModelSpec,
  modelsDir: string,
): lambda.LayerVersion {
  // The asset hash is needed now, but reading and hashing a 100 MB file for every synth of every stage
  // is not: the accepted files differ in size, so a stat names the one expected, and bundling (which
  // runs only for the stacks being deployed) verifies it in full.
  const sha256 = expectedBySize(spec, modelsDir);
  const customSpec = isBuiltinModel(spec) ? undefined : layerSpec(spec, sha256);
  return new lambda.LayerVersion(scope, id, {
    description: `ompf model ${spec.id} (${basename(spec.file)}, sha256 ${sha256})`,
    code: lambda.Code.fromAsset(join(REPO_ROOT, 'layers'), {
      assetHashType: AssetHashType.CUSTOM,
      assetHash: customSpec
        ? `model-${createHash('sha256').update(customSpec).digest('hex')}`
        : `model-${sha256}`,
      bundling: {
        image: NO_DOCKER,
        local: {
          tryBundle(outputDir) {
            // Refused here, at bundling, so `cdk synth` of another stage is not blocked by this one.
            const verified = verifiedModelOrProblem(spec, modelsDir);
            if (verified instanceof Error) {
              throw new Error(
                `${verified.message} ${verified.hint ?? ''} Then deploy again (or set -c modelsDir=DIR).`,
              );
            }
            if (verified.file.sha256 !== sha256) {
              throw new Error(
                `${verified.path} is ${verified.file.origin} (sha256 ${verified.file.sha256}), but its size named sha256 ${sha256}: it changed during synth. Run it again.`,
              );
            }
            mkdirSync(join(outputDir, 'models'), { recursive: true });
            // basename: a custom spec may name its file by an absolute path on the synth machine.
            copyFileSync(verified.path, join(outputDir, 'models', basename(spec.file)));
            if (customSpec) writeFileSync(join(outputDir, 'models', CUSTOM_MODEL_SPEC_FILE), customSpec);
            return true;
          },
        },
      },
    }),
  });
}

/** The SHA-256 of the accepted file whose size the model file has (the first accepted one otherwise). */
function expectedBySize(spec: ModelSpec, modelsDir: string): string {
  const path = modelPath(spec, modelsDir);
  const size = existsSync(path) ? statSync(path).size : undefined;
  return (spec.accepted.find((file) => file.sizeBytes === size) ?? spec.accepted[0]).sha256;
}

function verifiedModelOrProblem(spec: ModelSpec, modelsDir: string) {
  try {
    return verifyModelFile(spec, modelsDir, modelDownloadUrls(spec)[0]);
  } catch (error) {
    if (error instanceof ModelFileError) return error;
    throw error;
  }
}
