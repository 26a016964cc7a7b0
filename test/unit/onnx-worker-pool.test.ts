import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { SharpImagePreprocessor } from '../../lib/adapters/image/sharp-preprocessor';
import { BUILTIN_MODELS, readVerifiedModel } from '../../lib/adapters/models/model-registry';
import { OnnxEmbedder } from '../../lib/adapters/onnx/onnx-embedder';
import { OnnxWorkerPool, PooledOnnxEmbedder } from '../../lib/adapters/onnx/onnx-worker-pool';
import { ConfigError, DependencyUnavailableError } from '../../lib/core/errors';
import type { PreparedImage } from '../../lib/core/ports';
import { defaultIndexWorkers, loadConfig, threadsPerIndexWorker } from '../../lib/runtime/config';
import { CALTECH_DIR, MODELS_DIR, requirePath } from '../helpers/shared';

const mobilenet = BUILTIN_MODELS['mobilenetv2-int8']!;
const CLASSES = ['okapi', 'dolphin', 'flamingo', 'hedgehog', 'rhino', 'starfish', 'lobster'];

function maxAbsoluteDifference(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let max = 0;
  a.forEach((vector, v) => {
    for (let i = 0; i < vector.length; i++) max = Math.max(max, Math.abs(vector[i]! - b[v]![i]!));
  });
  return max;
}

/** The pool's worker threads, for the tests that kill one (they are private on purpose). */
function workersOf(pool: OnnxWorkerPool): Worker[] {
  return (pool as unknown as { slots: { worker: Worker }[] }).slots.map((slot) => slot.worker);
}

const startPool = (workers = 2, batchSize = 3) =>
  OnnxWorkerPool.start(mobilenet, readVerifiedModel(mobilenet, MODELS_DIR), {
    workers,
    threadsPerWorker: 1,
    batchSize,
  });

