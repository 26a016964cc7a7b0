import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { SharpImagePreprocessor } from '../../lib/adapters/image/sharp-preprocessor';
import { BUILTIN_MODELS } from '../../lib/adapters/models/model-registry';
import { exposeFeatureTensor } from '../../lib/adapters/onnx/onnx-graph';
import { OnnxEmbedder } from '../../lib/adapters/onnx/onnx-embedder';
import { ConfigError } from '../../lib/core/errors';
import type { PreparedImage } from '../../lib/core/ports';
import { dot } from '../../lib/core/vectors';
import {
  RESNET50_INPUT,
  RESNET50_LAST_FEATURE_MAP,
  RESNET50_OUTPUT,
  RESNET50_POOL_TENSOR,
  resnet50V1Float,
  resnet50V1Int8,
} from '../helpers/resnet50-graphs';
import { CALTECH_DIR, requirePath } from '../helpers/shared';

/**
 * The default models are the ONNX Model Zoo's resnet50-v1-12 (float32) and resnet50-v1-12-int8, MXNet
 * exports that cannot be downloaded in tests. These graphs, built in code, have the zoo files' input,
 * names, pool and head (see test/helpers/resnet50-graphs.ts), so the loader is proven on that shape and
 * not only on the Caffe2 light_resnet50 graph.
 */

function maxAbsoluteDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

function shapeOf(value: onnx.IValueInfoProto | undefined): (number | string)[] {
  return (value?.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || Number(d.dimValue));
}

