import { onnx } from 'onnx-proto';

/**
 * Small ONNX graphs shaped like the ONNX Model Zoo's `resnet50-v1-12.onnx` and `resnet50-v1-12-int8.onnx`
 * (MXNet exports) around their input and head, built in memory because the real files (100 MB and
 * 26 MB) cannot be fetched in tests.
 *
 * Exactly as in the zoo files: input `data` float32 [N,3,224,224] with a symbolic batch dimension `N`;
 * MXNet names (`resnetv17_conv0_fwd`, `resnetv17_stage4_activation2`, ...); a last feature map of
 * [N,2048,7,7]; the float GlobalAveragePool `resnetv17_pool1_fwd` [N,2048,1,1]; Flatten; and the
 * classifier `resnetv17_dense0_fwd` float32 [N,1000]. Float head: Gemm with `resnetv17_dense0_weight`
 * [1000,2048] (transB=1) and `resnetv17_dense0_bias`. Int8 head: DequantizeLinear -> GlobalAveragePool
 * (float) -> QuantizeLinear -> Flatten -> QLinearMatMul -> QLinearAdd (bias) -> DequantizeLinear.
 *
 * Smaller than the zoo files: 4 stages of 1, 1, 1 and 3 bottleneck blocks (the zoo's have 3, 4, 6, 3)
 * and narrow bottlenecks. Weights are seeded pseudo-random (He-scaled), so the graphs are the same on
 * every run and different images give different features.
 */

const { DataType } = onnx.TensorProto;
const { AttributeType } = onnx.AttributeProto;

/** The tensor the pooled 2048-d features are in, in both zoo files. */
export const RESNET50_POOL_TENSOR = 'resnetv17_pool1_fwd';
export const RESNET50_INPUT = 'data';
export const RESNET50_OUTPUT = 'resnetv17_dense0_fwd';
/** The last feature map ([N,2048,7,7]), the pool's input. */
export const RESNET50_LAST_FEATURE_MAP = 'resnetv17_stage4_activation2';

export interface Resnet50GraphOptions {
  /** Seed of the pseudo-random weights. */
  readonly seed?: number;
  /**
   * 'none' replaces the GlobalAveragePool by a depthwise 7x7 Conv that writes the same tensor
   * (`resnetv17_pool1_fwd`, [N,2048,1,1]): a graph with the zoo's names and shapes but no pooling op.
   */
  readonly pool?: 'GlobalAveragePool' | 'none';
}

interface Block {
  readonly mid: number;
  readonly out: number;
  readonly stride: number;
}

const STEM_CHANNELS = 16;
/** Stage 4's three blocks keep the zoo file's last names (conv9, __plus2, activation2). */
const STAGES: readonly { readonly stage: number; readonly blocks: readonly Block[] }[] = [
  { stage: 1, blocks: [{ mid: 8, out: 32, stride: 1 }] },
  { stage: 2, blocks: [{ mid: 8, out: 32, stride: 2 }] },
  { stage: 3, blocks: [{ mid: 8, out: 32, stride: 2 }] },
  {
    stage: 4,
    blocks: [
      { mid: 8, out: 2048, stride: 2 },
      { mid: 8, out: 2048, stride: 1 },
      { mid: 8, out: 2048, stride: 1 },
    ],
  },
];
const FEATURES = 2048;
const CLASSES = 1000;

// Read once: inside Jest's VM context every `Math.x` lookup in a hot loop costs ~30x (2 s per graph).
const { imul, round } = Math;

