import { cpus } from 'node:os';
import { readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { onnxSessionOptions } from '../../lib/adapters/onnx/onnx-embedder';

/**
 * int8 models must compute exact integer products on every x64 CPU. Without VNNI, onnxruntime's
 * default U8S8 kernels pair products with VPMADDUBSW, whose int16 intermediate saturates
 * (255 x 127 x 2 = 64,770 > 32,767): the product embedder's session options switch those CPUs to
 * exact kernels. A one-node QLinearMatMul whose true result is known shows it.
 */
const K = 64;

function qLinearMatMul(): Uint8Array {
  const { FLOAT, UINT8, INT8 } = onnx.TensorProto.DataType;
  const scalar = (name: string, dataType: onnx.TensorProto.DataType, value: number) =>
    onnx.TensorProto.create({
      name,
      dataType,
      dims: [],
      ...(dataType === FLOAT ? { floatData: [value] } : { int32Data: [value] }),
    });
  const graph = onnx.GraphProto.create({
    name: 'saturation',
    node: [
      onnx.NodeProto.create({
        opType: 'QLinearMatMul',
        input: ['a', 'a_scale', 'a_zero', 'b', 'b_scale', 'b_zero', 'y_scale', 'y_zero'],
        output: ['q'],
      }),
      // The int32 accumulator is what we want to see: dequantize with scale 1 and compare exactly.
      onnx.NodeProto.create({ opType: 'DequantizeLinear', input: ['q', 'y_scale', 'y_zero'], output: ['y'] }),
    ],
    initializer: [
      scalar('a_scale', FLOAT, 1),
      scalar('a_zero', UINT8, 0),
      onnx.TensorProto.create({
        name: 'b',
        dataType: INT8,
        dims: [K, 1],
        int32Data: Array.from({ length: K }, () => 127),
      }),
      scalar('b_scale', FLOAT, 1),
      scalar('b_zero', INT8, 0),
      // Output scale chosen so the exact sum (255 x 127 x 64 = 2,072,640) lands on 240 in uint8.
      scalar('y_scale', FLOAT, 8636),
      scalar('y_zero', UINT8, 0),
    ],
    input: [
      onnx.ValueInfoProto.create({
        name: 'a',
        type: { tensorType: { elemType: UINT8, shape: { dim: [{ dimValue: 1 }, { dimValue: K }] } } },
      }),
    ],
    output: [
      onnx.ValueInfoProto.create({
        name: 'y',
        type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: 1 }, { dimValue: 1 }] } } },
      }),
    ],
  });
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({ irVersion: 7, opsetImport: [{ domain: '', version: 13 }], graph }),
  ).finish();
}

async function run(options: ort.InferenceSession.SessionOptions): Promise<number> {
  const session = await ort.InferenceSession.create(qLinearMatMul(), options);
  try {
    const a = new ort.Tensor('uint8', new Uint8Array(K).fill(255), [1, K]);
    const { y } = await session.run({ a });
    return (y!.data as Float32Array)[0]!;
  } finally {
    await session.release();
  }
}

const flags = (() => {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
})();
const vnni = /\b(avx512_vnni|avx_vnni)\b/.test(flags);

describe('int8 precision of the embedding sessions', () => {
  it('computes an int8 product exactly with the product session options, on this CPU', async () => {
    // Act
    const exact = await run(onnxSessionOptions(1));
    // Assess: 2,072,640 / 8,636 = 240 exactly.
    expect(exact).toBe(240 * 8636);
  });

  it('shows what the option prevents: on x64 without VNNI the default kernels saturate', async () => {
    // Prepare: the same options without the precision key.
    const plain = { ...onnxSessionOptions(1) };
    delete plain.extra;
    // Act
    const result = await run(plain);
    // Assess: where the hardware has VNNI (or is not x64) the default is exact too; elsewhere it is not.
    const affected = process.arch === 'x64' && !vnni && /\bavx2\b/.test(flags);
    expect({ cpu: cpus()[0]?.model, affected, exact: result === 240 * 8636 }).toEqual({
      cpu: cpus()[0]?.model,
      affected,
      exact: !affected,
    });
  });
});
