import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, ModelFileError } from '../../core/errors';
import { IMAGENET_PREPROCESS, type AcceptedModelFile, type ModelSpec } from '../../core/model-spec';

/**
 * Models ompf knows by name. Each names the exact files it accepts: the file its download source
 * serves today, then earlier copies known to carry the same weights. Checked on 2026-12-01 against the
 * ONNX Model Zoo (ONNX_HUB_MANIFEST.json and the LFS pointers at its last commit: its GitHub LFS
 * downloads stopped on 2025-07-01 and the files live on in the Hugging Face organisation
 * `onnxmodelzoo`) and against public projects that pin the Hugging Face copies.
 */
export const BUILTIN_MODELS: Readonly<Record<string, ModelSpec>> = {
  resnet50: {
    id: 'resnet50',
    description:
      'ResNet50 v1 (ONNX Model Zoo resnet50-v1-12), ImageNet-1k, 2048-d pooled features. The default.',
    file: 'resnet50-v1-12.onnx',
    accepted: [
      {
        sha256: '3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526',
        sizeBytes: 102_576_593,
        origin:
          'the ONNX Model Zoo file since 2022-07-18, as Hugging Face onnxmodelzoo/resnet50-v1-12 serves it (revision 1f95315d)',
      },
      {
        sha256: 'ab65bdc02c5b3123eb3cdf6dac01742438517d8635d4f233913b2be1c70db3b6',
        sizeBytes: 102_576_419,
        origin:
          'the ONNX Model Zoo revision of 2022-06-30 (same weights, batch fixed at 1; no longer served)',
      },
    ],
    downloadPath: 'resnet50-v1-12/resolve/1f95315d8bd3b3ca2ceabe54d274e0cdf5a83bbe/resnet50-v1-12.onnx',
    urls: [],
    dimension: 2048,
    preprocess: IMAGENET_PREPROCESS,
  },
  'resnet50-int8': {
    id: 'resnet50-int8',
    description:
      'ResNet50 v1 int8 (ONNX Model Zoo resnet50-v1-12-int8), 2048-d; 4x smaller, 2.5-4x faster on CPUs with VNNI.',
    file: 'resnet50-v1-12-int8.onnx',
    accepted: [
      {
        sha256: 'c234f30975989788b4405f25253275aae247ab6dbdd34aaa69ab0a59ff76f6d0',
        sizeBytes: 25_816_052,
        origin:
          'the ONNX Model Zoo file since 2022-07-18, as Hugging Face onnxmodelzoo/resnet50-v1-12-int8 serves it (revision d843735a)',
      },
      {
        sha256: 'd1a4461aeaa1c7a639a89c806b51f3ad8c228cae0039d3cefd6c6ba406dcec37',
        sizeBytes: 25_815_878,
        origin:
          'the ONNX Model Zoo revision of 2022-06-30 (same weights, batch fixed at 1; no longer served)',
      },
    ],
    downloadPath:
      'resnet50-v1-12-int8/resolve/d843735a7f2c4a254931a633f6dc5758d52f06ee/resnet50-v1-12-int8.onnx',
    urls: [],
    dimension: 2048,
    preprocess: IMAGENET_PREPROCESS,
  },
  'mobilenetv2-int8': {
    id: 'mobilenetv2-int8',
    description: 'MobileNetV2 1.0 int8 (ONNX Model Zoo mobilenetv2-12-int8), 1280-d; fast, 3.7 MB.',
    file: 'mobilenetv2-12-int8.onnx',
    accepted: [
      {
        sha256: 'cc028fe6cae7bc11a4ff53cfc9b79c920e8be65ce33a904ec3e2a8f66d77f95f',
        sizeBytes: 3_655_033,
        origin: 'the ONNX Model Zoo file, as Hugging Face onnxmodelzoo/mobilenetv2-12-int8 serves it',
      },
      {
        sha256: '83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f',
        sizeBytes: 3_655_640,
        origin:
          "a re-save of the zoo's file found in another public repository (607 bytes larger; never served by the zoo; classifies ImageNet photos as MobileNetV2-int8 should)",
      },
    ],
    // No immutable revision of this repository could be checked here, so it follows `main`; the
    // checksum still pins the bytes, and a changed file is refused.
    downloadPath: 'mobilenetv2-12-int8/resolve/main/mobilenetv2-12-int8.onnx',
    urls: [],
    dimension: 1280,
    preprocess: IMAGENET_PREPROCESS,
  },
};

const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');
const triple = z.tuple([z.number(), z.number(), z.number()]);

/** A custom model described in a JSON file (OMPF_MODEL=./my-model.json). */
const customSpecSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lowercase letters, digits, dot, dash, underscore'),
  description: z.string().optional(),
  file: z.string().min(1),
  sha256: sha256Schema,
  urls: z.array(z.url()).optional(),
  inputName: z.string().optional(),
  featureTensor: z.string().optional(),
  dimension: z.number().int().min(1).max(4000),
  preprocess: z
    .strictObject({
      resizeShorterTo: z.number().int().min(1).max(4096),
      cropSize: z.number().int().min(1).max(4096),
      mean: triple,
      std: triple.refine((values) => values.every((v) => v > 0), 'std values must be positive'),
    })
    .optional(),
});

