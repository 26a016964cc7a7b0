import { onnx } from 'onnx-proto';
import { ConfigError } from '../../core/errors';

/**
 * Classifier ONNX files expose only logits. Retrieval wants the pooled features that feed the
 * classifier, so we add that tensor to the graph outputs, in memory, before creating the session.
 * For a quantized pool (QLinearGlobalAveragePool, uint8) we also add a DequantizeLinear with the
 * pool's output scale and zero point, so the exposed output is float32.
 */
export interface ExposedGraph {
  readonly modelBytes: Uint8Array;
  /** Name of the float output holding the pooled features. */
  readonly featureOutput: string;
  readonly inputName: string;
  /** Batch dimension of the input when the graph fixes it (Caffe2-era graphs fix it at 1). */
  readonly fixedBatchSize: number | undefined;
}

const POOL_OPS = new Set([
  'GlobalAveragePool',
  'AveragePool',
  'QLinearGlobalAveragePool',
  'QLinearAveragePool',
  'ReduceMean',
]);
const QUANTIZED_POOL_OPS = new Set(['QLinearGlobalAveragePool', 'QLinearAveragePool']);

export interface ExposeOptions {
  readonly featureTensor?: string | undefined;
  readonly inputName?: string | undefined;
  /**
   * Keep only the feature output and the nodes it needs (the classifier head goes) and free the batch
   * dimension: Caffe2-era graphs fix batch 1 only in their classifier's Reshape. OnnxEmbedder always
   * asks for this.
   */
  readonly featuresOnly?: boolean;
  /**
   * Generalised-mean pooling (Radenovic, Tolias, Chum, TPAMI 2018) with this exponent instead of the
   * model's own average pooling: (mean over positions of max(x, eps)^p)^(1/p), computed from the pooling
   * node's input (the last convolutional map, dequantized first for int8 graphs). Absent: the model's pool.
   */
  readonly gemPower?: number | undefined;
  /** Free the input's height and width (with featuresOnly), for inputs that are not the model's square. */
  readonly anySize?: boolean;
}

/** GeM's floor: keeps Pow defined on the (already non-negative, post-ReLU) feature map. */
const GEM_EPSILON = 1e-6;

export function exposeFeatureTensor(modelBytes: Uint8Array, options: ExposeOptions = {}): ExposedGraph {
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(modelBytes);
  } catch (cause) {
    throw new ConfigError('The model file is not a valid ONNX model.', {
      cause,
      hint: 'Check that the file is a complete .onnx download (run `ompf models pull NAME` again).',
    });
  }
  const graph = model.graph;
  if (!graph) throw new ConfigError('The ONNX model has no graph.');
  const nodes = (graph.node ??= []);
  const outputs = (graph.output ??= []);

  const initializerNames = new Set((graph.initializer ?? []).map((t) => t.name));
  const realInputs = (graph.input ?? []).filter((i) => !initializerNames.has(i.name));
  const input = options.inputName ? realInputs.find((i) => i.name === options.inputName) : realInputs[0];
  if (!input?.name) {
    throw new ConfigError(`The ONNX model has no input named '${options.inputName ?? '(any)'}'.`, {
      context: { inputs: realInputs.map((i) => i.name) },
    });
  }

  const producer = findFeatureProducer(nodes, options.featureTensor);
  const pooled = options.featureTensor ?? producer.output?.[0];
  if (!pooled) throw new ConfigError('The pooling node of the ONNX model has no output.');

  let featureOutput = pooled;
  if (options.gemPower !== undefined) {
    featureOutput = addGemPooling(model, producer, options.gemPower);
  } else if (QUANTIZED_POOL_OPS.has(producer.opType ?? '')) {
    // QLinear pools take (X, x_scale, x_zero_point, y_scale, y_zero_point): the output's scale and
    // zero point are inputs 3 and 4.
    const scale = producer.input?.[3];
    const zeroPoint = producer.input?.[4];
    if (!scale || !zeroPoint) {
      throw new ConfigError(`Quantized pool '${producer.name}' lacks its output scale and zero point.`);
    }
    featureOutput = `${pooled}__ompf_dequantized`;
    nodes.push(
      onnx.NodeProto.create({
        name: 'ompf_dequantize_features',
        opType: 'DequantizeLinear',
        input: [pooled, scale, zeroPoint],
        output: [featureOutput],
      }),
    );
  }
  if (!outputs.some((o) => o.name === featureOutput)) {
    // A name alone is enough: onnxruntime infers the type and shape of added outputs.
    outputs.push(onnx.ValueInfoProto.create({ name: featureOutput }));
  }

  const batchDim = input.type?.tensorType?.shape?.dim?.[0];
  if (options.featuresOnly) {
    graph.output = outputs.filter((o) => o.name === featureOutput);
    // onnxruntime still runs nodes whose outputs nobody reads: drop everything the features do not need.
    graph.node = nodesFeeding(nodes, featureOutput);
    if (batchDim) {
      batchDim.dimValue = undefined;
      batchDim.dimParam = 'batch';
    }
    if (options.anySize) {
      // The whole-image framing feeds pictures of any aspect: height and width become free too.
      const dims = input.type?.tensorType?.shape?.dim ?? [];
      ['height', 'width'].forEach((name, i) => {
        const dim = dims[2 + i];
        if (dim) {
          dim.dimValue = undefined;
          dim.dimParam = name;
        }
      });
    }
  }
  const fixed = batchDim?.dimValue ? Number(batchDim.dimValue) : undefined;
  return {
    modelBytes: onnx.ModelProto.encode(model).finish(),
    featureOutput,
    inputName: input.name,
    fixedBatchSize: fixed !== undefined && fixed > 0 ? fixed : undefined,
  };
}

