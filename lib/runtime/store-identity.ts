import type { StoreOptions } from '../adapters/store/pg-vector-store';
import type { ModelSpec } from '../core/model-spec';
import { transformSuffix, type EmbeddingTransform } from '../core/retrieval';
import type { Config } from './config';

/**
 * How a store is named and configured, identically in every runtime. Apart from product.ts because
 * the migrate Lambda needs it and must not load the model stack: its bundle runs without the native
 * layer (no sharp, no onnxruntime), which the Lambda harness proves by deploying with it.
 */
/**
 * The transform every runtime applies: flip / power by the embedder, DBA by the store. One function,
 * so the CLI, the local server and the Lambdas record the same model id.
 */
export function productTransform(config: Config): EmbeddingTransform {
  return {
    framing: config.framing,
    gem: config.gemPower,
    flip: config.flip,
    power: config.power,
    dba: config.dba,
  };
}

/** The id stored with every vector: the model plus the transform that produced it ('+dba3' by default). */
export function storedModelId(spec: ModelSpec, config: Config): string {
  return `${spec.id}${transformSuffix(productTransform(config))}`;
}

/**
 * The model spec with the configured descriptor applied (GeM exponent, framing): what the ONNX session,
 * the embedding workers and the preprocessor are built from, so all of them agree with the model id.
 */
export function describedSpec(spec: ModelSpec, config: Config): ModelSpec {
  return {
    ...spec,
    gemPower: config.gemPower,
    preprocess: { ...spec.preprocess, framing: config.framing },
  };
}

export function storeOptions(spec: ModelSpec, config: Config): StoreOptions {
  return {
    modelId: storedModelId(spec, config),
    dimension: spec.dimension,
    hnswMinRows: config.hnswMinRows,
    binaryMinRows: config.binaryMinRows,
    binaryOversampling: config.binaryOversampling,
    indexBuildMemory: config.indexBuildMemory,
    dba: config.dba,
  };
}