/** What the graph's single ConfigError says; fails the test when nothing is thrown. */
function configErrorOf(act: () => unknown): ConfigError {
  try {
    act();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError to be thrown');
}

const variants = [
  {
    name: 'resnet50-v1-12 (float32)',
    modelId: 'resnet50',
    build: resnet50V1Float,
    // GlobalAveragePool -> Flatten -> Gemm(transB=1)
    head: ['GlobalAveragePool', 'Flatten', 'Gemm'],
    featureMapProducer: 'Relu',
  },
  {
    name: 'resnet50-v1-12-int8',
    modelId: 'resnet50-int8',
    build: resnet50V1Int8,
    // ... QLinearAdd (uint8) -> DequantizeLinear -> float pool -> QuantizeLinear -> ... -> float logits
    head: [
      'QLinearAdd',
      'DequantizeLinear',
      'GlobalAveragePool',
      'QuantizeLinear',
      'Flatten',
      'QLinearMatMul',
      'QLinearAdd',
      'DequantizeLinear',
    ],
    featureMapProducer: 'DequantizeLinear',
  },
] as const;

const preprocessor = new SharpImagePreprocessor(BUILTIN_MODELS.resnet50!.preprocess, {
  maxBytes: 50e6,
  maxPixels: 1e8,
});
/** 8 different real photos. */
let images: PreparedImage[];

beforeAll(async () => {
  const classes = ['okapi', 'dolphin', 'flamingo', 'hedgehog', 'rhino', 'starfish', 'lobster', 'pigeon'];
  images = await Promise.all(
    classes.map(async (c) =>
      preprocessor.prepare(readFileSync(join(requirePath(CALTECH_DIR, 'Dataset'), c, 'image_0001.jpg'))),
    ),
  );
});

describe.each(variants)('a graph shaped like $name', (variant) => {
  let bytes: Uint8Array;

  beforeAll(() => {
    bytes = variant.build();
  });

  it("has the zoo file's input, pool and head, and a [N,2048,7,7] last feature map", async () => {
    // Prepare
    const model = onnx.ModelProto.decode(bytes);
    const graph = model.graph!;
    const ops = graph.node!.map((n) => n.opType);
    const producerOf = (tensor: string) => graph.node!.find((n) => n.output!.includes(tensor));
    // Run the whole graph as built, also reading the pool and the last feature map.
    for (const name of [RESNET50_POOL_TENSOR, RESNET50_LAST_FEATURE_MAP]) {
      graph.output!.push(onnx.ValueInfoProto.create({ name }));
    }
    const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
      logSeverityLevel: 3,
    });
    const input = new Float32Array(2 * 3 * 224 * 224);
    input.set(images[0]!.tensor, 0);
    input.set(images[1]!.tensor, 3 * 224 * 224);
    // Act
    const result = await session.run({
      [RESNET50_INPUT]: new ort.Tensor('float32', input, [2, 3, 224, 224]),
    });
    await session.release();
    // Assess
    expect(bytes.byteLength).toBeLessThan(10e6);
    expect(graph.input![0]!.name).toBe('data');
    expect(shapeOf(graph.input![0])).toEqual(['N', 3, 224, 224]);
    expect(graph.output![0]!.name).toBe('resnetv17_dense0_fwd');
    expect(shapeOf(graph.output![0])).toEqual(['N', 1000]);
    expect(ops.slice(-variant.head.length)).toEqual(variant.head);
    expect(producerOf('resnetv17_pool1_fwd')!.opType).toBe('GlobalAveragePool');
    expect(
      producerOf('resnetv17_pool0_fwd')?.opType ?? producerOf('resnetv17_pool0_fwd_quantized')?.opType,
    ).toBe('MaxPool');
    expect(producerOf(RESNET50_LAST_FEATURE_MAP)!.opType).toBe(variant.featureMapProducer);
    expect(result[RESNET50_LAST_FEATURE_MAP]!.dims).toEqual([2, 2048, 7, 7]);
    expect(result[RESNET50_POOL_TENSOR]!.type).toBe('float32');
    expect(result[RESNET50_POOL_TENSOR]!.dims).toEqual([2, 2048, 1, 1]);
    expect(result[RESNET50_OUTPUT]!.type).toBe('float32');
    expect(result[RESNET50_OUTPUT]!.dims).toEqual([2, 1000]);
  });

  it('exposes resnetv17_pool1_fwd without a featureTensor hint: input data, no fixed batch', () => {
    // Act
    const graph = exposeFeatureTensor(bytes);
    const featuresOnly = exposeFeatureTensor(bytes, { featuresOnly: true });
    // Assess
    expect(graph.featureOutput).toBe('resnetv17_pool1_fwd');
    expect(graph.inputName).toBe('data');
    expect(graph.fixedBatchSize).toBeUndefined();
    // The pruned graph ends at the pool (not at the MaxPool resnetv17_pool0_fwd), and its batch stays free.
    const pruned = onnx.ModelProto.decode(featuresOnly.modelBytes).graph!;
    expect(featuresOnly.featureOutput).toBe('resnetv17_pool1_fwd');
    expect(featuresOnly.fixedBatchSize).toBeUndefined();
    expect(pruned.output!.map((o) => o.name)).toEqual(['resnetv17_pool1_fwd']);
    expect(pruned.node!.at(-1)!.opType).toBe('GlobalAveragePool');
    expect(pruned.node!.map((n) => n.opType)).not.toContain('Flatten');
    expect(typeof shapeOf(pruned.input![0])[0]).toBe('string');
  });

  it(`loads with the built-in spec and yields 2048-d unit vectors, the same alone as in a batch of 8`, async () => {
    // Prepare: the built-in spec as the product uses it; nothing differs for a graph of the zoo's shape.
    const spec = { ...BUILTIN_MODELS[variant.modelId]! };
    // Act
    const embedder = await OnnxEmbedder.load(spec, bytes, { threads: 0, batchSize: 8 });
    try {
      const [alone] = await embedder.embed([images[3]!]);
      const batch = await embedder.embed(images);
      // Assess
      expect(embedder.dimension).toBe(2048);
      expect(embedder.maxBatch).toBe(8);
      expect(batch).toHaveLength(8);
      for (const vector of batch) {
        expect(vector).toHaveLength(2048);
        expect(dot(vector, vector)).toBeCloseTo(1, 5);
      }
      expect(maxAbsoluteDifference(batch[3]!, alone!)).toBeLessThan(1e-5);
      // ... and different images give different vectors.
      for (let i = 1; i < batch.length; i++) {
        expect(maxAbsoluteDifference(batch[0]!, batch[i]!)).toBeGreaterThan(1e-3);
        expect(dot(batch[0]!, batch[i]!)).toBeLessThan(0.999);
      }
    } finally {
      await embedder.close();
    }
  });

  it('refuses the Caffe2 graph names: featureTensor r172 and input gpu_0/data_0 do not exist here', () => {
    // Act
    const byTensor = configErrorOf(() => exposeFeatureTensor(bytes, { featureTensor: 'r172' }));
    const byInput = configErrorOf(() => exposeFeatureTensor(bytes, { inputName: 'gpu_0/data_0' }));
    // Assess
    expect(byTensor.message).toMatch(/no tensor named 'r172'/);
    expect(byInput.message).toMatch(/no input named 'gpu_0\/data_0'/);
  });

  it('negative control: the same names with no pooling op are refused, unless the hint names the tensor', () => {
    // Prepare: resnetv17_pool1_fwd [N,2048,1,1] written by a depthwise Conv instead of GlobalAveragePool.
    const noPool = variant.build({ pool: 'none' });
    // Act
    const refused = configErrorOf(() => exposeFeatureTensor(noPool, { featuresOnly: true }));
    const hinted = exposeFeatureTensor(noPool, { featureTensor: RESNET50_POOL_TENSOR, featuresOnly: true });
    // Assess: found by its op, not its name, and never the MaxPool resnetv17_pool0_fwd.
    expect(refused.message).toMatch(/Could not find a pooling layer/);
    expect(hinted.featureOutput).toBe('resnetv17_pool1_fwd');
    expect(hinted.inputName).toBe('data');
  });
});

describe('built-in ResNet50 specs', () => {
  it.each(['resnet50', 'resnet50-int8'])(
    '%s names no featureTensor nor inputName: nothing only the Caffe2 graph has',
    (id) => {
      // Act
      const spec = BUILTIN_MODELS[id]!;
      // Assess
      expect(spec.id).toBe(id);
      expect(spec.featureTensor).toBeUndefined();
      expect(spec.inputName).toBeUndefined();
      expect(spec.dimension).toBe(2048);
      expect(spec.preprocess.cropSize).toBe(224);
    },
  );
});
