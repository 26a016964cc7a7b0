import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type * as Esbuild from 'esbuild';
import { ConfigError, DependencyUnavailableError } from '../../core/errors';
import type { ModelSpec } from '../../core/model-spec';
import type { Embedder, PreparedImage } from '../../core/ports';
import type { OnnxEmbedder } from './onnx-embedder';
import type { ChunkRequest, SerializedError, WorkerInit, WorkerReply } from './onnx-worker';

export interface WorkerPoolOptions {
  /** Worker threads, each with its own onnxruntime session. */
  readonly workers: number;
  /** onnxruntime intra-op threads per worker. */
  readonly threadsPerWorker: number;
  /** Most images one worker embeds in one run. */
  readonly batchSize: number;
}

interface Chunk {
  readonly request: ChunkRequest;
  /** Resolves when the chunk has its answer, either way (close() waits for it). */
  readonly settled: Promise<unknown>;
  /** request.input's memory, handed to the worker without a copy. */
  readonly transfer: ArrayBuffer;
  resolve(vectors: Float32Array): void;
  reject(error: Error): void;
}

interface Slot {
  readonly worker: Worker;
  current: Chunk | undefined;
}

/**
 * Embeds batches on several worker threads, one onnxruntime session with few intra-op threads each,
 * instead of one session spreading every operator over all cores.
 *
 * Why: an onnxruntime operator split over two threads waits for the slower one, so whenever sharp's
 * decoding (libuv pool) or the store's writes take a core, the whole session stalls. Independent
 * sessions only lose the time actually taken from them. Measured on 2 cores, ResNet50 layers, batch 8,
 * 192 photos decoded while embedding (4 alternating rounds in one process): one 2-thread session
 * 18.1-22.2 images/s, two 1-thread workers 21.3-23.1, against 21-25 for either without decoding.
 * The calling thread also stays free (onnxruntime-node runs a session synchronously on it), so the
 * local server keeps answering while it indexes.
 */
export class OnnxWorkerPool implements Embedder {
  private readonly idle: Slot[] = [];
  private readonly waiting: Chunk[] = [];
  private nextId = 0;
  private failure: Error | undefined;
  private closing = false;

  private constructor(
    private readonly slots: readonly Slot[],
    private readonly batchSize: number,
    readonly modelId: string,
    readonly dimension: number,
  ) {
    this.idle.push(...slots);
    for (const slot of slots) {
      slot.worker.on('message', (reply: WorkerReply) => this.onReply(slot, reply));
      slot.worker.on('error', (error) => this.fail(error.message));
      slot.worker.on('exit', (code) => {
        if (!this.closing) this.fail(`it exited with code ${code}`);
        // The dead worker's chunk can never be answered.
        slot.current?.reject(this.failure ?? workersStopped());
        slot.current = undefined;
      });
    }
  }

  /** Start the workers and wait until each has loaded its session (the model is checked there too). */
  static async start(
    spec: ModelSpec,
    modelBytes: Uint8Array,
    options: WorkerPoolOptions,
  ): Promise<OnnxWorkerPool> {
    const init: WorkerInit = {
      spec,
      modelBytes,
      threads: options.threadsPerWorker,
      batchSize: options.batchSize,
    };
    const workers = Array.from({ length: Math.max(1, options.workers) }, () => startWorker(init));
    // Every worker ends loading (ready or failed) before any is terminated: terminating a thread inside
    // an onnxruntime run (the load's warm-up) aborts the process.
    const loaded = await Promise.allSettled(workers.map(untilReady));
    const failed = loaded.find((result) => result.status === 'rejected');
    if (failed) {
      await Promise.all(workers.map((worker) => worker.terminate()));
      throw failed.reason;
    }
    return new OnnxWorkerPool(
      workers.map((worker) => ({ worker, current: undefined })),
      Math.max(1, options.batchSize),
      spec.id,
      spec.dimension,
    );
  }

  /** Splits the images evenly over the workers (at most batchSize each per run), in input order. */
  async embed(images: readonly PreparedImage[]): Promise<Float32Array[]> {
    if (images.length === 0) return [];
    const chunkSize = Math.min(this.batchSize, Math.ceil(images.length / this.slots.length));
    const parts: Promise<Float32Array>[] = [];
    for (let start = 0; start < images.length; start += chunkSize) {
      parts.push(this.submit(images.slice(start, start + chunkSize)));
    }
    const vectors: Float32Array[] = [];
    for (const flat of await Promise.all(parts)) {
      for (let offset = 0; offset < flat.length; offset += this.dimension) {
        vectors.push(flat.slice(offset, offset + this.dimension));
      }
    }
    return vectors;
  }