describe('embedding on worker threads', () => {
  let images: PreparedImage[];
  let inProcess: OnnxEmbedder;
  let expected: Float32Array[];

  beforeAll(async () => {
    const preprocessor = new SharpImagePreprocessor(mobilenet.preprocess, { maxBytes: 50e6, maxPixels: 1e8 });
    images = await Promise.all(
      CLASSES.map((c) =>
        preprocessor.prepare(readFileSync(join(requirePath(CALTECH_DIR, 'Dataset'), c, 'image_0001.jpg'))),
      ),
    );
    inProcess = await OnnxEmbedder.load(mobilenet, readVerifiedModel(mobilenet, MODELS_DIR), {
      threads: 0,
      batchSize: 8,
    });
    expected = await inProcess.embed(images);
  });
  afterAll(() => inProcess.close());

  it('gives the in-process vectors, in input order, for a batch split over two workers', async () => {
    const pool = await startPool(2, 3); // 7 images: chunks of 3, 3 and 1 over two workers
    try {
      // Act
      const vectors = await pool.embed(images);
      // Assess
      expect(vectors).toHaveLength(7);
      expect(maxAbsoluteDifference(vectors, expected)).toBeLessThan(1e-5);
      // ... and the images really differ (a pool returning one vector seven times would fail here).
      expect(maxAbsoluteDifference([vectors[0]!], [vectors[1]!])).toBeGreaterThan(0.01);
      expect(await pool.embed([])).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('answers concurrent calls each with its own vectors', async () => {
    const pool = await startPool(2, 2);
    try {
      const [first, second] = await Promise.all([
        pool.embed(images.slice(0, 4)),
        pool.embed(images.slice(4)),
      ]);
      expect(maxAbsoluteDifference([...first, ...second], expected)).toBeLessThan(1e-5);
    } finally {
      await pool.close();
    }
  });

  it('refuses a model spec that does not fit the model, with the same ConfigError as in process', async () => {
    const wrong = { ...mobilenet, dimension: 1000 };
    const started = OnnxWorkerPool.start(wrong, readVerifiedModel(mobilenet, MODELS_DIR), {
      workers: 2,
      threadsPerWorker: 1,
      batchSize: 4,
    });
    await expect(started).rejects.toThrow(ConfigError);
    await expect(started).rejects.toThrow(/yields 1280-d features .* spec says 1000/);
  });

  it('fails every later call with a clear error when a worker has died', async () => {
    // Prepare: a pool that has answered once. (A worker is killed between runs: terminating a thread
    // inside an onnxruntime run aborts the process, which is why close() waits for runs in flight.)
    const pool = await startPool(2, 2);
    await pool.embed(images.slice(0, 4));
    // Act
    await workersOf(pool)[0]!.terminate();
    // Assess
    await expect(pool.embed(images.slice(0, 4))).rejects.toThrow(DependencyUnavailableError);
    await expect(pool.embed(images.slice(0, 2))).rejects.toThrow(
      /An embedding worker stopped: it exited with code 1/,
    );
    await pool.close();
  });

  it('lets the runs in flight finish when closed, and refuses calls after', async () => {
    const pool = await startPool(2, 1);
    const refused = expect(pool.embed(images)).rejects.toThrow(/The embedding workers were stopped/);
    await pool.close();
    // The two chunks already running were answered; the five queued ones were refused.
    await refused;
    await expect(pool.embed(images.slice(0, 2))).rejects.toThrow(/The embedding workers were stopped/);
  });
});

describe('PooledOnnxEmbedder: queries in process, batches on workers', () => {
  let images: PreparedImage[];
  let expected: Float32Array[];
  let embedder: PooledOnnxEmbedder;
  let starts = 0;
  const pools: OnnxWorkerPool[] = [];

  beforeAll(async () => {
    const preprocessor = new SharpImagePreprocessor(mobilenet.preprocess, { maxBytes: 50e6, maxPixels: 1e8 });
    images = await Promise.all(
      CLASSES.slice(0, 4).map((c) =>
        preprocessor.prepare(readFileSync(join(CALTECH_DIR, c, 'image_0001.jpg'))),
      ),
    );
    const inProcess = await OnnxEmbedder.load(mobilenet, readVerifiedModel(mobilenet, MODELS_DIR), {
      threads: 0,
      batchSize: 8,
    });
    expected = await inProcess.embed(images);
    embedder = new PooledOnnxEmbedder(
      inProcess,
      async () => {
        starts++;
        const pool = await startPool(2, 4);
        pools.push(pool);
        return pool;
      },
      200,
    );
  });
  afterAll(() => embedder.close());

  it('embeds a single image on the in-process session without starting workers', async () => {
    const [vector] = await embedder.embed([images[0]!]);
    expect(maxAbsoluteDifference([vector!], [expected[0]!])).toBeLessThan(1e-5);
    expect(starts).toBe(0);
    expect(embedder.poolRunning).toBe(false);
  });

  it('starts the workers at the first batch, reuses them, and stops them when idle', async () => {
    // Act
    const first = await embedder.embed(images);
    const second = await embedder.embed(images.slice(1));
    // Assess
    expect(maxAbsoluteDifference(first, expected)).toBeLessThan(1e-5);
    expect(maxAbsoluteDifference(second, expected.slice(1))).toBeLessThan(1e-5);
    expect(starts).toBe(1);
    expect(embedder.poolRunning).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(embedder.poolRunning).toBe(false);
  });

  it('replaces a pool that lost a worker at the next batch', async () => {
    // Prepare: a running pool, one of whose workers is then killed.
    await embedder.embed(images);
    const broken = pools.at(-1)!;
    const startsBefore = starts;
    await workersOf(broken)[1]!.terminate();
    // Act
    await expect(embedder.embed(images)).rejects.toThrow(DependencyUnavailableError);
    const vectors = await embedder.embed(images);
    // Assess
    expect(starts).toBe(startsBefore + 1);
    expect(maxAbsoluteDifference(vectors, expected)).toBeLessThan(1e-5);
  });
});

describe('OMPF_INDEX_WORKERS', () => {
  it('defaults to one worker per core up to 4, none on one core', () => {
    expect([1, 2, 3, 8, 64].map((cores) => defaultIndexWorkers(cores))).toEqual([0, 2, 3, 4, 4]);
  });

  it('splits the cores evenly between the workers, at least one thread each', () => {
    expect(threadsPerIndexWorker(2, 2)).toBe(1);
    expect(threadsPerIndexWorker(4, 8)).toBe(2);
    expect(threadsPerIndexWorker(3, 8)).toBe(2);
    expect(threadsPerIndexWorker(4, 2)).toBe(1);
  });

  it('takes a whole number from 0 to 64 and names the variable otherwise', () => {
    expect(loadConfig({ OMPF_INDEX_WORKERS: '0' }).indexWorkers).toBe(0);
    expect(loadConfig({ OMPF_INDEX_WORKERS: '3' }).indexWorkers).toBe(3);
    expect(() => loadConfig({ OMPF_INDEX_WORKERS: '65' })).toThrow(/OMPF_INDEX_WORKERS/);
    expect(() => loadConfig({ OMPF_INDEX_WORKERS: 'two' })).toThrow(/OMPF_INDEX_WORKERS/);
  });
});
