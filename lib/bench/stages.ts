import { fork } from 'node:child_process';
import { DuplicateFinder } from '../core/duplicates';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { scanGallery } from '../adapters/fs/fs-gallery';
import { SharpImagePreprocessor } from '../adapters/image/sharp-preprocessor';
import { BUILTIN_MODELS, readVerifiedModel } from '../adapters/models/model-registry';
import { OnnxEmbedder } from '../adapters/onnx/onnx-embedder';
import { OnnxWorkerPool, PooledOnnxEmbedder } from '../adapters/onnx/onnx-worker-pool';
import { BINARY_OVERSAMPLING, binaryCandidates, PgVectorStore } from '../adapters/store/pg-vector-store';
import { PgliteSqlClient, PostgresSqlClient, type SqlClient } from '../adapters/store/sql-client';
import { IndexingService } from '../core/indexing';
import { loadConfig, threadsPerIndexWorker } from '../runtime/config';
import { IMAGENET_PREPROCESS, type ModelSpec } from '../core/model-spec';
import type { Embedder, ImageRecord, Neighbour, PreparedImage } from '../core/ports';
import { photoVariants } from './augment';
import { int8Replica } from './int8-replica';
import { measureMatMulGflops } from './matmul';
import {
  clusteredVectors,
  percentiles,
  recallAtK,
  round,
  timeRepeated,
  withPeakRss,
  type Percentiles,
} from './measure';

export interface BenchSettings {
  readonly quick: boolean;
  readonly modelsDir: string;
  readonly datasetDir: string;
  /** PostgreSQL + pgvector to measure beside PGlite; skipped (and said so) when absent. */
  readonly databaseUrl: string | undefined;
  readonly log: (line: string) => void;
}

/** ResNet50 at 224 x 224: about 4.1 G multiply-accumulates per image. */
export const RESNET50_GFLOP_PER_IMAGE = 8.2;

/** light_resnet50.onnx: ResNet50 layers with constant weights, for speed only (meaningless outputs). */
export const RESNET50_LAYERS: ModelSpec = {
  id: 'resnet50-layers',
  description: 'ResNet50 architecture with constant weights (benchmark only)',
  file: 'light_resnet50.onnx',
  accepted: [
    {
      sha256: '05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4',
      origin: 'light_resnet50.onnx from the ONNX project test data (../shared/models)',
    },
  ],
  urls: [],
  dimension: 2048,
  preprocess: IMAGENET_PREPROCESS,
};

/**
 * The same layers in int8 (int8-replica.ts): what the Model Zoo's resnet50-int8 runs on, measured here
 * because that file cannot be downloaded in this environment. Speed only.
 */
export const RESNET50_LAYERS_INT8: ModelSpec = {
  ...RESNET50_LAYERS,
  id: 'resnet50-layers-int8',
  description: 'ResNet50 architecture, int8 QDQ replica with constant weights (benchmark only)',
};

const MOBILENET = BUILTIN_MODELS['mobilenetv2-int8']!;

/** The model file's bytes (checked against the spec's SHA-256); the int8 replica built from its float file. */
function benchModelBytes(spec: ModelSpec, settings: BenchSettings): Uint8Array {
  const bytes = readVerifiedModel(spec, settings.modelsDir);
  return spec === RESNET50_LAYERS_INT8 ? int8Replica(bytes) : bytes;
}

export async function machine(settings: BenchSettings) {
  const minMs = settings.quick ? 1500 : 4000;
  const gflops: Record<string, number> = {};
  for (const threads of [1, 2])
    gflops[`threads${threads}`] = round(await measureMatMulGflops(threads, 1024, minMs), 1);
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    node: process.version,
    onnxruntime: ort.env.versions.common,
    sharp: sharp.versions.sharp,
    matMulGflops: gflops,
  };
}

/** One model-only measurement: one model, batch size and thread count. */
export interface InferenceRow {
  readonly model: string;
  readonly batch: number;
  readonly threads: number;
  readonly imagesPerSecond: number;
  readonly msPerImage: number;
  /** ResNet50 only: GFLOP/s reached over the MatMul ceiling at the same thread count. */
  readonly fractionOfCeiling: number | null;
}