/** mulberry32: a small seeded generator, uniform in [0, 1). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytesOf(values: Float32Array | Int32Array | Int8Array | Uint8Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

const ints = (name: string, values: number[]): onnx.IAttributeProto => ({
  name,
  type: AttributeType.INTS,
  ints: values,
});
const int = (name: string, value: number): onnx.IAttributeProto => ({
  name,
  type: AttributeType.INT,
  i: value,
});
const float = (name: string, value: number): onnx.IAttributeProto => ({
  name,
  type: AttributeType.FLOAT,
  f: value,
});

function convAttributes(kernel: number, stride: number, group = 1): onnx.IAttributeProto[] {
  const pad = Math.floor(kernel / 2);
  return [
    ints('dilations', [1, 1]),
    int('group', group),
    ints('kernel_shape', [kernel, kernel]),
    ints('pads', [pad, pad, pad, pad]),
    ints('strides', [stride, stride]),
  ];
}

function tensorType(elemType: number, dims: (number | string)[]): onnx.ITypeProto {
  return {
    tensorType: {
      elemType,
      shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
    },
  };
}

class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  readonly next: () => number;

  constructor(seed: number) {
    this.next = random(seed);
  }

  uniform(count: number, low: number, high: number): Float32Array {
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = low + (high - low) * this.next();
    return values;
  }

  tensor(
    name: string,
    dataType: number,
    dims: number[],
    values: Float32Array | Int32Array | Int8Array | Uint8Array,
  ): string {
    this.initializers.push(onnx.TensorProto.create({ name, dataType, dims, rawData: bytesOf(values) }));
    return name;
  }

  node(
    opType: string,
    name: string,
    input: string[],
    output: string,
    attribute: onnx.IAttributeProto[] = [],
    domain?: string,
  ): string {
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        name,
        input,
        output: [output],
        attribute,
        ...(domain ? { domain } : {}),
      }),
    );
    return output;
  }

  /** Pooled-tensor producer without a pooling op: a depthwise 7x7 Conv (valid padding). */
  depthwisePool(input: string): string {
    const weight = this.tensor(
      `${RESNET50_POOL_TENSOR}_weight`,
      DataType.FLOAT,
      [FEATURES, 1, 7, 7],
      this.uniform(FEATURES * 49, 0, 2 / 49),
    );
    return this.node('Conv', RESNET50_POOL_TENSOR, [input, weight], RESNET50_POOL_TENSOR, [
      ints('kernel_shape', [7, 7]),
      int('group', FEATURES),
    ]);
  }

  model(options: {
    irVersion: number;
    opsets: { domain: string; version: number }[];
    inputsIncludeInitializers: boolean;
  }): Uint8Array {
    const data = onnx.ValueInfoProto.create({
      name: RESNET50_INPUT,
      type: tensorType(DataType.FLOAT, ['N', 3, 224, 224]),
    });
    const initializerInputs = options.inputsIncludeInitializers
      ? this.initializers.map((t) =>
          onnx.ValueInfoProto.create({
            name: t.name ?? '',
            type: tensorType(t.dataType ?? 0, (t.dims ?? []) as number[]),
          }),
        )
      : [];
    const model = onnx.ModelProto.create({
      irVersion: options.irVersion,
      producerName: 'ompf test (resnet50-v1-12 shaped)',
      opsetImport: options.opsets,
      graph: onnx.GraphProto.create({
        name: 'mxnet_converted_model',
        node: this.nodes,
        initializer: this.initializers,
        input: [data, ...initializerInputs],
        output: [
          onnx.ValueInfoProto.create({
            name: RESNET50_OUTPUT,
            type: tensorType(DataType.FLOAT, ['N', CLASSES]),
          }),
        ],
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

/** MXNet gluon names layers per prefix with running counters (stage1_conv0 ... stage4_conv9). */
class Names {
  private conv = 0;
  private relu = 0;
  private plus = 0;
  private activation = 0;
  constructor(readonly prefix: string) {}
  nextConv(): { conv: string; batchnorm: string } {
    const i = this.conv++;
    return { conv: `${this.prefix}conv${i}`, batchnorm: `${this.prefix}batchnorm${i}` };
  }
  nextRelu(): string {
    return `${this.prefix}relu${this.relu++}_fwd`;
  }
  nextPlus(): string {
    return `${this.prefix}_plus${this.plus++}`;
  }
  nextActivation(): string {
    return `${this.prefix}activation${this.activation++}`;
  }
}

// ----- float32: resnet50-v1-12.onnx --------------------------------------------------------------

/**
 * A float32 graph shaped like `resnet50-v1-12.onnx` (IR 7, opset 12; Conv, BatchNormalization, Relu,
 * Add, MaxPool, GlobalAveragePool, Flatten, Gemm). As MXNet's exporter writes them, the weights are also
 * listed among the graph inputs, after `data`. 8.99 MB, 8.19 MB of which is the 1000x2048 float32
 * classifier weight the zoo file has.
 */
export function resnet50V1Float(options: Resnet50GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder(options.seed ?? 50);

  const conv = (
    names: { conv: string; batchnorm: string },
    input: string,
    cin: number,
    cout: number,
    kernel: number,
    stride: number,
  ) => {
    const fanIn = cin * kernel * kernel;
    const bound = Math.sqrt(6 / fanIn); // He uniform: variance 2 / fan_in
    const weight = g.tensor(
      `${names.conv}_weight`,
      DataType.FLOAT,
      [cout, cin, kernel, kernel],
      g.uniform(cout * fanIn, -bound, bound),
    );
    const convolved = g.node(
      'Conv',
      `${names.conv}_fwd`,
      [input, weight],
      `${names.conv}_fwd`,
      convAttributes(kernel, stride),
    );
    const bn = names.batchnorm;
    const gamma = g.tensor(`${bn}_gamma`, DataType.FLOAT, [cout], g.uniform(cout, 0.5, 1.5));
    const beta = g.tensor(`${bn}_beta`, DataType.FLOAT, [cout], g.uniform(cout, -0.1, 0.1));
    const mean = g.tensor(`${bn}_running_mean`, DataType.FLOAT, [cout], g.uniform(cout, -0.1, 0.1));
    const variance = g.tensor(`${bn}_running_var`, DataType.FLOAT, [cout], g.uniform(cout, 0.5, 1.5));
    return g.node('BatchNormalization', `${bn}_fwd`, [convolved, gamma, beta, mean, variance], `${bn}_fwd`, [
      float('epsilon', 1e-5),
      float('momentum', 0.9),
    ]);
  };
  const relu = (name: string, input: string) => g.node('Relu', name, [input], name);

  const stem = new Names('resnetv17_');
  let x = relu(stem.nextRelu(), conv(stem.nextConv(), RESNET50_INPUT, 3, STEM_CHANNELS, 7, 2));
  x = g.node('MaxPool', 'resnetv17_pool0_fwd', [x], 'resnetv17_pool0_fwd', [
    ints('kernel_shape', [3, 3]),
    ints('pads', [1, 1, 1, 1]),
    ints('strides', [2, 2]),
  ]);
  let channels = STEM_CHANNELS;
  for (const { stage, blocks } of STAGES) {
    const names = new Names(`resnetv17_stage${stage}_`);
    blocks.forEach((block, index) => {
      let y = relu(names.nextRelu(), conv(names.nextConv(), x, channels, block.mid, 1, block.stride));
      y = relu(names.nextRelu(), conv(names.nextConv(), y, block.mid, block.mid, 3, 1));
      y = conv(names.nextConv(), y, block.mid, block.out, 1, 1);
      const shortcut = index === 0 ? conv(names.nextConv(), x, channels, block.out, 1, block.stride) : x;
      const plus = names.nextPlus();
      const activation = names.nextActivation();
      x = relu(activation, g.node('Add', plus, [y, shortcut], plus));
      channels = block.out;
    });
  }

  const pooled =
    options.pool === 'none'
      ? g.depthwisePool(x)
      : g.node('GlobalAveragePool', RESNET50_POOL_TENSOR, [x], RESNET50_POOL_TENSOR);
  const flat = g.node('Flatten', 'flatten_473', [pooled], 'flatten_473', [int('axis', 1)]);
  const bound = 1 / Math.sqrt(FEATURES);
  const weight = g.tensor(
    'resnetv17_dense0_weight',
    DataType.FLOAT,
    [CLASSES, FEATURES],
    g.uniform(CLASSES * FEATURES, -bound, bound),
  );
  const bias = g.tensor('resnetv17_dense0_bias', DataType.FLOAT, [CLASSES], g.uniform(CLASSES, -0.1, 0.1));
  g.node('Gemm', RESNET50_OUTPUT, [flat, weight, bias], RESNET50_OUTPUT, [
    float('alpha', 1),
    float('beta', 1),
    int('transA', 0),
    int('transB', 1),
  ]);
  return g.model({ irVersion: 7, opsets: [{ domain: '', version: 12 }], inputsIncludeInitializers: true });
}

// ----- int8: resnet50-v1-12-int8.onnx -------------------------------------------------------------

interface Quantized {
  readonly tensor: string;
  readonly scale: string;
  readonly zeroPoint: string;
  /** Real value of one step, kept to size the next layer's bias. */
  readonly step: number;
}

/** Ranges of the uint8 activations (the zero point of ReLU'd ones is 0: uint8 saturation is the ReLU). */
const RELU_RANGE = 6;
const SIGNED_RANGE = 8;
const INPUT_LOW = -2.2;
const INPUT_HIGH = 2.7;
const INT8_WEIGHT_STD = 127 / Math.sqrt(3); // std of a uniform integer in [-127, 127]

/**
 * A uint8 graph shaped like `resnet50-v1-12-int8.onnx` (IR 4, opset 12 plus com.microsoft for
 * QLinearAdd; QuantizeLinear, QLinearConv with BatchNormalization and ReLU folded in, MaxPool on uint8,
 * QLinearAdd, then DequantizeLinear -> float GlobalAveragePool -> QuantizeLinear -> Flatten ->
 * QLinearMatMul -> QLinearAdd -> DequantizeLinear). Weights int8, activations uint8. 2.27 MB.
 */
export function resnet50V1Int8(options: Resnet50GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder(options.seed ?? 508);

  const quantParams = (tensor: string, step: number, zeroPoint: number): Quantized => ({
    tensor,
    scale: g.tensor(`${tensor}_scale`, DataType.FLOAT, [], new Float32Array([step])),
    zeroPoint: g.tensor(`${tensor}_zero_point`, DataType.UINT8, [], new Uint8Array([zeroPoint])),
    step,
  });
  const int8Weight = (name: string, dims: number[], std: number) => {
    const count = dims.reduce((a, b) => a * b, 1);
    const values = new Int8Array(count);
    for (let i = 0; i < count; i++) values[i] = round(-127 + 254 * g.next());
    return {
      tensor: g.tensor(`${name}_quantized`, DataType.INT8, dims, values),
      scale: g.tensor(`${name}_scale`, DataType.FLOAT, [], new Float32Array([std / INT8_WEIGHT_STD])),
      zeroPoint: g.tensor(`${name}_zero_point`, DataType.INT8, [], new Int8Array([0])),
      step: std / INT8_WEIGHT_STD,
    };
  };

  /** Conv + BatchNormalization (+ ReLU when `relu`), folded into one QLinearConv as quantizers do. */
  const qconv = (
    names: { conv: string },
    x: Quantized,
    output: string,
    cin: number,
    cout: number,
    kernel: number,
    stride: number,
    relu: boolean,
  ): Quantized => {
    const fanIn = cin * kernel * kernel;
    const w = int8Weight(
      `${names.conv}_weight`,
      [cout, cin, kernel, kernel],
      Math.sqrt((relu ? 2 : 1) / fanIn),
    );
    const biasStep = x.step * w.step; // QLinearConv's int32 bias has scale x_scale * w_scale, zero point 0
    const bias = new Int32Array(cout);
    for (let i = 0; i < cout; i++) bias[i] = round((-0.1 + 0.2 * g.next()) / biasStep);
    const b = g.tensor(`${names.conv}_bias_quantized`, DataType.INT32, [cout], bias);
    const y = relu
      ? quantParams(output, RELU_RANGE / 255, 0)
      : quantParams(output, (2 * SIGNED_RANGE) / 255, 128);
    g.node(
      'QLinearConv',
      `${names.conv}_fwd_quant`,
      [x.tensor, x.scale, x.zeroPoint, w.tensor, w.scale, w.zeroPoint, y.scale, y.zeroPoint, b],
      output,
      convAttributes(kernel, stride),
    );
    return y;
  };
  const qadd = (name: string, a: Quantized, b: Quantized, c: Quantized): Quantized => {
    g.node(
      'QLinearAdd',
      `${name}_quant`,
      [a.tensor, a.scale, a.zeroPoint, b.tensor, b.scale, b.zeroPoint, c.scale, c.zeroPoint],
      c.tensor,
      [],
      'com.microsoft',
    );
    return c;
  };

  const inputStep = (INPUT_HIGH - INPUT_LOW) / 255;
  const data = quantParams(`${RESNET50_INPUT}_quantized`, inputStep, round(-INPUT_LOW / inputStep));
  g.node(
    'QuantizeLinear',
    `${RESNET50_INPUT}_QuantizeLinear`,
    [RESNET50_INPUT, data.scale, data.zeroPoint],
    data.tensor,
  );

  const stem = new Names('resnetv17_');
  const stemRelu = stem.nextRelu();
  const c0 = qconv(stem.nextConv(), data, `${stemRelu}_quantized`, 3, STEM_CHANNELS, 7, 2, true);
  g.node('MaxPool', 'resnetv17_pool0_fwd', [c0.tensor], 'resnetv17_pool0_fwd_quantized', [
    ints('kernel_shape', [3, 3]),
    ints('pads', [1, 1, 1, 1]),
    ints('strides', [2, 2]),
  ]);
  // MaxPool keeps the quantization of its input.
  let x: Quantized = { ...c0, tensor: 'resnetv17_pool0_fwd_quantized' };
  let channels = STEM_CHANNELS;
  for (const { stage, blocks } of STAGES) {
    const names = new Names(`resnetv17_stage${stage}_`);
    blocks.forEach((block, index) => {
      let y = qconv(
        names.nextConv(),
        x,
        `${names.nextRelu()}_quantized`,
        channels,
        block.mid,
        1,
        block.stride,
        true,
      );
      y = qconv(names.nextConv(), y, `${names.nextRelu()}_quantized`, block.mid, block.mid, 3, 1, true);
      const body = names.nextConv();
      y = qconv(body, y, `${body.batchnorm}_fwd_quantized`, block.mid, block.out, 1, 1, false);
      let shortcut = x;
      if (index === 0) {
        const down = names.nextConv();
        shortcut = qconv(
          down,
          x,
          `${down.batchnorm}_fwd_quantized`,
          channels,
          block.out,
          1,
          block.stride,
          false,
        );
      }
      const plus = names.nextPlus();
      // Add + ReLU: the uint8 output with zero point 0 cannot hold negatives.
      x = qadd(plus, y, shortcut, quantParams(`${names.nextActivation()}_quantized`, RELU_RANGE / 255, 0));
      channels = block.out;
    });
  }

  // The pool runs in float, between a DequantizeLinear and a QuantizeLinear, as in the zoo file.
  const last = g.node(
    'DequantizeLinear',
    `${RESNET50_LAST_FEATURE_MAP}_DequantizeLinear`,
    [x.tensor, x.scale, x.zeroPoint],
    RESNET50_LAST_FEATURE_MAP,
  );
  const pooled =
    options.pool === 'none'
      ? g.depthwisePool(last)
      : g.node('GlobalAveragePool', RESNET50_POOL_TENSOR, [last], RESNET50_POOL_TENSOR);
  const pooledQ = quantParams(`${RESNET50_POOL_TENSOR}_quantized`, 3 / 255, 0);
  g.node(
    'QuantizeLinear',
    `${RESNET50_POOL_TENSOR}_QuantizeLinear`,
    [pooled, pooledQ.scale, pooledQ.zeroPoint],
    pooledQ.tensor,
  );
  const flat: Quantized = { ...pooledQ, tensor: 'flatten_473_quantized' };
  g.node('Flatten', 'flatten_473', [pooledQ.tensor], flat.tensor, [int('axis', 1)]);
  const w = int8Weight('resnetv17_dense0_weight', [FEATURES, CLASSES], 1 / Math.sqrt(FEATURES));
  const matmul = quantParams('resnetv17_dense0_fwd_MatMul_quantized', (2 * SIGNED_RANGE) / 255, 128);
  g.node(
    'QLinearMatMul',
    'resnetv17_dense0_fwd_MatMul_quant',
    [flat.tensor, flat.scale, flat.zeroPoint, w.tensor, w.scale, w.zeroPoint, matmul.scale, matmul.zeroPoint],
    matmul.tensor,
  );
  const biasValues = new Uint8Array(CLASSES);
  for (let i = 0; i < CLASSES; i++) biasValues[i] = round(118 + 20 * g.next());
  const bias: Quantized = {
    ...quantParams('resnetv17_dense0_bias_quantized', 0.01, 128),
    tensor: g.tensor('resnetv17_dense0_bias_quantized', DataType.UINT8, [CLASSES], biasValues),
  };
  const logits = qadd(
    'resnetv17_dense0_fwd_Add',
    matmul,
    bias,
    quantParams(`${RESNET50_OUTPUT}_quantized`, (2 * SIGNED_RANGE) / 255, 128),
  );
  g.node(
    'DequantizeLinear',
    `${RESNET50_OUTPUT}_DequantizeLinear`,
    [logits.tensor, logits.scale, logits.zeroPoint],
    RESNET50_OUTPUT,
  );
  return g.model({
    irVersion: 4,
    opsets: [
      { domain: '', version: 12 },
      { domain: 'com.microsoft', version: 1 },
    ],
    inputsIncludeInitializers: false,
  });
}
