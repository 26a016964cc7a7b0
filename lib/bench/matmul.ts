import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { timeRepeated } from './measure';

/** An ONNX graph computing one n x n by n x n float32 MatMul: 2n^3 floating-point operations. */
export function matMulModel(): Uint8Array {
  const tensor = (name: string) =>
    onnx.ValueInfoProto.create({
      name,
      type: {
        tensorType: {
          elemType: onnx.TensorProto.DataType.FLOAT,
          shape: { dim: [{ dimParam: 'n' }, { dimParam: 'n' }] },
        },
      },
    });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'matmul',
      node: [{ opType: 'MatMul', input: ['a', 'b'], output: ['c'] }],
      input: [tensor('a'), tensor('b')],
      output: [tensor('c')],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * This CPU's float32 matrix-multiply rate through onnxruntime-node (the same kernels a CNN's
 * convolutions use), in GFLOP/s: the ceiling for CNN inference on this machine.
 */
export async function measureMatMulGflops(threads: number, n: number, minMs: number): Promise<number> {
  const session = await ort.InferenceSession.create(matMulModel(), {
    intraOpNumThreads: threads,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  try {
    const data = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000);
    const feeds = { a: new ort.Tensor('float32', data, [n, n]), b: new ort.Tensor('float32', data, [n, n]) };
    const ms = await timeRepeated(() => session.run(feeds), minMs, 3);
    return (2 * n ** 3) / (ms / 1000) / 1e9;
  } finally {
    await session.release();
  }
}
