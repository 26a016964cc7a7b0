import { learnPca, project, type PcaProjection } from './pca';
import type { DistanceMetric } from './ports';
import { NO_RERANK, rerankOrder, rerankWith, type RerankParameters } from './reranking';
import {
  databaseAugment,
  expandQuery,
  PLAIN_EMBEDDING,
  signedPower,
  type EmbeddingTransform,
} from './retrieval';
import { dot, l2Normalise } from './vectors';

export interface LabelledVector {
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
}

/** One row of `ompf eval --compare`. */
export interface EvalConfig {
  readonly name: string;
  readonly description: string;
  readonly transform: EmbeddingTransform;
  readonly metric: DistanceMetric;
  /** alpha-QE with this many neighbours at query time; 0 = off. */
  readonly queryExpansion: number;
  /** Database-side augmentation with this many neighbours; 0 = off. */
  readonly dba: number;
  /** PCA to this many dimensions, learned from the gallery; 0 = off. */
  readonly pcaDimensions: number;
  readonly pcaWhiten: boolean;
  /** k-reciprocal re-ranking of the first candidates (candidates 0 = off). */
  readonly rerank: RerankParameters;
}

const base: Omit<EvalConfig, 'name' | 'description'> = {
  transform: PLAIN_EMBEDDING,
  metric: 'cosine',
  queryExpansion: 0,
  dba: 0,
  pcaDimensions: 0,
  pcaWhiten: false,
  rerank: NO_RERANK,
};

/**
 * The configurations `ompf eval --compare` measures side by side. `plain` (first: `ompf eval` without
 * --compare) is the model's own embedding; `dba3` is the product default (OMPF_DBA=3, maintained by the
 * store; runStoreCheck checks the store against this formula).
 */
export const EVAL_CONFIGS: readonly EvalConfig[] = [
  { ...base, name: 'plain', description: 'L2-normalised pooled features, cosine' },
  { ...base, name: 'euclidean', description: 'the same, ranked by Euclidean distance', metric: 'euclidean' },
  {
    ...base,
    name: 'flip',
    description: 'average with the mirrored image',
    transform: { flip: true, power: 1 },
  },
  {
    ...base,
    name: 'power0.5',
    description: 'signed square root before L2',
    transform: { flip: false, power: 0.5 },
  },
  { ...base, name: 'pca256', description: 'PCA to 256-d learned from the gallery', pcaDimensions: 256 },
  { ...base, name: 'pcaw256', description: 'PCA-whitening to 256-d', pcaDimensions: 256, pcaWhiten: true },
  { ...base, name: 'qe1', description: 'alpha-query expansion, k=1, alpha=3', queryExpansion: 1 },
  { ...base, name: 'qe3', description: 'alpha-query expansion, k=3, alpha=3', queryExpansion: 3 },
  { ...base, name: 'dba3', description: 'database-side augmentation, k=3, alpha=3', dba: 3 },
  {
    ...base,
    name: 'kr100',
    description: 'k-reciprocal re-ranking of the first 100 (k1 20, k2 6, lambda 0.8)',
    rerank: rerankWith(100),
  },
  {
    ...base,
    name: 'dba3+kr100',
    description: 'DBA k=3 and k-reciprocal re-ranking of the first 100 (default)',
    dba: 3,
    rerank: rerankWith(100),
  },
  {
    ...base,
    name: 'dba3+kr200',
    description: 'DBA k=3 and k-reciprocal re-ranking of the first 200',
    dba: 3,
    rerank: rerankWith(200),
  },
  { ...base, name: 'dba3+qe3', description: 'DBA k=3 and QE k=3', dba: 3, queryExpansion: 3 },
  {
    ...base,
    name: 'flip+dba3',
    description: 'mirror averaging and DBA k=3',
    transform: { flip: true, power: 1 },
    dba: 3,
  },
];

export function findEvalConfigs(names: readonly string[]): EvalConfig[] {
  return names.map((name) => {
    const config = EVAL_CONFIGS.find((c) => c.name === name);
    if (!config)
      throw new Error(
        `Unknown configuration '${name}'. Known: ${EVAL_CONFIGS.map((c) => c.name).join(', ')}.`,
      );
    return config;
  });
}

/**
 * The database and query vectors a configuration produces from the plain and mirrored
 * embeddings (both L2-normalised, as the embedder returns them).
 */
export function configureVectors(
  config: EvalConfig,
  plain: readonly Float32Array[],
  mirrored: readonly Float32Array[] | undefined,
): { vectors: Float32Array[]; pca: PcaProjection | undefined } {
  let vectors = plain.map((vector, i) => {
    const combined = Float32Array.from(vector);
    if (config.transform.flip) {
      const other = mirrored?.[i];
      if (!other) throw new Error('Mirrored embeddings are needed for the flip configuration.');
      for (let d = 0; d < combined.length; d++) combined[d] = combined[d]! + other[d]!;
    }
    return l2Normalise(signedPower(combined, config.transform.power));
  });
  // Learned from the gallery itself (transductive), as a deployed store would learn it from its gallery.
  const pca =
    config.pcaDimensions > 0 ? learnPca(vectors, config.pcaDimensions, config.pcaWhiten) : undefined;
  if (pca) vectors = vectors.map((v) => project(pca, v));
  return { vectors, pca };
}

