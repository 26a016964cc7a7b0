import {
  configureVectors,
  leaveOneOut,
  percentile,
  scoreRankings,
  type EvalConfig,
  type RetrievalMetrics,
} from './evaluation';
import type { GalleryItem } from './indexing';
import { project, type PcaProjection } from './pca';
import type { Embedder, ImagePreprocessor, PreparedImage, VectorStore } from './ports';
import { databaseAugment, expandQuery, mirror, TransformingEmbedder } from './retrieval';
import { rerankNeighbours } from './search';
import { dot } from './vectors';

export interface LabelledItem {
  readonly item: GalleryItem;
  readonly label: string;
}

export interface EvaluationDependencies {
  readonly preprocessor: ImagePreprocessor;
  /** The plain model embedder (no transform). */
  readonly embedder: Embedder;
  readonly cropSize: number;
  /**
   * A fresh, empty, throw-away store for `dimension`-d vectors, maintaining database-side
   * augmentation with `dba` neighbours (0 = off) as the product store does.
   */
  openStore(modelId: string, dimension: number, dba: number): Promise<VectorStore>;
  readonly batchSize: number;
}

export interface EvaluationRow extends RetrievalMetrics {
  readonly config: string;
  readonly description: string;
  /** End-to-end query latency (decode, embed, store search, expansion), median and p95, ms. */
  readonly queryMsP50: number;
  readonly queryMsP95: number;
  /** Time this configuration's evaluation took. */
  readonly seconds: number;
}

export interface EvaluationReport {
  readonly model: string;
  readonly rows: readonly EvaluationRow[];
  readonly failed: readonly { key: string; reason: string }[];
  readonly embedSeconds: number;
}

const LATENCY_SAMPLES = 40;
const SOURCE = 'eval';

/**
 * Embed a labelled gallery once (and its mirror images when a configuration needs them), then for
 * each configuration: leave-one-out quality, and end-to-end query latency measured for real
 * against a store holding that configuration's vectors.
 */
export async function runEvaluation(
  deps: EvaluationDependencies,
  labelled: readonly LabelledItem[],
  configs: readonly EvalConfig[],
  onProgress?: (done: number, total: number) => void,
): Promise<EvaluationReport> {
  const started = Date.now();
  const needsMirror = configs.some((c) => c.transform.flip);
  const { kept, failed, plain, mirrored } = await embedLabelled(deps, labelled, needsMirror, onProgress);
  const embedSeconds = (Date.now() - started) / 1000;
  const labels = kept.map((k) => k.label);

  const rows: EvaluationRow[] = [];
  for (const config of configs) {
    const began = Date.now();
    const { vectors, pca } = configureVectors(config, plain, needsMirror ? mirrored : undefined);
    const metrics = leaveOneOut(vectors, labels, config);
    const latency = await measureLatency(deps, config, kept, vectors, pca);
    rows.push({
      config: config.name,
      description: config.description,
      ...metrics,
      ...latency,
      seconds: (Date.now() - began) / 1000,
    });
  }
  return { model: deps.embedder.modelId, rows, failed, embedSeconds };
}

async function measureLatency(
  deps: EvaluationDependencies,
  config: EvalConfig,
  items: readonly LabelledItem[],
  vectors: readonly Float32Array[],
  pca: PcaProjection | undefined,
): Promise<{ queryMsP50: number; queryMsP95: number }> {
  const dimension = vectors[0]?.length ?? deps.embedder.dimension;
  // Latency only: a query costs the same whether the stored vectors are augmented or not (same
  // search, same number of rows), so this store skips DBA maintenance; runStoreCheck covers the
  // product path with it.
  const store = await deps.openStore(`eval-${config.name}`, dimension, 0);
  try {
    await store.upsertMany(
      items.map((entry, i) => ({
        source: SOURCE,
        key: entry.item.key,
        contentHash: String(i),
        width: 0,
        height: 0,
        bytes: 0,
        embedding: vectors[i]!,
      })),
    );
    await store.optimise();
    const embedder = new TransformingEmbedder(deps.embedder, config.transform, deps.cropSize);
    const step = Math.max(1, Math.floor(items.length / LATENCY_SAMPLES));
    const timings: number[] = [];
    for (let i = 0; i < items.length && timings.length < LATENCY_SAMPLES; i += step) {
      const bytes = await items[i]!.item.read();
      const began = performance.now();
      const [embedded] = await embedder.embed([await deps.preprocessor.prepare(bytes)]);
      let query = pca ? project(pca, embedded!) : embedded!;
      let hits = await store.nearest({ vector: query, limit: 10, metric: config.metric });
      if (config.queryExpansion > 0) {
        const neighbours = await Promise.all(
          hits.slice(0, config.queryExpansion).map((h) => store.getSearchedEmbedding(h.source, h.key)),
        );
        query = expandQuery(
          query,
          neighbours.filter((v): v is Float32Array => v !== undefined),
        );
        hits = await store.nearest({ vector: query, limit: 10, metric: config.metric });
      }
      if (config.rerank.candidates > 0) {
        const candidates = await store.nearest({
          vector: query,
          limit: config.rerank.candidates,
          metric: config.metric,
        });
        hits = (await rerankNeighbours(store, query, candidates)).slice(0, 10);
      }
      timings.push(performance.now() - began);
    }
    return { queryMsP50: round(percentile(timings, 0.5)), queryMsP95: round(percentile(timings, 0.95)) };
  } finally {
    await store.close();
  }
}