export async function inference(settings: BenchSettings, ceiling: Record<string, number>) {
  const rows: InferenceRow[] = [];
  const minMs = settings.quick ? 2000 : 5000;
  for (const spec of [RESNET50_LAYERS, RESNET50_LAYERS_INT8, MOBILENET]) {
    for (const threads of [1, 2]) {
      const embedder = await OnnxEmbedder.load(spec, benchModelBytes(spec, settings), {
        threads,
        batchSize: 16,
      });
      for (const batch of [1, 8, 16]) {
        const images = blankImages(batch);
        const ms = await timeRepeated(() => embedder.embed(images), minMs);
        const imagesPerSecond = (batch * 1000) / ms;
        rows.push({
          model: spec.id,
          batch,
          threads,
          imagesPerSecond: round(imagesPerSecond, 1),
          msPerImage: round(ms / batch, 1),
          // int8 kernels are not bounded by the float32 rate: no fraction for the int8 models.
          fractionOfCeiling:
            spec === RESNET50_LAYERS
              ? round((imagesPerSecond * RESNET50_GFLOP_PER_IMAGE) / ceiling[`threads${threads}`]!, 3)
              : null,
        });
        settings.log(`  ${spec.id} batch ${batch} threads ${threads}: ${round(ms / batch, 1)} ms/image`);
      }
      await embedder.close();
    }
  }
  return rows;
}

export async function preprocessing(settings: BenchSettings) {
  const smallFiles = (
    await scanGallery(join(settings.datasetDir, 'caltech101-animals-dev'), 1e9)
  ).items.slice(0, 32);
  const small = await Promise.all(smallFiles.map((item) => item.read()));
  const large = await twelveMegapixelJpeg();
  const preprocessor = new SharpImagePreprocessor(IMAGENET_PREPROCESS, { maxBytes: 1e9, maxPixels: 1e9 });
  const minMs = settings.quick ? 2000 : 5000;
  const rows: { input: string; concurrency: number; imagesPerSecond: number; msPerImage: number }[] = [];
  for (const [input, images] of [
    ['small JPEG (Caltech, about 300 x 200)', small],
    ['12 MP JPEG (4000 x 3000)', [large]],
  ] as const) {
    for (const concurrency of [1, 2]) {
      let next = 0;
      const ms = await timeRepeated(
        () =>
          Promise.all(
            Array.from({ length: concurrency }, () => preprocessor.prepare(images[next++ % images.length]!)),
          ),
        minMs,
      );
      rows.push({
        input,
        concurrency,
        imagesPerSecond: round((concurrency * 1000) / ms, 1),
        msPerImage: round(ms / concurrency, 1),
      });
    }
  }
  return rows;
}

/** One interference measurement: model-only inference with or without a decode stream beside it. */
export interface InterferenceRow {
  /** 'none' for the decode stream alone. */
  readonly embedder: string;
  readonly alongside: 'nothing' | 'one decode stream';
  readonly imagesPerSecond: number | null;
  /** To the same embedder with nothing alongside, measured in this stage. */
  readonly ratioToAlone: number | null;
  /**
   * The ratio if decoding only took its own CPU time: 1 - (decode rate here / decode rate alone) / cores
   * (one stream alone keeps one core busy). Below it, the embedder loses more than decoding uses.
   */
  readonly ratioIfCpuShared: number | null;
  readonly decodesPerSecond: number | null;
}

/**
 * How decoding and inference share the cores: ResNet50 layers model-only (batch 8, blank images) alone
 * and while another process decodes real photos back to back (decode-stream.ts, one at a time: at most
 * one core), on the in-process session with every thread and on the worker pool (the indexing
 * default), plus the decode stream alone. A thread pool that waits for its slowest thread falls below
 * the CPU-share line; independent workers only lose the time taken from them. Runs from the built
 * bench (the child is dist/lib/bench/decode-stream.js).
 */
