/**
 * Entry point of one embedding worker thread (see OnnxWorkerPool): one onnxruntime session, loaded
 * once, answering batches until the pool terminates the thread. No imports from the pool itself, so the
 * thread loads only what a session needs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ModelSpec } from '../../core/model-spec';
import type { PreparedImage, TensorShape } from '../../core/ports';
import { OnnxEmbedder } from './onnx-embedder';

export interface WorkerInit {
  readonly spec: ModelSpec;
  readonly modelBytes: Uint8Array;
  readonly threads: number;
  readonly batchSize: number;
}

/**
 * Images of one chunk in one buffer, one after the other (each 3 x height x width), transferred, not
 * copied; `shapes` gives each image's tensor shape when it is not the model's square crop.
 */
export interface ChunkRequest {
  readonly id: number;
  readonly count: number;
  readonly input: Float32Array;
  readonly shapes?: readonly (TensorShape | undefined)[] | undefined;
}

/** What an error looks like on its way back to the pool: the class name, the message and the hint. */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly hint: string | undefined;
}

export type WorkerReply =
  | { readonly kind: 'ready' }
  | { readonly kind: 'failed'; readonly error: SerializedError }
  | { readonly kind: 'vectors'; readonly id: number; readonly vectors: Float32Array }
  | { readonly kind: 'error'; readonly id: number; readonly error: SerializedError };

function serialize(error: unknown): SerializedError {
  return error instanceof Error
    ? { name: error.name, message: error.message, hint: (error as { hint?: string }).hint }
    : { name: 'Error', message: String(error), hint: undefined };
}

async function serve(port: NonNullable<typeof parentPort>, init: WorkerInit): Promise<void> {
  let embedder: OnnxEmbedder;
  try {
    embedder = await OnnxEmbedder.load(init.spec, init.modelBytes, {
      threads: init.threads,
      batchSize: init.batchSize,
    });
  } catch (error) {
    port.postMessage({ kind: 'failed', error: serialize(error) } satisfies WorkerReply);
    return;
  }
  const crop = init.spec.preprocess.cropSize;
  port.on('message', (request: ChunkRequest) => {
    let offset = 0;
    const images: PreparedImage[] = Array.from({ length: request.count }, (_, i) => {
      const tensorShape = request.shapes?.[i];
      const size = 3 * (tensorShape ? tensorShape.height * tensorShape.width : crop * crop);
      const tensor = request.input.subarray(offset, offset + size);
      offset += size;
      return { tensor, tensorShape, width: 0, height: 0 };
    });
    embedder.embed(images).then(
      (vectors) => {
        const flat = new Float32Array(vectors.length * embedder.dimension);
        vectors.forEach((vector, i) => flat.set(vector, i * embedder.dimension));
        port.postMessage({ kind: 'vectors', id: request.id, vectors: flat } satisfies WorkerReply, [
          flat.buffer,
        ]);
      },
      (error: unknown) => {
        port.postMessage({ kind: 'error', id: request.id, error: serialize(error) } satisfies WorkerReply);
      },
    );
  });
  port.postMessage({ kind: 'ready' } satisfies WorkerReply);
}

if (parentPort) void serve(parentPort, workerData as WorkerInit);
