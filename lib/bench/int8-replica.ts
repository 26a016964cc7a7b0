import { onnx } from 'onnx-proto';

/**
 * An int8 replica of a float32 CNN graph, for measuring int8 inference speed only: its outputs are
 * meaningless. The real int8 ResNet50 (`resnet50-int8`, the ONNX Model Zoo's resnet50-v1-12-int8) cannot
 * be downloaded here, and light_resnet50.onnx has no real weights to quantize anyway, so the bench builds
 * the same layers in QDQ form and lets onnxruntime fuse them into the kernels such a model runs on:
 *
 * - every weight produced by ConstantOfShape (light_resnet50's stand-in for an initializer) becomes an
 *   int8 initializer of the same shape behind a DequantizeLinear;
 * - BatchNormalization is dropped (a quantized model has it folded into the convolution);
 * - every activation (the graph input and each Conv, Relu and MaxPool output) goes through a
 *   QuantizeLinear / DequantizeLinear pair (uint8, zero point 0), with the original tensor name on the
 *   dequantized side, so consumers and the feature output keep their names;
 * - the residual two-input Sum becomes Add, left unquantized: the Relu after it is quantized, and
 *   onnxruntime fuses DQ -> Add -> Relu -> Q into QLinearAdd (it has no quantized Sum).
 *
 * onnxruntime's graph optimisation then fuses DQ -> Conv -> Relu -> Q into QLinearConv (u8 activations,
 * s8 weights), which uses VNNI where the CPU has it. The global pool stays float, as the feature output.
 * Written for light_resnet50.onnx (Caffe2 ResNet50, opset 9); other graphs are not its concern.
 */
export function int8Replica(modelBytes: Uint8Array): Uint8Array {
  const model = onnx.ModelProto.decode(modelBytes);
  const graph = model.graph!;
  const initializers = (graph.initializer ??= []);
  const shapes = new Map(initializers.map((t) => [t.name!, t]));
  const scalar = (name: string, dataType: number, field: 'floatData' | 'int32Data', value: number) =>
    onnx.TensorProto.create({ name, dataType, dims: [], [field]: [value] });
  const F = onnx.TensorProto.DataType;
  initializers.push(
    scalar('ompf_act_scale', F.FLOAT, 'floatData', 0.05),
    scalar('ompf_act_zero', F.UINT8, 'int32Data', 0),
    scalar('ompf_weight_scale', F.FLOAT, 'floatData', 0.01),
    scalar('ompf_weight_zero', F.INT8, 'int32Data', 0),
  );

  const weightNames = new Set<string>();
  for (const node of graph.node ?? []) {
    if (node.opType === 'Conv') weightNames.add(node.input![1]!);
  }
  // Tensors whose producer went or changed: BatchNormalization output -> its Conv's output, Add output ->
  // its float name.
  const renamed = new Map<string, string>();
  const nodes: onnx.INodeProto[] = [];
  const quantizeActivation = (name: string): void => {
    const float = `${name}__float`;
    const quantized = `${name}__u8`;
    nodes.push(
      { opType: 'QuantizeLinear', input: [float, 'ompf_act_scale', 'ompf_act_zero'], output: [quantized] },
      { opType: 'DequantizeLinear', input: [quantized, 'ompf_act_scale', 'ompf_act_zero'], output: [name] },
    );
  };
  const input = graph.input![0]!.name!;
  const inputFloat = `${input}__float`;
  const resolve = (name: string) => renamed.get(name) ?? name;

  for (const node of graph.node ?? []) {
    const output = node.output![0]!;
    if (node.opType === 'ConstantOfShape' && weightNames.has(output)) {
      const shape = shapes.get(node.input![0]!);
      if (!shape) throw new Error(`int8Replica: the shape of weight '${output}' is not an initializer.`);
      const dims = int64Values(shape);
      const count = dims.reduce((a, b) => a * b, 1);
      initializers.push(
        onnx.TensorProto.create({
          name: `${output}__s8`,
          dataType: F.INT8,
          dims,
          // Raw bytes: 25 M int8 weights as int32Data would take seconds to build and encode.
          rawData: Uint8Array.from({ length: count }, (_, i) => (((i * 7) % 13) - 6) & 0xff),
        }),
      );
      nodes.push({
        opType: 'DequantizeLinear',
        input: [`${output}__s8`, 'ompf_weight_scale', 'ompf_weight_zero'],
        output: [output],
      });
      continue;
    }
    if (node.opType === 'BatchNormalization') {
      renamed.set(output, resolve(node.input![0]!));
      continue;
    }
    const inputs = (node.input ?? []).map((name) => (name === input ? inputFloat : resolve(name)));
    if (['Conv', 'Relu', 'Sum', 'MaxPool'].includes(node.opType ?? '')) {
      const opType = node.opType === 'Sum' && inputs.length === 2 ? 'Add' : node.opType!;
      nodes.push({ ...node, opType, input: inputs, output: [`${output}__float`] });
      // A residual Add feeds a Relu, whose output is quantized: onnxruntime then fuses Add + Relu + Q.
      if (opType === 'Add') renamed.set(output, `${output}__float`);
      else quantizeActivation(output);
    } else {
      nodes.push({ ...node, input: inputs });
    }
  }
  // The graph input is quantized first: rename its uses above, then Q/DQ it back to the float name.
  nodes.unshift(
    { opType: 'QuantizeLinear', input: [input, 'ompf_act_scale', 'ompf_act_zero'], output: [`${input}__u8`] },
    {
      opType: 'DequantizeLinear',
      input: [`${input}__u8`, 'ompf_act_scale', 'ompf_act_zero'],
      output: [inputFloat],
    },
  );
  graph.node = nodes;
  for (const output of graph.output ?? []) output.name = resolve(output.name!);
  model.opsetImport = [{ domain: '', version: 13 }];
  return onnx.ModelProto.encode(model).finish();
}