export interface StoreCheckRow extends Omit<RetrievalMetrics, 'classes'> {
  /** Gallery rows indexed per second through the store (batches of `batchSize`, as the indexer writes). */
  readonly indexRowsPerSecond: number;
}

export interface StoreCheckReport {
  readonly model: string;
  readonly dba: number;
  readonly gallery: number;
  readonly queries: number;
  /** Held-out queries against a store with DBA off. */
  readonly plain: StoreCheckRow;
  /** The same queries against a store that maintained DBA as the gallery arrived (the product path). */
  readonly augmented: StoreCheckRow;
  /** The evaluation's formula computed in memory on the same split: what `augmented` must match. */
  readonly formula: Omit<RetrievalMetrics, 'classes'>;
  /** Largest difference between a stored augmented vector and the formula's. */
  readonly maxVectorDifference: number;
  /**
   * Fraction of stored augmented vectors within VECTOR_TOLERANCE (halfvec rounding) of the formula's:
   * 1 on an exact store; below 1 once the store searches approximately (binary candidates, HNSW) and
   * maintains some neighbour lists from candidates that missed a true neighbour.
   */
  readonly vectorsMatchingFormula: number;
}

/** Halfvec rounding of a unit vector's components stays well inside this. */
const VECTOR_TOLERANCE = 2e-3;

/**
 * The product path, checked end to end: every `holdOutEvery`-th image is held out as a query; the
 * others are indexed through real stores, batch by batch as `ompf index` writes them, once with DBA
 * off and once with the store maintaining DBA with `dba` neighbours; each held-out image then queries
 * with its plain embedding (as an upload would) and is scored over its ranking of the whole gallery.
 * Held-out queries, unlike leave-one-out, need no per-query fix-up: no stored vector can contain a
 * query. The formula row is the evaluation's DBA on the same split, so store and eval must agree.
 */