  /**
   * Stop the workers once the runs in flight have finished: terminating a thread inside an onnxruntime
   * run aborts the whole process (onnxruntime-node throws from native code). Queued chunks are refused.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const inFlight = this.slots.flatMap((slot) => (slot.current ? [slot.current.settled] : []));
    this.refuseWaiting(workersStopped());
    await Promise.all(inFlight);
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  private submit(images: readonly PreparedImage[]): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(workersStopped());
    const total = images.reduce((sum, image) => sum + image.tensor.length, 0);
    const transfer = new ArrayBuffer(total * Float32Array.BYTES_PER_ELEMENT);
    const input = new Float32Array(transfer);
    let offset = 0;
    for (const image of images) {
      input.set(image.tensor, offset);
      offset += image.tensor.length;
    }
    const shapes = images.some((image) => image.tensorShape)
      ? images.map((image) => image.tensorShape)
      : undefined;
    let resolve!: (vectors: Float32Array) => void;
    let reject!: (error: Error) => void;
    const result = new Promise<Float32Array>((onVectors, onError) => {
      resolve = onVectors;
      reject = onError;
    });
    const settled = result.catch(() => undefined);
    const request = { id: this.nextId++, count: images.length, input, shapes };
    this.waiting.push({ request, transfer, settled, resolve, reject });
    this.dispatch();
    return result;
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.waiting.length > 0) {
      const slot = this.idle.pop()!;
      const chunk = this.waiting.shift()!;
      slot.current = chunk;
      // Busy workers keep the process alive (a CLI awaiting vectors); idle ones never do.
      slot.worker.ref();
      slot.worker.postMessage(chunk.request, [chunk.transfer]);
    }
  }

  private onReply(slot: Slot, reply: WorkerReply): void {
    const chunk = slot.current;
    if (!chunk || (reply.kind !== 'vectors' && reply.kind !== 'error') || reply.id !== chunk.request.id)
      return;
    slot.current = undefined;
    slot.worker.unref();
    this.idle.push(slot);
    if (reply.kind === 'vectors') chunk.resolve(reply.vectors);
    else chunk.reject(revive(reply.error));
    this.dispatch();
  }

  /** A worker died (out of memory, a crash in native code): every pending and later call fails. */
  private fail(reason: string): void {
    this.failure ??= new DependencyUnavailableError(`An embedding worker stopped: ${reason}.`, {
      hint: 'Run the command again (the server restarts its workers on the next batch); if it repeats, lower OMPF_INDEX_WORKERS or free memory.',
    });
    // Chunks on living workers still get their answers; the dead worker's is rejected at its 'exit'.
    this.refuseWaiting(this.failure);
  }

  private refuseWaiting(error: Error): void {
    for (const chunk of this.waiting.splice(0)) chunk.reject(error);
  }
}

/**
 * Single images (queries) run on the in-process session with every intra-op thread, for latency;
 * batches (indexing, evaluation) go to the worker pool, for throughput. The pool starts at the first
 * batch and stops after `idleMs` without one, so a server that has finished indexing gives the
 * memory of its worker sessions back.
 */
export class PooledOnnxEmbedder implements Embedder {
  private pool: Promise<OnnxWorkerPool> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private busy = 0;

  constructor(
    private readonly inProcess: OnnxEmbedder,
    private readonly startPool: () => Promise<OnnxWorkerPool>,
    private readonly idleMs = 60_000,
  ) {}

  get modelId(): string {
    return this.inProcess.modelId;
  }

  get dimension(): number {
    return this.inProcess.dimension;
  }

  async embed(images: readonly PreparedImage[]): Promise<Float32Array[]> {
    if (images.length < 2) return this.inProcess.embed(images);
    clearTimeout(this.idleTimer);
    this.busy++;
    const pool = (this.pool ??= this.startPool());
    try {
      return await (await pool).embed(images);
    } catch (error) {
      // A pool that failed to start or lost a worker is dropped: the next batch starts a new one.
      if (this.pool === pool) this.pool = undefined;
      void pool.then((broken) => broken.close()).catch(() => undefined);
      throw error;
    } finally {
      if (--this.busy === 0 && this.pool) {
        this.idleTimer = setTimeout(() => void this.stopPool(), this.idleMs).unref();
      }
    }
  }

  /** Whether worker threads are running now (they start with the first batch). */
  get poolRunning(): boolean {
    return this.pool !== undefined;
  }

  async close(): Promise<void> {
    await this.stopPool();
    await this.inProcess.close();
  }

  private async stopPool(): Promise<void> {
    clearTimeout(this.idleTimer);
    const pool = this.pool;
    this.pool = undefined;
    if (pool) await (await pool.catch(() => undefined))?.close();
  }
}

/** What a chunk gets when the pool was closed before it could run. */
function workersStopped(): DependencyUnavailableError {
  return new DependencyUnavailableError('The embedding workers were stopped.');
}

function untilReady(worker: Worker): Promise<void> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number) =>
      reject(
        new DependencyUnavailableError(
          `An embedding worker exited with code ${code} while loading the model.`,
        ),
      );
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (reply: WorkerReply) => {
      worker.off('error', reject);
      worker.off('exit', onExit);
      worker.unref();
      if (reply.kind === 'ready') resolve();
      else if (reply.kind === 'failed') reject(revive(reply.error));
      else reject(new Error(`An embedding worker answered '${reply.kind}' before it was ready.`));
    });
  });
}

function revive(error: SerializedError): Error {
  // Configuration problems (a spec that does not fit the model) keep their class and hint; anything
  // else from onnxruntime is unexpected and surfaces as an internal error.
  if (error.name === 'ConfigError') {
    return new ConfigError(error.message, error.hint === undefined ? {} : { hint: error.hint });
  }
  return new Error(`Embedding worker: ${error.name}: ${error.message}`);
}

/**
 * The compiled worker sits beside this module (dist/). Run from TypeScript sources (tests, ts tools),
 * there is no .js to start, so the entry is bundled in memory with esbuild, a development dependency;
 * the module name is a variable so that bundlers (the Lambda's esbuild) do not try to include it.
 */
function startWorker(init: WorkerInit): Worker {
  const compiled = join(__dirname, 'onnx-worker.js');
  if (existsSync(compiled)) return new Worker(compiled, { workerData: init });
  const bundlerModule = 'esbuild';
  const esbuild = createRequire(__filename)(bundlerModule) as typeof Esbuild;
  const bundle = esbuild.buildSync({
    entryPoints: [join(__dirname, 'onnx-worker.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    packages: 'external',
    write: false,
    logLevel: 'silent',
  });
  return new Worker(bundle.outputFiles[0]!.text, { eval: true, workerData: init });
}
