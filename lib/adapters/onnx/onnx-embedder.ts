import * as ort from 'onnxruntime-node';
import { ConfigError } from '../../core/errors';
import type { ModelSpec } from '../../core/model-spec';
import type { Embedder, PreparedImage, TensorShape } from '../../core/ports';
import { l2Normalise } from '../../core/vectors';
import { exposeFeatureTensor } from './onnx-graph';

export interface OnnxSessionOptions {
  /** onnxruntime intra-op threads; 0 lets onnxruntime pick (one per physical core). */
  readonly threads: number;
  /** Images per inference call, capped by a batch dimension the graph fixes. */
  readonly batchSize: number;
}

/**
 * The session options of every embedding session (in-process and workers). Exported for the test that
 * proves the int8 precision setting on this CPU.
 */
export function onnxSessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    // x64 CPUs without VNNI (AVX2, AVX-512 without VNNI: AMD before Zen 4, Intel before Ice Lake /
    // Alder Lake) compute onnxruntime's default U8S8 int8 products with VPMADDUBSW, whose int16
    // intermediate saturates: int8 models then yield wrong features (measured on an AVX2 EPYC, the
    // mobilenetv2-int8 dev-set mAP with DBA fell from 0.776 to 0.719). This config key
    // (onnxruntime_session_options_config_keys.h) switches those CPUs to the exact U8U8 kernels; it
    // changes nothing on VNNI CPUs or for float models.
    extra: { session: { x64quantprecision: '1' } },
  };
}

/**
 * Embeds preprocessed images with one onnxruntime session. Create it once per process
 * (OnnxEmbedder.load) and reuse it: session creation costs hundreds of milliseconds.
 */
export class OnnxEmbedder implements Embedder {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly inputName: string,
    private readonly featureOutput: string,
    /** Most images per inference run. */
    readonly maxBatch: number,
    private readonly cropSize: number,
    readonly modelId: string,
    readonly dimension: number,
  ) {}

  static async load(
    spec: ModelSpec,
    modelBytes: Uint8Array,
    options: OnnxSessionOptions,
  ): Promise<OnnxEmbedder> {
    // Features only: the classifier head is pruned (onnxruntime would run it for nothing) and the
    // batch dimension freed, so Caffe2-era graphs that fix batch 1 in their head batch too.
    const graph = exposeFeatureTensor(modelBytes, {
      featureTensor: spec.featureTensor,
      inputName: spec.inputName,
      featuresOnly: true,
      // Whole pictures come in any shape; the model's own fixed-kernel pool (7 x 7 in Caffe2-era
      // ResNets) would then not be global, so GeM with p = 1 (the plain average) replaces it.
      anySize: spec.preprocess.framing === 'whole',
      gemPower: spec.gemPower ? spec.gemPower : spec.preprocess.framing === 'whole' ? 1 : undefined,
    });
    const session = await ort.InferenceSession.create(graph.modelBytes, onnxSessionOptions(options.threads));
    const maxBatch = Math.max(1, Math.min(options.batchSize, graph.fixedBatchSize ?? options.batchSize));
    const cropSize = spec.preprocess.cropSize;
    // One warm-up run on a blank image: proves the exposed output exists and checks its dimension
    // against the spec before any vector reaches the store.
    const probe = await runFeatures(
      session,
      graph.inputName,
      graph.featureOutput,
      new Float32Array(3 * cropSize * cropSize),
      1,
      { height: cropSize, width: cropSize },
    );
    const dimension = probe.dims.slice(1).reduce((a, b) => a * b, 1);
    if (dimension !== spec.dimension) {
      throw new ConfigError(
        `Model '${spec.id}' yields ${dimension}-d features at '${graph.featureOutput}', but its spec says ${spec.dimension}.`,
        { hint: 'Fix "dimension" (or "featureTensor") in the model spec.' },
      );
    }
    return new OnnxEmbedder(
      session,
      graph.inputName,
      graph.featureOutput,
      maxBatch,
      cropSize,
      spec.id,
      dimension,
    );
  }

  /**
   * Images of the same tensor shape run together, at most maxBatch per run; vectors come back in input
   * order. Square crops always batch; whole pictures batch when their shapes agree (photos from one
   * camera mostly do; the mixed Caltech-101 sizes mostly do not).
   */
  async embed(images: readonly PreparedImage[]): Promise<Float32Array[]> {
    const vectors: Float32Array[] = new Array<Float32Array>(images.length);
    const square = { height: this.cropSize, width: this.cropSize };
    // Images grouped by tensor shape (input order kept within a group), each group run in batches.
    const groups = new Map<string, number[]>();
    images.forEach((image, index) => {
      const shape = image.tensorShape ?? square;
      const key = `${shape.height}x${shape.width}`;
      const group = groups.get(key);
      if (group) group.push(index);
      else groups.set(key, [index]);
    });
    for (const indices of groups.values()) {
      const shape = images[indices[0]!]!.tensorShape ?? square;
      const imageSize = 3 * shape.height * shape.width;
      for (let start = 0; start < indices.length; start += this.maxBatch) {
        const batch = indices.slice(start, start + this.maxBatch);
        const input = new Float32Array(batch.length * imageSize);
        batch.forEach((index, i) => {
          const tensor = images[index]!.tensor;
          if (tensor.length !== imageSize) throw new Error('A tensor does not match its shape.');
          input.set(tensor, i * imageSize);
        });
        const output = await runFeatures(
          this.session,
          this.inputName,
          this.featureOutput,
          input,
          batch.length,
          shape,
        );
        const features = output.data as Float32Array;
        batch.forEach((index, i) => {
          vectors[index] = l2Normalise(features.slice(i * this.dimension, (i + 1) * this.dimension));
        });
      }
    }
    return vectors;
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

async function runFeatures(
  session: ort.InferenceSession,
  inputName: string,
  outputName: string,
  data: Float32Array,
  batch: number,
  shape: TensorShape,
): Promise<ort.Tensor> {
  const feeds = { [inputName]: new ort.Tensor('float32', data, [batch, 3, shape.height, shape.width]) };
  const result = await session.run(feeds, [outputName]);
  const output = result[outputName];
  if (!output || output.type !== 'float32') {
    throw new ConfigError(`The model did not produce float32 features at '${outputName}'.`);
  }
  return output;
}