export async function runStoreCheck(
  deps: EvaluationDependencies,
  labelled: readonly LabelledItem[],
  options: { readonly dba: number; readonly holdOutEvery?: number },
  onProgress?: (done: number, total: number) => void,
): Promise<StoreCheckReport> {
  const holdOutEvery = options.holdOutEvery ?? 5;
  // Undecodable images are left out here as in runEvaluation (which reports them).
  const { kept, plain: vectors } = await embedLabelled(deps, labelled, false, onProgress);
  const isQuery = (i: number) => i % holdOutEvery === 0;
  const galleryIndex = kept.map((_, i) => i).filter((i) => !isQuery(i));
  const queryIndex = kept.map((_, i) => i).filter(isQuery);
  const label = (i: number) => kept[i]!.label;
  const keyOf = new Map(galleryIndex.map((i) => [kept[i]!.item.key, i]));
  const relevant = queryIndex.map((q) => galleryIndex.filter((i) => label(i) === label(q)).length);

  const throughStore = async (dba: number): Promise<{ row: StoreCheckRow; store: VectorStore }> => {
    const store = await deps.openStore(`check-dba${dba}`, vectors[0]!.length, dba);
    const began = performance.now();
    for (let start = 0; start < galleryIndex.length; start += deps.batchSize) {
      await store.upsertMany(
        galleryIndex.slice(start, start + deps.batchSize).map((i) => ({
          source: SOURCE,
          key: kept[i]!.item.key,
          contentHash: String(i),
          width: 0,
          height: 0,
          bytes: 0,
          embedding: vectors[i]!,
        })),
      );
    }
    const indexRowsPerSecond = Math.round(galleryIndex.length / ((performance.now() - began) / 1000));
    const rankings: boolean[][] = [];
    for (const q of queryIndex) {
      const hits = await store.nearest({ vector: vectors[q]!, limit: galleryIndex.length, metric: 'cosine' });
      rankings.push(hits.map((hit) => label(keyOf.get(hit.key)!) === label(q)));
    }
    return { row: { ...scoreRankings(rankings, relevant), indexRowsPerSecond }, store };
  };

  const plain = await throughStore(0);
  await plain.store.close();
  const augmented = await throughStore(options.dba);
  // The formula, in memory, on the same gallery.
  const expected = galleryIndex.map((i) => {
    const neighbours = galleryIndex
      .filter((j) => j !== i)
      .map((j) => ({ j, similarity: dot(vectors[i]!, vectors[j]!) }))
      .sort((a, b) => b.similarity - a.similarity || a.j - b.j)
      .slice(0, options.dba)
      .map((e) => vectors[e.j]!);
    return databaseAugment(vectors[i]!, neighbours);
  });
  let maxVectorDifference = 0;
  let matching = 0;
  try {
    for (const [n, i] of galleryIndex.entries()) {
      const stored = await augmented.store.getSearchedEmbedding(SOURCE, kept[i]!.item.key);
      let difference = stored ? 0 : Infinity;
      stored?.forEach((value, d) => {
        difference = Math.max(difference, Math.abs(value - expected[n]![d]!));
      });
      maxVectorDifference = Math.max(maxVectorDifference, difference);
      if (difference < VECTOR_TOLERANCE) matching++;
    }
  } finally {
    await augmented.store.close();
  }
  const formula = scoreRankings(
    queryIndex.map((q) =>
      galleryIndex
        .map((i, n) => ({ i, score: dot(vectors[q]!, expected[n]!) }))
        .sort((a, b) => b.score - a.score || a.i - b.i)
        .map((e) => label(e.i) === label(q)),
    ),
    relevant,
  );
  return {
    model: deps.embedder.modelId,
    dba: options.dba,
    gallery: galleryIndex.length,
    queries: queryIndex.length,
    plain: plain.row,
    augmented: augmented.row,
    formula,
    maxVectorDifference,
    vectorsMatchingFormula: matching / galleryIndex.length,
  };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

/**
 * One embedding pass over a labelled set, in batches: the images that decode (`kept`, in order), the
 * ones that do not with their reason, their vectors and, when asked, the vectors of their mirrors.
 */
async function embedLabelled(
  deps: EvaluationDependencies,
  labelled: readonly LabelledItem[],
  withMirror: boolean,
  onProgress?: (done: number, total: number) => void,
): Promise<{
  kept: LabelledItem[];
  failed: { key: string; reason: string }[];
  plain: Float32Array[];
  mirrored: Float32Array[];
}> {
  const kept: LabelledItem[] = [];
  const failed: { key: string; reason: string }[] = [];
  const plain: Float32Array[] = [];
  const mirrored: Float32Array[] = [];
  // Each batch decodes its images concurrently (libuv pool), and the next batch decodes while this one
  // is embedded, as in the indexing pipeline.
  const decode = (batch: readonly LabelledItem[]) =>
    Promise.allSettled(batch.map(async (entry) => deps.preprocessor.prepare(await entry.item.read())));
  let next = decode(labelled.slice(0, deps.batchSize));
  for (let start = 0; start < labelled.length; start += deps.batchSize) {
    const batch = labelled.slice(start, start + deps.batchSize);
    const decoded = await next;
    next = decode(labelled.slice(start + deps.batchSize, start + 2 * deps.batchSize));
    const prepared: PreparedImage[] = [];
    decoded.forEach((result, i) => {
      const entry = batch[i]!;
      if (result.status === 'fulfilled') {
        prepared.push(result.value);
        kept.push(entry);
      } else {
        const error: unknown = result.reason;
        failed.push({ key: entry.item.key, reason: error instanceof Error ? error.message : String(error) });
      }
    });
    const views = withMirror ? [...prepared, ...prepared.map((p) => mirror(p, deps.cropSize))] : prepared;
    const vectors = await deps.embedder.embed(views);
    plain.push(...vectors.slice(0, prepared.length));
    if (withMirror) mirrored.push(...vectors.slice(prepared.length));
    onProgress?.(Math.min(start + batch.length, labelled.length), labelled.length);
  }
  return { kept, failed, plain, mirrored };
}