export async function interference(settings: BenchSettings) {
  const gallery = await scanGallery(join(settings.datasetDir, 'caltech101-animals-dev'), 1e9);
  const photos = gallery.items.slice(0, 32).map((item) => join(gallery.root, item.key));
  const modelBytes = benchModelBytes(RESNET50_LAYERS, settings);
  const { workers, threadsPerWorker } = defaultPoolShape();
  const batch = blankImages(8);
  const inProcess = await OnnxEmbedder.load(RESNET50_LAYERS, modelBytes, { threads: 0, batchSize: 8 });
  const pool = await startDefaultPool(RESNET50_LAYERS, modelBytes, 8);
  const ms = settings.quick ? 4_000 : 10_000;
  try {
    await inProcess.embed(batch);
    await pool.embed(batch);
    const decodeAlone = await alongsideDecoding(photos, () => sleep(ms));
    const embedders: [string, Embedder][] = [
      ['in process, 2 threads', inProcess],
      [`${workers} workers x ${threadsPerWorker} thread`, pool],
    ];
    const rows: InterferenceRow[] = [];
    for (const [name, embedder] of embedders) {
      const alone = await embedRate(embedder, batch, ms);
      const beside = await alongsideDecoding(photos, () => embedRate(embedder, batch, ms));
      const decodeShare = beside.decodesPerSecond / decodeAlone.decodesPerSecond;
      rows.push(
        {
          embedder: name,
          alongside: 'nothing',
          imagesPerSecond: round(alone, 1),
          ratioToAlone: 1,
          ratioIfCpuShared: null,
          decodesPerSecond: null,
        },
        {
          embedder: name,
          alongside: 'one decode stream',
          imagesPerSecond: round(beside.result, 1),
          ratioToAlone: round(beside.result / alone, 3),
          ratioIfCpuShared: round(1 - decodeShare / cpus().length, 3),
          decodesPerSecond: round(beside.decodesPerSecond, 1),
        },
      );
      settings.log(
        `  ${name}: ${round(alone, 1)} images/s alone, ${round(beside.result, 1)} beside ${round(beside.decodesPerSecond, 1)} decodes/s`,
      );
    }
    rows.push({
      embedder: 'none',
      alongside: 'one decode stream',
      imagesPerSecond: null,
      ratioToAlone: null,
      ratioIfCpuShared: null,
      decodesPerSecond: round(decodeAlone.decodesPerSecond, 1),
    });
    return rows;
  } finally {
    await pool.close();
    await inProcess.close();
  }
}

/** Workers and threads of the embedding pool as the product's defaults configure it (at least one worker). */
function defaultPoolShape(): { workers: number; threadsPerWorker: number } {
  const { indexWorkers } = loadConfig({});
  return { workers: Math.max(1, indexWorkers), threadsPerWorker: threadsPerIndexWorker(indexWorkers) };
}

function startDefaultPool(
  spec: ModelSpec,
  modelBytes: Uint8Array,
  batchSize: number,
): Promise<OnnxWorkerPool> {
  return OnnxWorkerPool.start(spec, modelBytes, { ...defaultPoolShape(), batchSize });
}

/** Images/s of back-to-back inference calls on one batch for about `ms` (timeRepeated's loop). */
async function embedRate(embedder: Embedder, batch: readonly PreparedImage[], ms: number): Promise<number> {
  return (batch.length * 1000) / (await timeRepeated(() => embedder.embed(batch), ms));
}