/** The nodes `output` depends on, in their original (topological) order. */
function nodesFeeding(nodes: onnx.INodeProto[], output: string): onnx.INodeProto[] {
  const needed = new Set([output]);
  const kept = new Set<onnx.INodeProto>();
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]!;
    if ((node.output ?? []).some((name) => needed.has(name))) {
      kept.add(node);
      for (const name of node.input ?? []) needed.add(name);
    }
  }
  return nodes.filter((node) => kept.has(node));
}

function findFeatureProducer(nodes: onnx.INodeProto[], featureTensor: string | undefined): onnx.INodeProto {
  if (featureTensor) {
    const node = nodes.find((n) => (n.output ?? []).includes(featureTensor));
    if (!node) {
      throw new ConfigError(`The ONNX model has no tensor named '${featureTensor}'.`, {
        hint: 'Fix "featureTensor" in the model spec, or remove it to let ompf find the pooling layer.',
      });
    }
    return node;
  }
  // ONNX nodes are stored in topological order: the last pooling node is the one feeding the classifier.
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    if (node?.opType && POOL_OPS.has(node.opType)) return node;
  }
  throw new ConfigError('Could not find a pooling layer (GlobalAveragePool or similar) in the ONNX model.', {
    hint: 'Name the pooled feature tensor with "featureTensor" in a custom model spec.',
  });
}

/**
 * Appends Clip -> Pow(p) -> GlobalAveragePool -> Pow(1/p) on the input of the pooling node `pool`
 * (DequantizeLinear first when the pool is a QLinear one) and returns the name of the pooled output
 * (N x C x 1 x 1, as the model's own pool). Clip takes its bound as an attribute before opset 11.
 */
