import type { DistanceMetric, VectorStore } from './ports';

export interface LabelledKey {
  readonly key: string;
  readonly label: string;
}

export interface RetrievalMetrics {
  /** Fraction of queries with at least one same-class image among the first k results. */
  readonly top1: number;
  readonly top5: number;
  readonly top10: number;
  /** Mean fraction of the first 10 results that share the query's class. */
  readonly precisionAt10: number;
  /** Mean average precision over the full ranking of all other images. */
  readonly mAP: number;
  readonly images: number;
  readonly classes: number;
  /** Median and 95th percentile of one full-ranking store query, in milliseconds. */
  readonly queryMsP50: number;
  readonly queryMsP95: number;
}

/**
 * Leave-one-out retrieval over an indexed, labelled gallery: each image in turn queries the store
 * (by its stored vector, itself excluded) and the ranking of all other images is scored.
 * Top-k is the origin project's metric: a hit when any of the k nearest shares the query's class.
 */
export async function evaluateLeaveOneOut(
  store: VectorStore,
  source: string,
  labelled: readonly LabelledKey[],
  metric: DistanceMetric = 'cosine',
): Promise<RetrievalMetrics> {
  const labelOf = new Map(labelled.map((item) => [item.key, item.label]));
  const classSizes = new Map<string, number>();
  for (const { label } of labelled) classSizes.set(label, (classSizes.get(label) ?? 0) + 1);

  const ranks: (readonly boolean[])[] = [];
  const relevantCounts: number[] = [];
  const latencies: number[] = [];
  for (const query of labelled) {
    const vector = await store.getEmbedding(source, query.key);
    if (!vector) throw new Error(`Evaluation image '${query.key}' is not in the store.`);
    const started = performance.now();
    const neighbours = await store.nearest({
      vector,
      limit: labelled.length - 1,
      metric,
      exclude: { source, key: query.key },
    });
    latencies.push(performance.now() - started);
    ranks.push(neighbours.map((n) => labelOf.get(n.key) === query.label));
    relevantCounts.push((classSizes.get(query.label) ?? 1) - 1);
  }
  return { ...scoreRankings(ranks, relevantCounts), classes: classSizes.size, ...percentiles(latencies) };
}

/** Pure scoring of relevance lists (true = same class), one per query, in rank order. */
export function scoreRankings(
  rankings: readonly (readonly boolean[])[],
  relevantCounts: readonly number[],
): Pick<RetrievalMetrics, 'top1' | 'top5' | 'top10' | 'precisionAt10' | 'mAP' | 'images'> {
  const n = rankings.length;
  if (n === 0) return { top1: 0, top5: 0, top10: 0, precisionAt10: 0, mAP: 0, images: 0 };
  const hitAt = (k: number) => rankings.filter((r) => r.slice(0, k).some(Boolean)).length / n;
  const precisionAt10 = rankings.reduce((sum, r) => sum + r.slice(0, 10).filter(Boolean).length / 10, 0) / n;
  const mAP =
    rankings.reduce((sum, ranking, q) => {
      const relevant = relevantCounts[q] ?? 0;
      if (relevant === 0) return sum;
      let hits = 0;
      let precisionSum = 0;
      ranking.forEach((isRelevant, i) => {
        if (isRelevant) precisionSum += ++hits / (i + 1);
      });
      return sum + precisionSum / relevant;
    }, 0) / n;
  return { top1: hitAt(1), top5: hitAt(5), top10: hitAt(10), precisionAt10, mAP, images: n };
}

function percentiles(values: number[]): { queryMsP50: number; queryMsP95: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
  return { queryMsP50: round(at(0.5)), queryMsP95: round(at(0.95)) };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