/** Runs `work` while a child process decodes `photos` back to back; the child's rate over that time. */
async function alongsideDecoding<T>(
  photos: readonly string[],
  work: () => Promise<T>,
): Promise<{ result: T; decodesPerSecond: number }> {
  const child = fork(join(__dirname, 'decode-stream.js'), [JSON.stringify(photos)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  // A child that dies (a photo that fails to decode, a missing build) fails the stage instead of
  // leaving the bench waiting for a message that never comes.
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`The decode stream exited early (code ${code}).`))),
  );
  exited.catch(() => undefined); // observed below; a normal exit after the report is not an error
  const nextMessage = () => Promise.race([once(child, 'message'), exited]);
  try {
    await nextMessage(); // 'ready': sharp loaded, photos read
    child.send('start');
    const result = await work();
    const report = nextMessage();
    child.send('stop');
    const [{ decoded, seconds }] = (await report) as [{ decoded: number; seconds: number }];
    return { result, decodesPerSecond: decoded / seconds };
  } finally {
    child.kill();
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The indexing pipeline over the labelled set, as `ompf index` runs it: each model with DBA off and at
 * the product default, on the product's embedder (batches on OMPF_INDEX_WORKERS worker threads), and
 * in the full run ResNet50 once more with every batch on the in-process 2-thread session (workers 0).
 * Its reference is the better of the two model-only configurations (one 2-thread session; the worker
 * pool), batch 8, each measured right before and right after the run on the same sessions and
 * averaged: this shared machine drifts by several per cent between stages minutes apart.
 */
export async function pipeline(settings: BenchSettings) {
  const gallery = await scanGallery(join(settings.datasetDir, 'caltech101-animals-dev'), 1e9);
  const items = settings.quick ? gallery.items.slice(0, 320) : gallery.items;
  const referenceBatches = settings.quick ? 8 : 24;
  const defaults = loadConfig({});
  const batchSize = 8;
  const runs = [
    { spec: MOBILENET, dba: 0, workers: defaults.indexWorkers },
    { spec: MOBILENET, dba: defaults.dba, workers: defaults.indexWorkers },
    // The in-process alternative only in the full run: the quick run stays under 5 minutes.
    ...(settings.quick ? [] : [{ spec: RESNET50_LAYERS, dba: 0, workers: 0 }]),
    { spec: RESNET50_LAYERS, dba: 0, workers: defaults.indexWorkers },
    { spec: RESNET50_LAYERS, dba: defaults.dba, workers: defaults.indexWorkers },
    ...(settings.quick ? [] : [{ spec: RESNET50_LAYERS_INT8, dba: 0, workers: defaults.indexWorkers }]),
  ];
  const rows = [];
  for (const { spec, dba, workers } of runs) {
    const modelBytes = benchModelBytes(spec, settings);
    const inProcess = await OnnxEmbedder.load(spec, modelBytes, { threads: 0, batchSize });
    const pool = await startDefaultPool(spec, modelBytes, batchSize);
    const embedder = workers > 0 ? new PooledOnnxEmbedder(inProcess, () => Promise.resolve(pool)) : inProcess;
    const store = await openBenchStore(spec, dba);
    const preprocessor = new SharpImagePreprocessor(spec.preprocess, { maxBytes: 1e9, maxPixels: 1e9 });
    const indexing = new IndexingService(store, embedder, preprocessor, { batchSize });
    const batch = await Promise.all(
      items.slice(0, batchSize).map(async (item) => preprocessor.prepare(await item.read())),
    );
    // Steady state, as the model-only figure: the first full batch sizes onnxruntime's memory arena.
    await inProcess.embed(batch);
    await pool.embed(batch);
    const modelOnly = async () => ({
      inProcess: await modelOnlyRate(inProcess, batch, referenceBatches),
      workers: await modelOnlyRate(pool, batch, referenceBatches),
    });
    const before = await modelOnly();
    const { result, peakRssMiB } = await withPeakRss(() => indexing.indexAll(gallery.root, items));
    const after = await modelOnly();
    await store.close();
    await pool.close();
    await inProcess.close();
    const imagesPerSecond = result.indexed / result.seconds;
    const inProcessMean = (before.inProcess + after.inProcess) / 2;
    const workersMean = (before.workers + after.workers) / 2;
    const reference = Math.max(inProcessMean, workersMean);
    rows.push({
      model: spec.id,
      dba,
      workers,
      images: result.indexed,
      imagesPerSecond: round(imagesPerSecond, 1),
      modelOnlyImagesPerSecond: round(reference, 1),
      modelOnlyInProcessBeforeAfter: [round(before.inProcess, 1), round(after.inProcess, 1)],
      modelOnlyWorkersBeforeAfter: [round(before.workers, 1), round(after.workers, 1)],
      ratioToModelOnly: round(imagesPerSecond / reference, 3),
      peakRssMiB,
    });
    settings.log(
      `  pipeline ${spec.id} dba ${dba} workers ${workers}: ${round(imagesPerSecond, 1)} images/s; model-only in process ${round(before.inProcess, 1)} / ${round(after.inProcess, 1)}, workers ${round(before.workers, 1)} / ${round(after.workers, 1)}`,
    );
  }
  return rows;
}

/** Images/s of `batches` inference calls on one prepared batch (no decoding, no store). */
async function modelOnlyRate(
  embedder: Embedder,
  batch: readonly PreparedImage[],
  batches: number,
): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < batches; i++) await embedder.embed(batch);
  return (batches * batch.length) / ((performance.now() - started) / 1000);
}

interface EngineTarget {
  readonly engine: 'pglite' | 'postgresql';
  connect(): Promise<SqlClient>;
}

function engines(settings: BenchSettings): EngineTarget[] {
  const targets: EngineTarget[] = [{ engine: 'pglite', connect: () => PgliteSqlClient.open(undefined) }];
  const url = settings.databaseUrl;
  if (url) {
    targets.push({
      engine: 'postgresql',
      connect: async () => {
        const admin = PostgresSqlClient.connect(url);
        await admin.exec('DROP SCHEMA IF EXISTS ompf_bench CASCADE; CREATE SCHEMA ompf_bench');
        await admin.close();
        const scoped = new URL(url);
        scoped.searchParams.set('options', '-c search_path=ompf_bench,public');
        return PostgresSqlClient.connect(scoped.toString());
      },
    });
  }
  return targets;
}