function addGemPooling(model: onnx.ModelProto, pool: onnx.INodeProto, power: number): string {
  const graph = model.graph!;
  const nodes = graph.node!;
  const initializers = (graph.initializer ??= []);
  const opset = Number((model.opsetImport ?? []).find((o) => (o.domain ?? '') === '')?.version ?? 0);
  const isMean = pool.opType === 'ReduceMean';
  if (isMean) {
    throw new ConfigError(
      `GeM pooling needs a pooling node over a feature map; '${pool.name}' is a ReduceMean.`,
      {
        hint: 'Set OMPF_POOLING=average for this model.',
      },
    );
  }
  let map = pool.input?.[0];
  if (!map) throw new ConfigError(`The pooling node '${pool.name}' has no input.`);
  const int64s = (name: string, values: number[]) => {
    initializers.push(
      onnx.TensorProto.create({
        name,
        dataType: onnx.TensorProto.DataType.INT64,
        dims: [values.length],
        int64Data: values,
      }),
    );
    return name;
  };
  const scalar = (name: string, value: number) => {
    initializers.push(
      onnx.TensorProto.create({
        name,
        dataType: onnx.TensorProto.DataType.FLOAT,
        dims: [],
        floatData: [value],
      }),
    );
    return name;
  };
  if (QUANTIZED_POOL_OPS.has(pool.opType ?? '')) {
    // QLinear pools take (X, x_scale, x_zero_point, ...): the map's own scale and zero point.
    const scale = pool.input?.[1];
    const zeroPoint = pool.input?.[2];
    if (!scale || !zeroPoint)
      throw new ConfigError(`Quantized pool '${pool.name}' lacks its input scale and zero point.`);
    nodes.push(
      onnx.NodeProto.create({
        name: 'ompf_gem_dequantize',
        opType: 'DequantizeLinear',
        input: [map, scale, zeroPoint],
        output: ['ompf_gem_map'],
      }),
    );
    map = 'ompf_gem_map';
  }
  // GeM is positively homogeneous (GeM(c x) = c GeM(x)) and the vector is L2-normalised afterwards, so
  // each image's map is first divided by its largest value: x^p then cannot overflow float32 however
  // large the activations (the weightless light_resnet50 test graph reaches 1e13).
  const maxAttributes =
    opset >= 18
      ? []
      : [
          onnx.AttributeProto.create({
            name: 'axes',
            type: onnx.AttributeProto.AttributeType.INTS,
            ints: [1, 2, 3],
          }),
        ];
  const maxInputs = opset >= 18 ? [map, int64s('ompf_gem_axes', [1, 2, 3])] : [map];
  nodes.push(
    onnx.NodeProto.create({
      name: 'ompf_gem_max',
      opType: 'ReduceMax',
      input: maxInputs,
      output: ['ompf_gem_max'],
      attribute: maxAttributes,
    }),
    onnx.NodeProto.create({
      name: 'ompf_gem_max_floor',
      opType: 'Add',
      input: ['ompf_gem_max', scalar('ompf_gem_tiny', 1e-30)],
      output: ['ompf_gem_divisor'],
    }),
    onnx.NodeProto.create({
      name: 'ompf_gem_scale',
      opType: 'Div',
      input: [map, 'ompf_gem_divisor'],
      output: ['ompf_gem_scaled'],
    }),
  );
  map = 'ompf_gem_scaled';
  const clip =
    opset >= 11
      ? onnx.NodeProto.create({
          name: 'ompf_gem_clip',
          opType: 'Clip',
          input: [map, scalar('ompf_gem_epsilon', GEM_EPSILON)],
          output: ['ompf_gem_clipped'],
        })
      : onnx.NodeProto.create({
          name: 'ompf_gem_clip',
          opType: 'Clip',
          input: [map],
          output: ['ompf_gem_clipped'],
          attribute: [
            onnx.AttributeProto.create({
              name: 'min',
              type: onnx.AttributeProto.AttributeType.FLOAT,
              f: GEM_EPSILON,
            }),
          ],
        });
  nodes.push(
    clip,
    onnx.NodeProto.create({
      name: 'ompf_gem_pow',
      opType: 'Pow',
      input: ['ompf_gem_clipped', scalar('ompf_gem_p', power)],
      output: ['ompf_gem_powered'],
    }),
    onnx.NodeProto.create({
      name: 'ompf_gem_mean',
      opType: 'GlobalAveragePool',
      input: ['ompf_gem_powered'],
      output: ['ompf_gem_mean'],
    }),
    onnx.NodeProto.create({
      name: 'ompf_gem_root',
      opType: 'Pow',
      input: ['ompf_gem_mean', scalar('ompf_gem_inverse_p', 1 / power)],
      output: ['ompf_gem'],
    }),
  );
  return 'ompf_gem';
}
