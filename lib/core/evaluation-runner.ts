import {
  configureVectors,
  leaveOneOut,
  percentile,
  type EvalConfig,
  type RetrievalMetrics,
} from './evaluation';
import type { GalleryItem } from './indexing';
import { project, type PcaProjection } from './pca';
import type { Embedder, ImagePreprocessor, PreparedImage, VectorStore } from './ports';
import { expandQuery, mirror, TransformingEmbedder } from './retrieval';

export interface LabelledItem {
  readonly item: GalleryItem;
  readonly label: string;
}

export interface EvaluationDependencies {
  readonly preprocessor: ImagePreprocessor;
  /** The plain model embedder (no transform). */
  readonly embedder: Embedder;
  readonly cropSize: number;
  /** A fresh, empty, throw-away store for `dimension`-d vectors. */
  openStore(modelId: string, dimension: number): Promise<VectorStore>;
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
  const kept: LabelledItem[] = [];
  const failed: { key: string; reason: string }[] = [];
  const plain: Float32Array[] = [];
  const mirrored: Float32Array[] = [];
  for (let start = 0; start < labelled.length; start += deps.batchSize) {
    const batch = labelled.slice(start, start + deps.batchSize);
    const prepared: PreparedImage[] = [];
    for (const entry of batch) {
      try {
        prepared.push(await deps.preprocessor.prepare(await entry.item.read()));
        kept.push(entry);
      } catch (error) {
        failed.push({ key: entry.item.key, reason: error instanceof Error ? error.message : String(error) });
      }
    }
    const views = needsMirror ? [...prepared, ...prepared.map((p) => mirror(p, deps.cropSize))] : prepared;
    const vectors = await deps.embedder.embed(views);
    plain.push(...vectors.slice(0, prepared.length));
    if (needsMirror) mirrored.push(...vectors.slice(prepared.length));
    onProgress?.(Math.min(start + batch.length, labelled.length), labelled.length);
  }
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
  const store = await deps.openStore(`eval-${config.name}`, dimension);
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
      timings.push(performance.now() - began);
    }
    return { queryMsP50: round(percentile(timings, 0.5)), queryMsP95: round(percentile(timings, 0.95)) };
  } finally {
    await store.close();
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