/**
 * Leave-one-out retrieval: each image in turn queries all the others. Ranking is exact (the same
 * order as the store's exact search). Database-side augmentation is computed without the query
 * (it is an outside image), so no database vector carries the query's own features.
 */
export function leaveOneOut(
  vectors: readonly Float32Array[],
  labels: readonly string[],
  config: Pick<EvalConfig, 'queryExpansion' | 'dba'> & { readonly rerank?: RerankParameters },
): RetrievalMetrics {
  const n = vectors.length;
  const similarity = crossSimilarity(vectors, vectors);
  const neighbourLists =
    config.dba > 0 ? similarity.map((row, j) => nearestIndices(row, j, config.dba + 1)) : [];
  const augment = (j: number, without: number): Float32Array => {
    const neighbours = neighbourLists[j]!.filter((i) => i !== without).slice(0, config.dba);
    return databaseAugment(
      vectors[j]!,
      neighbours.map((i) => vectors[i]!),
    );
  };
  const augmented = config.dba > 0 ? vectors.map((_, j) => augment(j, -1)) : vectors;
  // query-to-database similarities; with DBA, rows whose augmentation used the query are fixed up per query
  const scores = config.dba > 0 ? crossSimilarity(vectors, augmented) : similarity;
  const rerank = config.rerank ?? NO_RERANK;
  // Candidate-to-candidate similarities: between the vectors the store ranks by.
  const between =
    rerank.candidates > 0 && config.dba > 0 ? crossSimilarity(augmented, augmented) : similarity;
  const usedBy = Array.from({ length: n }, () => [] as number[]);
  neighbourLists.forEach((list, j) => list.slice(0, config.dba).forEach((i) => usedBy[i]!.push(j)));

  const classSizes = new Map<string, number>();
  for (const label of labels) classSizes.set(label, (classSizes.get(label) ?? 0) + 1);
  const rankings: boolean[][] = [];
  const relevant: number[] = [];
  for (let q = 0; q < n; q++) {
    const fixed = new Map(usedBy[q]!.map((j) => [j, augment(j, q)]));
    const database = (j: number): Float32Array => fixed.get(j) ?? augmented[j]!;
    const row = Float32Array.from(scores[q]!);
    for (const [j, vector] of fixed) row[j] = dot(vectors[q]!, vector);
    let order = rankRow(row, q);
    if (config.queryExpansion > 0) {
      const query = expandQuery(vectors[q]!, order.slice(0, config.queryExpansion).map(database));
      for (let j = 0; j < n; j++) row[j] = dot(query, database(j));
      order = rankRow(row, q);
    }
    if (rerank.candidates > 0) {
      const pool = order.slice(0, rerank.candidates);
      const size = pool.length + 1;
      const matrix = new Float32Array(size * size);
      pool.forEach((c, a) => {
        matrix[a + 1] = matrix[(a + 1) * size] = row[c]!;
        pool.forEach((d, b) => {
          const fixedC = fixed.get(c);
          const fixedD = fixed.get(d);
          matrix[(a + 1) * size + b + 1] = fixedC || fixedD ? dot(database(c), database(d)) : between[c]![d]!;
        });
      });
      matrix[0] = 1;
      const reranked = rerankOrder(matrix, size, rerank).map((i) => pool[i]!);
      order = [...reranked, ...order.slice(pool.length)];
    }
    rankings.push(order.map((j) => labels[j] === labels[q]));
    relevant.push((classSizes.get(labels[q]!) ?? 1) - 1);
  }
  return { ...scoreRankings(rankings, relevant), classes: classSizes.size };
}

function crossSimilarity(
  queries: readonly Float32Array[],
  database: readonly Float32Array[],
): Float32Array[] {
  return queries.map((query) => {
    const row = new Float32Array(database.length);
    for (let j = 0; j < database.length; j++) row[j] = dot(query, database[j]!);
    return row;
  });
}

function nearestIndices(row: Float32Array, self: number, k: number): number[] {
  return rankRow(row, self).slice(0, k);
}

/** Indices by descending similarity, `self` left out; ties by index, which follows key order like the store. */
function rankRow(row: Float32Array, self: number): number[] {
  const order: number[] = [];
  for (let j = 0; j < row.length; j++) if (j !== self) order.push(j);
  return order.sort((a, b) => row[b]! - row[a]! || a - b);
}

/** Pure scoring of relevance lists (true = same class), one per query, in rank order. */
export function scoreRankings(
  rankings: readonly (readonly boolean[])[],
  relevantCounts: readonly number[],
): Omit<RetrievalMetrics, 'classes'> {
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

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}
