import { SharpImagePreprocessor } from '../adapters/image/sharp-preprocessor';
import { readVerifiedModel } from '../adapters/models/model-registry';
import { OnnxEmbedder } from '../adapters/onnx/onnx-embedder';
import type { ModelSpec } from '../core/model-spec';
import type { Embedder } from '../core/ports';
import { TransformingEmbedder } from '../core/retrieval';
import type { Config } from './config';
import { describedSpec, productTransform } from './store-identity';

export { describedSpec, productTransform, storedModelId, storeOptions } from './store-identity';

/**
 * What every runtime builds the same way, so the CLI, the local server and the Lambdas embed, store and
 * name vectors identically: the ONNX session (once per process), the configured embedding transform,
 * the stored model id, the store options and the preprocessor. The composition roots (local.ts,
 * aws.ts) both import this module and never each other.
 */

/** Created once per key per process; a failed creation is forgotten, so the next call tries again. */
export function oncePerProcess<T>(
  cache: Map<string, Promise<T>>,
  key: string,
  create: () => Promise<T>,
): Promise<T> {
  let created = cache.get(key);
  if (!created) {
    created = Promise.resolve().then(create);
    created.catch(() => cache.delete(key));
    cache.set(key, created);
  }
  return created;
}

const embedders = new Map<string, Promise<OnnxEmbedder>>();

/** One onnxruntime session per model per process: creating one costs hundreds of milliseconds. */
export function sharedEmbedder(model: ModelSpec, config: Config): Promise<OnnxEmbedder> {
  const spec = describedSpec(model, config);
  return oncePerProcess(
    embedders,
    [spec.id, spec.file, config.threads, config.batchSize, spec.gemPower, spec.preprocess.framing].join(
      '\u0000',
    ),
    () =>
      OnnxEmbedder.load(spec, readVerifiedModel(spec, config.modelsDir, config.modelBaseUrl), {
        threads: config.threads,
        batchSize: config.batchSize,
      }),
  );
}

/** The embedder every runtime uses: the ONNX model wrapped in the configured transform. */
export function productEmbedder(base: Embedder, spec: ModelSpec, config: Config): TransformingEmbedder {
  return new TransformingEmbedder(base, productTransform(config), spec.preprocess.cropSize);
}

/** The decoder every runtime uses, with the configured size and decompression-bomb limits. */
export function productPreprocessor(spec: ModelSpec, config: Config): SharpImagePreprocessor {
  return new SharpImagePreprocessor(describedSpec(spec, config).preprocess, {
    maxBytes: config.maxImageBytes,
    maxPixels: config.maxPixels,
  });
}
