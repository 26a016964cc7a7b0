import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, ModelFileError } from '../../core/errors';
import { IMAGENET_PREPROCESS, type ModelSpec } from '../../core/model-spec';

const ZOO = 'https://github.com/onnx/models/raw/main/validated/vision/classification';
const HF = 'https://huggingface.co/onnxmodelzoo';

/** Models ompf knows by name. Checksums pinned from the ONNX Model Zoo (see DESIGN.md). */
export const BUILTIN_MODELS: Readonly<Record<string, ModelSpec>> = {
  resnet50: {
    id: 'resnet50',
    description:
      'ResNet50 v1 (ONNX Model Zoo resnet50-v1-12), ImageNet-1k, 2048-d pooled features. The default.',
    file: 'resnet50-v1-12.onnx',
    sha256: 'ab65bdc02c5b3123eb3cdf6dac01742438517d8635d4f233913b2be1c70db3b6',
    sizeBytes: 102_576_419,
    urls: [
      `${ZOO}/resnet/model/resnet50-v1-12.onnx`,
      `${HF}/resnet50-v1-12/resolve/main/resnet50-v1-12.onnx`,
    ],
    dimension: 2048,
    preprocess: IMAGENET_PREPROCESS,
  },
  'resnet50-int8': {
    id: 'resnet50-int8',
    description:
      'ResNet50 v1 int8 (ONNX Model Zoo resnet50-v1-12-int8), 2048-d; 4x smaller, 2.5-4x faster on CPUs with VNNI.',
    file: 'resnet50-v1-12-int8.onnx',
    sha256: 'd1a4461aeaa1c7a639a89c806b51f3ad8c228cae0039d3cefd6c6ba406dcec37',
    sizeBytes: 25_815_878,
    urls: [
      `${ZOO}/resnet/model/resnet50-v1-12-int8.onnx`,
      `${HF}/resnet50-v1-12-int8/resolve/main/resnet50-v1-12-int8.onnx`,
    ],
    dimension: 2048,
    preprocess: IMAGENET_PREPROCESS,
  },
  'mobilenetv2-int8': {
    id: 'mobilenetv2-int8',
    description: 'MobileNetV2 1.0 int8 (ONNX Model Zoo mobilenetv2-12-int8), 1280-d; fast, 3.7 MB.',
    file: 'mobilenetv2-12-int8.onnx',
    sha256: '83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f',
    sizeBytes: 3_655_640,
    urls: [
      `${ZOO}/mobilenet/model/mobilenetv2-12-int8.onnx`,
      `${HF}/mobilenetv2-12-int8/resolve/main/mobilenetv2-12-int8.onnx`,
    ],
    featureTensor: '464_quantized',
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
    sha256: spec.sha256,
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

function placeByHandHint(spec: ModelSpec, path: string): string {
  const from =
    spec.urls.length > 0
      ? `Download ${spec.urls[0]} on a machine with network access and copy it`
      : 'Copy the model file';
  return `${from} to ${path} (sha256 ${spec.sha256}), or set OMPF_MODELS_DIR to the folder holding it, or pick another model with --model / OMPF_MODEL (for example mobilenetv2-int8).`;
}

/** Read the model file and verify its SHA-256. Refuses a missing or altered file. */
export function readVerifiedModel(spec: ModelSpec, modelsDir: string): Uint8Array {
  const path = modelPath(spec, modelsDir);
  if (!existsSync(path)) {
    throw new ModelFileError(`Model '${spec.id}' is not installed: ${path} does not exist.`, {
      hint:
        spec.urls.length > 0
          ? `Run \`ompf models pull ${spec.id}\`. Offline: ${placeByHandHint(spec, path)}`
          : placeByHandHint(spec, path),
      context: { path },
    });
  }
  const bytes = readFileSync(path);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== spec.sha256) {
    throw new ModelFileError(
      `Model file ${path} has SHA-256 ${actual}, expected ${spec.sha256}: it is corrupt, truncated or a different model.`,
      {
        hint: `Delete it and run \`ompf models pull ${spec.id}\` again.`,
        context: { path, expected: spec.sha256, actual },
      },
    );
  }
  return bytes;
}

export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface PullProgress {
  start(totalBytes: number | undefined, url: string): void;
  advance(bytes: number): void;
  stop(): void;
}

/**
 * Download a model into the models directory, verifying its SHA-256 before it replaces anything.
 * Tries each URL in turn. Returns the installed path.
 */
export async function pullModel(
  spec: ModelSpec,
  modelsDir: string,
  progress: PullProgress,
  fetchImpl: typeof fetch = fetch,
): Promise<{ path: string; alreadyPresent: boolean }> {
  const path = modelPath(spec, modelsDir);
  if (existsSync(path) && (await fileSha256(path)) === spec.sha256) return { path, alreadyPresent: true };
  if (spec.urls.length === 0) {
    throw new ModelFileError(`Model '${spec.id}' has no download URL.`, {
      hint: placeByHandHint(spec, path),
    });
  }
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.partial`;
  const failures: string[] = [];
  for (const url of spec.urls) {
    try {
      const response = await fetchImpl(url, { redirect: 'follow', signal: AbortSignal.timeout(30 * 60_000) });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const total = Number(response.headers.get('content-length')) || spec.sizeBytes;
      const hash = createHash('sha256');
      const file = await open(partial, 'w');
      progress.start(total, url);
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          hash.update(chunk);
          await file.write(chunk);
          progress.advance(chunk.byteLength);
        }
      } finally {
        await file.close();
        progress.stop();
      }
      const actual = hash.digest('hex');
      if (actual !== spec.sha256) {
        rmSync(partial, { force: true });
        throw new ModelFileError(
          `Downloaded file from ${url} has SHA-256 ${actual}, expected ${spec.sha256}.`,
          {
            hint: 'The mirror served a different file; it was not installed.',
          },
        );
      }
      renameSync(partial, path);
      return { path, alreadyPresent: false };
    } catch (error) {
      rmSync(partial, { force: true });
      failures.push(`${url}: ${describeFetchError(error)}`);
    }
  }
  throw new ModelFileError(`Could not download model '${spec.id}' (${failures.join('; ')}).`, {
    hint: `If this machine is offline: ${placeByHandHint(spec, path)}`,
    context: { path },
  });
}

function describeFetchError(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ?? cause?.message ?? error.message;
  }
  return String(error);
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
