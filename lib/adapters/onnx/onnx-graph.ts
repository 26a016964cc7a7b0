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
}

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
  if (QUANTIZED_POOL_OPS.has(producer.opType ?? '')) {
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