/**
 * Query latency and recall at scale on synthetic 2048-d unit vectors (ResNet50's size), shaped like
 * CNN embeddings (clusteredVectors: 50 per cluster, queries drawn from the same clusters): bulk
 * insert, size, exact top-10; PGlite's binary candidates and PostgreSQL's HNSW at several ef_search,
 * each with recall@10 against the exact answers. Embedding excluded. On PostgreSQL the latency is the
 * loopback round trip, an upper bound of database time.
 */
export async function storeAtScale(settings: BenchSettings) {
  const sizes = settings.quick ? [10_000] : [10_000, 100_000];
  const rows = [];
  // Embedding included: real photos through the ResNet50 layers (2048-d, as the stored vectors) and the
  // store's product strategy at that size, as the local server's search runs them.
  const photoQueries = await openPhotoQueries(settings, RESNET50_LAYERS);
  const withEmbedding = async (store: PgVectorStore) =>
    (await photoQueries.run(store, settings.quick ? 20 : 40)).endToEndMs;
  for (const target of engines(settings)) {
    for (const size of sizes) {
      const draw = clusteredVectors(2048, size / 50, 4242);
      // PGlite answers an exact top-10 over 100k x 2048 in seconds: fewer queries there.
      const queries = draw(target.engine === 'pglite' && size > 10_000 ? 10 : settings.quick ? 30 : 100, 99);
      const client = await target.connect();
      const store = await PgVectorStore.recreate(client, {
        modelId: 'bench',
        dimension: 2048,
        hnswMinRows: 1,
        indexBuildMemory: '1GB',
      });
      const { result: insertSeconds, peakRssMiB } = await withPeakRss(() => bulkInsert(store, size, draw));
      const exact = await latency(store, queries, undefined);
      const [sizeRow] = await client.query<{ bytes: string }>(
        "SELECT pg_total_relation_size('images')::text AS bytes",
      );
      const row: Record<string, unknown> = {
        engine: target.engine,
        vectors: size,
        insertSeconds: round(insertSeconds, 1),
        insertRowsPerSecond: round(size / insertSeconds, 0),
        tableMiBPer10k: round((Number(sizeRow?.bytes ?? 0) / 1024 / 1024) * (10_000 / size), 1),
        exactMs: exact.ms,
        peakRssMiB,
      };
      if (target.engine === 'pglite') {
        const started = performance.now();
        await store.optimise(); // centre + sign bits for binary candidates
        row.binaryPrepareSeconds = round((performance.now() - started) / 1000, 1);
        const binary = await latency(store, queries, undefined);
        row.binaryMs = binary.ms;
        row.binaryRecallAt10 = recallAtK(binary.results, exact.results);
        row.withEmbeddingMs = await withEmbedding(store);
      }
      if (target.engine === 'postgresql') {
        const started = performance.now();
        await store.optimise();
        row.hnswBuildSeconds = round((performance.now() - started) / 1000, 1);
        const [withIndex] = await client.query<{ bytes: string }>(
          "SELECT pg_total_relation_size('images')::text AS bytes",
        );
        row.indexedMiBPer10k = round((Number(withIndex?.bytes ?? 0) / 1024 / 1024) * (10_000 / size), 1);
        const hnsw: Record<string, Percentiles> = {};
        const hnswRecall: Record<string, number> = {};
        for (const ef of [40, 100, 200]) {
          const measured = await latency(store, queries, ef);
          hnsw[`ef${ef}`] = measured.ms;
          hnswRecall[`ef${ef}`] = recallAtK(measured.results, exact.results);
        }
        row.hnswMs = hnsw;
        row.hnswRecallAt10 = hnswRecall;
        // ef_search as the product sets it per query (defaultEfSearch: 40 for a top-10).
        row.withEmbeddingMs = await withEmbedding(store);
      }
      settings.log(`  ${target.engine} ${size}: exact p50 ${exact.ms.p50} ms`);
      rows.push(row);
      await store.close();
    }
  }
  await photoQueries.close();
  return rows;
}

/**
 * Listing duplicate groups at scale (GET /duplicates, `ompf duplicates`): the product's own SQL and
 * union-find over stores of 10k (and 100k on PostgreSQL) 1280-d vectors whose DBA neighbour lists are
 * set directly (3 neighbours each, distances uniform in 0..0.3, so about a quarter of the edges fall
 * within the default threshold): computing real lists at 100k would take this stage hours, and the
 * listing reads them the same way whatever their values. Then the cost of one image written with DBA on
 * (what keeps those lists, and so the groups, up to date), with the search strategy the product uses at
 * that size. Duplicate detection adds nothing to a write beyond that.
 */