/** A name of a built-in model, or the path of a JSON spec file. */
export function resolveModelSpec(nameOrPath: string): ModelSpec {
  const builtin = BUILTIN_MODELS[nameOrPath];
  if (builtin) return builtin;
  if (!nameOrPath.endsWith('.json')) {
    throw new ConfigError(`Unknown model '${nameOrPath}'.`, {
      hint: `Use one of ${Object.keys(BUILTIN_MODELS).join(', ')}, or the path of a model spec .json file.`,
    });
  }
  const specPath = resolve(nameOrPath);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(specPath, 'utf8'));
  } catch (cause) {
    throw new ConfigError(`Cannot read the model spec ${specPath}: ${(cause as Error).message}`, {
      cause,
      hint: 'Check the path and that the file is valid JSON.',
    });
  }
  const parsed = customSpecSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new ConfigError(`Invalid model spec ${specPath}: ${problems}.`, {
      hint: 'Fix the listed fields; see "Custom models" in the README.',
    });
  }
  const spec = parsed.data;
  return {
    id: spec.id,
    description: spec.description ?? `Custom model from ${specPath}`,
    // A relative file is relative to the spec file, so a spec and its model travel together.
    file: isAbsolute(spec.file) ? spec.file : join(dirname(specPath), spec.file),
    accepted: [{ sha256: spec.sha256, origin: `the file named by ${specPath}` }],
    urls: spec.urls ?? [],
    ...(spec.inputName === undefined ? {} : { inputName: spec.inputName }),
    ...(spec.featureTensor === undefined ? {} : { featureTensor: spec.featureTensor }),
    dimension: spec.dimension,
    preprocess: spec.preprocess ?? IMAGENET_PREPROCESS,
  };
}

export function modelPath(spec: ModelSpec, modelsDir: string): string {
  return isAbsolute(spec.file) ? spec.file : join(modelsDir, spec.file);
}

/** Where built-in models download from unless OMPF_MODEL_BASE_URL says otherwise. */
export const DEFAULT_MODEL_BASE_URL = 'https://huggingface.co/onnxmodelzoo';

/** The URLs `ompf models pull` tries, in order: the pinned file under the download base, then the spec's own. */
export function modelDownloadUrls(spec: ModelSpec, baseUrl: string = DEFAULT_MODEL_BASE_URL): string[] {
  const base = baseUrl.replace(/\/+$/, '');
  return [...(spec.downloadPath ? [`${base}/${spec.downloadPath}`] : []), ...spec.urls];
}

/** The SHA-256 a user should expect: the file the download source serves. */
export function expectedSha256(spec: ModelSpec): string {
  return spec.accepted[0].sha256;
}

function describeAccepted(spec: ModelSpec): string {
  return spec.accepted
    .map((file) => `${file.sha256}${file.sizeBytes === undefined ? '' : `, ${file.sizeBytes} bytes`}`)
    .join(' or ');
}

/** How to install the file without `ompf models pull`: used by every error that leaves no model. */
export function placeByHandHint(spec: ModelSpec, path: string, url: string | undefined): string {
  const from = url ? `Download ${url} on a machine with network access and copy it` : 'Copy the model file';
  return `${from} to ${path} (sha256 ${expectedSha256(spec)}), or set OMPF_MODELS_DIR to the folder holding it, or pick another model with --model / OMPF_MODEL (for example mobilenetv2-int8).`;
}

export interface VerifiedModel {
  readonly path: string;
  readonly bytes: Uint8Array;
  /** Which of the spec's accepted files this is. */
  readonly file: AcceptedModelFile;
}

/**
 * Read the model file and check that it is exactly one of the files the spec accepts (size first,
 * then SHA-256). Refuses a missing, truncated or altered file, saying what to do.
 */
export function verifyModelFile(spec: ModelSpec, modelsDir: string, downloadUrl?: string): VerifiedModel {
  const path = modelPath(spec, modelsDir);
  if (!existsSync(path)) {
    throw new ModelFileError(`Model '${spec.id}' is not installed: ${path} does not exist.`, {
      hint: downloadUrl
        ? `Run \`ompf models pull ${spec.id}\`. Offline: ${placeByHandHint(spec, path, downloadUrl)}`
        : placeByHandHint(spec, path, undefined),
      context: { path },
    });
  }
  const size = statSync(path).size;
  const sizes = spec.accepted.map((file) => file.sizeBytes);
  if (sizes.every((expected) => expected !== undefined && expected !== size)) {
    throw new ModelFileError(
      `Model file ${path} is ${size} bytes; '${spec.id}' is ${sizes.join(' or ')} bytes: it is truncated or a different file.`,
      {
        hint: `Delete it and run \`ompf models pull ${spec.id}\` again.`,
        context: { path, size, expected: sizes },
      },
    );
  }
  const bytes = readFileSync(path);
  const actual = createHash('sha256').update(bytes).digest('hex');
  const file = spec.accepted.find((candidate) => candidate.sha256 === actual);
  if (!file) {
    throw new ModelFileError(
      `Model file ${path} has SHA-256 ${actual}, expected ${describeAccepted(spec)}: it is corrupt, truncated or a different model.`,
      {
        hint: `Delete it and run \`ompf models pull ${spec.id}\` again.`,
        context: { path, expected: spec.accepted.map((f) => f.sha256), actual },
      },
    );
  }
  return { path, bytes, file };
}

/** The verified bytes of the model file (see verifyModelFile). */
export function readVerifiedModel(
  spec: ModelSpec,
  modelsDir: string,
  baseUrl: string = DEFAULT_MODEL_BASE_URL,
): Uint8Array {
  return verifyModelFile(spec, modelsDir, modelDownloadUrls(spec, baseUrl)[0]).bytes;
}

export function installedModels(
  modelsDir: string,
): { spec: ModelSpec; path: string; installed: boolean; bytes: number | undefined }[] {
  return Object.values(BUILTIN_MODELS).map((spec) => {
    const path = modelPath(spec, modelsDir);
    const installed = existsSync(path);
    return { spec, path, installed, bytes: installed ? statSync(path).size : undefined };
  });
}