/** An int64 tensor's values, stored in int64Data or (as most exporters write them) in rawData. */
function int64Values(tensor: onnx.ITensorProto): number[] {
  if (tensor.int64Data?.length) return tensor.int64Data.map(Number);
  const raw = tensor.rawData ?? new Uint8Array();
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return Array.from({ length: raw.byteLength / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
}

/**
 * The same graph with every ConstantOfShape weight (light_resnet50's stand-in for an initializer) as a
 * real float32 initializer of that shape: a file the size of the real model (about 100 MB for
 * ResNet50), so loading it (reading, checking, parsing, placing the weights) costs what the real one
 * does. Small pseudo-random values; the outputs are meaningless.
 */
export function materializedFloat(modelBytes: Uint8Array): Uint8Array {
  const model = onnx.ModelProto.decode(modelBytes);
  const graph = model.graph!;
  const initializers = (graph.initializer ??= []);
  const shapes = new Map(initializers.map((t) => [t.name!, t]));
  const nodes: onnx.INodeProto[] = [];
  // BatchNormalization's inputs get neutral values (scale 1, bias 0, mean 0, variance 1) and
  // convolution weights He-scaled ones, so activations stay finite through the 50 layers.
  const batchNorm = new Map<string, number>();
  for (const node of graph.node ?? []) {
    if (node.opType === 'BatchNormalization') {
      (node.input ?? []).slice(1, 5).forEach((name, i) => batchNorm.set(name, [1, 0, 0, 1][i]!));
    }
  }
  let seed = 1;
  const uniform = () => {
    seed = (seed * 1_103_515_245 + 12_345) >>> 0;
    return (seed >>> 8) / 16_777_216 - 0.5;
  };
  for (const node of graph.node ?? []) {
    const shape = node.opType === 'ConstantOfShape' ? shapes.get(node.input![0]!) : undefined;
    if (!shape) {
      nodes.push(node);
      continue;
    }
    const name = node.output![0]!;
    const dims = int64Values(shape);
    const values = new Float32Array(dims.reduce((a, b) => a * b, 1));
    const neutral = batchNorm.get(name);
    if (neutral !== undefined) values.fill(neutral);
    else {
      const fanIn = dims.length === 4 ? dims[1]! * dims[2]! * dims[3]! : (dims[1] ?? 1);
      const bound = Math.sqrt(6 / fanIn);
      for (let i = 0; i < values.length; i++) values[i] = 2 * bound * uniform();
    }
    initializers.push(
      onnx.TensorProto.create({
        name,
        dataType: onnx.TensorProto.DataType.FLOAT,
        dims,
        rawData: new Uint8Array(values.buffer),
      }),
    );
  }
  graph.node = nodes;
  // IR version 3 wants every initializer listed as a graph input, which keeps onnxruntime from
  // treating it as a constant; from 4 on they need not be, so only the image stays an input.
  if (Number(model.irVersion ?? 0) < 4) model.irVersion = 4;
  const used = new Set(nodes.flatMap((node) => node.input ?? []));
  graph.initializer = initializers.filter((t) => used.has(t.name!));
  const constants = new Set(initializers.map((t) => t.name));
  graph.input = (graph.input ?? []).filter((input) => !constants.has(input.name));
  return onnx.ModelProto.encode(model).finish();
}