export async function duplicateListing(settings: BenchSettings) {
  const rows = [];
  for (const target of engines(settings)) {
    const sizes = target.engine === 'postgresql' && !settings.quick ? [10_000, 100_000] : [10_000];
    for (const size of sizes) {
      const client = await target.connect();
      const options = {
        modelId: 'bench',
        dimension: 1280,
        hnswMinRows: 1_000_000_000,
        indexBuildMemory: '1GB',
      };
      const plain = await PgVectorStore.recreate(client, options);
      await bulkInsert(plain, size, clusteredVectors(1280, size / 50, 77));
      await client.query('SELECT setseed(0.42)');
      await client.exec(
        `WITH b AS (SELECT min(id) AS m, count(*) AS n FROM images)
         UPDATE images SET
           raw_embedding = embedding,
           dba_neighbours = ARRAY[b.m + (images.id - b.m + 1) % b.n, b.m + (images.id - b.m + 2) % b.n, b.m + (images.id - b.m + 3) % b.n],
           dba_distances = ARRAY[random() * 0.3, random() * 0.3, random() * 0.3]
         FROM b`,
      );
      const store = await PgVectorStore.open(client, { ...options, dba: 3 });
      const finder = new DuplicateFinder(store);
      const times: number[] = [];
      let total = 0;
      for (let run = 0; run < (settings.quick ? 3 : 7); run++) {
        const started = performance.now();
        total = (await finder.groups({ limit: 50 })).total;
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      // A write as the product makes it at this size (PostgreSQL: HNSW from 10k rows; PGlite: binary
      // candidates), with DBA maintained: the neighbour lists the groups are read from.
      const writer = await PgVectorStore.open(client, {
        ...options,
        hnswMinRows: 10_000, // OMPF_HNSW_MIN_ROWS' default
        dba: 3,
      });
      const strategy = await writer.optimise();
      const fresh = clusteredVectors(1280, size / 50, 77)(settings.quick ? 10 : 30, 991);
      const writes: number[] = [];
      for (const [i, embedding] of fresh.entries()) {
        const started = performance.now();
        await writer.upsertMany([
          {
            source: 'bench',
            key: `new${i}`,
            contentHash: `new-${i}`,
            width: 0,
            height: 0,
            bytes: 0,
            embedding,
          },
        ]);
        writes.push(performance.now() - started);
      }
      writes.sort((a, b) => a - b);
      const row = {
        engine: target.engine,
        images: size,
        groups: total,
        listMsP50: round(times[Math.floor(times.length / 2)]!, 1),
        listMsMax: round(times[times.length - 1]!, 1),
        strategy,
        writeMsP50: round(writes[Math.floor(writes.length / 2)]!, 1),
        writeMsMax: round(writes[writes.length - 1]!, 1),
      };
      settings.log(
        `  duplicates ${target.engine} ${size}: list ${row.listMsP50} ms p50, ${total} groups; write ${row.writeMsP50} ms p50 (${strategy})`,
      );
      rows.push(row);
      await writer.close();
    }
  }
  return rows;
}

/**
 * Recall@10 against exact search on real embeddings (mobilenetv2-int8) of the labelled set, each query
 * a photo with its own image excluded: PGlite's binary candidates at several oversampling factors (with
 * their p50), and HNSW on PostgreSQL at several ef_search. The full run adds seven edited copies of
 * every photo (augment.ts: 10,784 images), so each query's neighbours include near-duplicates.
 */
export async function recall(settings: BenchSettings) {
  const gallery = await scanGallery(join(settings.datasetDir, 'caltech101-animals-dev'), 1e9);
  const records = await realEmbeddings(settings, gallery.items, !settings.quick);
  // Every fifth photo (not its edited copies) queries, excluding itself.
  const photoKeys = new Set(gallery.items.map((item) => item.key));
  const queries = records.filter((r) => photoKeys.has(r.key)).filter((_, i) => i % 5 === 0);
  const searchAll = async (store: PgVectorStore, efSearch?: number) => {
    const results: Neighbour[][] = [];
    const ms: number[] = [];
    for (const q of queries) {
      const started = performance.now();
      results.push(
        await store.nearest({
          vector: q.embedding,
          limit: 10,
          metric: 'cosine',
          exclude: { source: q.source, key: q.key },
          efSearch,
        }),
      );
      ms.push(performance.now() - started);
    }
    return { results, p50Ms: percentiles(ms).p50 };
  };
  const lite = await PgliteSqlClient.open(undefined);
  const liteOptions = {
    modelId: 'recall',
    dimension: MOBILENET.dimension,
    hnswMinRows: 1e9,
    indexBuildMemory: '256MB',
    binaryMinRows: 1,
  };
  const liteStore = await PgVectorStore.open(lite, liteOptions);
  for (let i = 0; i < records.length; i += 500) await liteStore.upsertMany(records.slice(i, i + 500));
  const liteExact = (await searchAll(liteStore)).results;
  await liteStore.optimise();
  const pgliteBinary: Record<string, { candidates: number; recallAt10: number; p50Ms: number }> = {};
  for (const oversampling of [BINARY_OVERSAMPLING, 10, 20]) {
    // Another view of the same database: only the search options differ.
    const view = await PgVectorStore.open(lite, { ...liteOptions, binaryOversampling: oversampling });
    const { results, p50Ms } = await searchAll(view);
    pgliteBinary[`x${oversampling}${oversampling === BINARY_OVERSAMPLING ? ' (default)' : ''}`] = {
      candidates: binaryCandidates(10, oversampling),
      recallAt10: recallAtK(results, liteExact),
      p50Ms,
    };
  }
  await liteStore.close();
  const summary = { images: records.length, queries: queries.length, pgliteBinary };

  const url = settings.databaseUrl;
  if (!url) return { ...summary, hnsw: 'no PostgreSQL configured' };
  const target = engines(settings).find((t) => t.engine === 'postgresql')!;
  const store = await PgVectorStore.recreate(await target.connect(), {
    modelId: 'recall',
    dimension: MOBILENET.dimension,
    hnswMinRows: 1,
    indexBuildMemory: '512MB',
  });
  for (let i = 0; i < records.length; i += 500) await store.upsertMany(records.slice(i, i + 500));
  const exact = (await searchAll(store)).results;
  await store.optimise();
  const hnswRecallAt10: Record<string, number> = {};
  for (const ef of [10, 20, 40, 100]) {
    hnswRecallAt10[`ef${ef}`] = recallAtK((await searchAll(store, ef)).results, exact);
  }
  await store.close();
  return { ...summary, hnswRecallAt10 };
}

/** mobilenetv2-int8 embeddings of the photos and, with `variants`, of seven edits of each (key#1..7). */
async function realEmbeddings(
  settings: BenchSettings,
  items: readonly { key: string; read(): Promise<Uint8Array> }[],
  variants: boolean,
): Promise<ImageRecord[]> {
  const embedder = await OnnxEmbedder.load(MOBILENET, readVerifiedModel(MOBILENET, settings.modelsDir), {
    threads: 0,
    batchSize: 16,
  });
  const preprocessor = new SharpImagePreprocessor(MOBILENET.preprocess, { maxBytes: 1e9, maxPixels: 1e9 });
  const records: ImageRecord[] = [];
  const perBatch = variants ? 2 : 16;
  for (let i = 0; i < items.length; i += perBatch) {
    const images: { key: string; bytes: Uint8Array }[] = [];
    for (const item of items.slice(i, i + perBatch)) {
      const bytes = await item.read();
      images.push({ key: item.key, bytes });
      if (variants) {
        (await photoVariants(bytes)).forEach((edited, j) =>
          images.push({ key: `${item.key}#${j + 1}`, bytes: edited }),
        );
      }
    }
    const prepared = await Promise.all(images.map((image) => preprocessor.prepare(image.bytes)));
    const vectors = await embedder.embed(prepared);
    images.forEach((image, j) =>
      records.push({
        source: 'bench',
        key: image.key,
        contentHash: `bench-${image.key}`,
        width: 0,
        height: 0,
        bytes: 0,
        embedding: vectors[j]!,
      }),
    );
  }
  await embedder.close();
  return records;
}

/** End-to-end local query: decode + embed a real photo + top-10 in PGlite over 10k vectors. */
export async function localQuery(settings: BenchSettings) {
  const rows = [];
  for (const spec of [MOBILENET, RESNET50_LAYERS, RESNET50_LAYERS_INT8]) {
    const photoQueries = await openPhotoQueries(settings, spec);
    const store = await openBenchStore(spec, 0);
    await bulkInsert(store, 10_000, clusteredVectors(spec.dimension, 200, 4242));
    // What `ompf index` and the local server do after a bulk load: pick the strategy for the size.
    const strategy = await store.optimise();
    const measured = await photoQueries.run(store, settings.quick ? 20 : 60);
    rows.push({ model: spec.id, dimension: spec.dimension, vectors: 10_000, strategy, ...measured });
    settings.log(`  local query ${spec.id}: p50 ${measured.endToEndMs.p50} ms`);
    await store.close();
    await photoQueries.close();
  }
  return rows;
}

/**
 * A query as the local server runs it: decode one real photo, embed it on the in-process session (single
 * images never go to the worker pool), top-10 from the store with its own strategy and settings.
 */
async function openPhotoQueries(settings: BenchSettings, spec: ModelSpec) {
  const photos = (await scanGallery(join(settings.datasetDir, 'caltech101-animals-dev'), 1e9)).items.slice(
    0,
    20,
  );
  const embedder = await OnnxEmbedder.load(spec, benchModelBytes(spec, settings), {
    threads: 0,
    batchSize: 1,
  });
  const preprocessor = new SharpImagePreprocessor(spec.preprocess, { maxBytes: 1e9, maxPixels: 1e9 });
  return {
    async run(store: PgVectorStore, queries: number) {
      const embedMs: number[] = [];
      const searchMs: number[] = [];
      const totalMs: number[] = [];
      for (let i = 0; i < queries; i++) {
        const bytes = await photos[i % photos.length]!.read();
        const started = performance.now();
        const [vector] = await embedder.embed([await preprocessor.prepare(bytes)]);
        const embedded = performance.now();
        await store.nearest({ vector: vector!, limit: 10, metric: 'cosine' });
        const finished = performance.now();
        embedMs.push(embedded - started);
        searchMs.push(finished - embedded);
        totalMs.push(finished - started);
      }
      return {
        decodeAndEmbedMs: percentiles(embedMs),
        searchMs: percentiles(searchMs),
        endToEndMs: percentiles(totalMs),
      };
    },
    close: () => embedder.close(),
  };
}

/** An in-memory PGlite store that never builds HNSW (PGlite's strategies are exact and binary). */
async function openBenchStore(spec: ModelSpec, dba: number): Promise<PgVectorStore> {
  return PgVectorStore.open(await PgliteSqlClient.open(undefined), {
    modelId: spec.id,
    dimension: spec.dimension,
    hnswMinRows: 1e9,
    indexBuildMemory: '256MB',
    dba,
  });
}

async function bulkInsert(
  store: PgVectorStore,
  count: number,
  draw: (count: number, seed: number) => Float32Array[],
): Promise<number> {
  let seconds = 0;
  const chunk = 500;
  for (let start = 0; start < count; start += chunk) {
    const vectors = draw(Math.min(chunk, count - start), start + 7);
    const started = performance.now(); // drawing the vectors is not part of the insert
    await store.upsertMany(
      vectors.map((embedding, i) => ({
        source: 'bench',
        key: `k${String(start + i).padStart(7, '0')}`,
        contentHash: `bench-${start + i}`,
        width: 0,
        height: 0,
        bytes: 0,
        embedding,
      })),
    );
    seconds += (performance.now() - started) / 1000;
  }
  return seconds;
}

async function latency(
  store: PgVectorStore,
  queries: readonly Float32Array[],
  efSearch: number | undefined,
): Promise<{ ms: Percentiles; results: Neighbour[][] }> {
  await store.nearest({ vector: queries[0]!, limit: 10, metric: 'cosine', efSearch });
  const samples: number[] = [];
  const results: Neighbour[][] = [];
  for (const vector of queries) {
    const started = performance.now();
    results.push(await store.nearest({ vector, limit: 10, metric: 'cosine', efSearch }));
    samples.push(performance.now() - started);
  }
  return { ms: percentiles(samples), results };
}

function blankImages(count: number): PreparedImage[] {
  return Array.from({ length: count }, (_, i) => ({
    tensor: Float32Array.from({ length: 3 * 224 * 224 }, (_, j) => ((i + j) % 255) / 255 - 0.5),
    width: 224,
    height: 224,
  }));
}

async function twelveMegapixelJpeg(): Promise<Buffer> {
  // Noise compresses (and decodes) like a detailed photo; a flat colour would flatter the decoder.
  const width = 4000;
  const height = 3000;
  const noise = Buffer.alloc(width * height * 3);
  let state = 12345;
  for (let i = 0; i < noise.length; i++) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    noise[i] = (state >> 16) & 0xff;
  }
  return sharp(noise, { raw: { width, height, channels: 3 } })
    .blur(2)
    .jpeg({ quality: 90 })
    .toBuffer();
}
