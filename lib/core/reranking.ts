import { InvalidInputError } from './errors';
import { dot } from './vectors';

/**
 * k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking Person Re-identification with
 * k-reciprocal Encoding", CVPR 2017; the authors' reference code, re_ranking_feature.py), applied at
 * query time to the query and its first K candidates only.
 *
 * Two images are k-reciprocal neighbours when each is among the other's k nearest. Each point is
 * encoded as a sparse vector over its (expanded) k1-reciprocal set, weighted by exp(-distance); the
 * query's encoding is averaged over its k2 nearest (local query expansion); the Jaccard distance of
 * two encodings is blended with the original distance: d* = (1 - lambda) d_J + lambda d.
 *
 * Restricting the neighbourhoods to the candidate pool (rather than lists over the whole gallery) is
 * what lets it run per query with no state in the store; `ompf eval --compare` measures what that
 * costs against the pool size (figures in the README).
 */
export interface RerankParameters {
  /** Candidates re-ranked: the first K of the plain ranking (0 = off). */
  readonly candidates: number;
  /** Size of the reciprocal neighbourhoods. */
  readonly k1: number;
  /** Neighbours averaged into the query's encoding (1 = none). */
  readonly k2: number;
  /** Weight of the original distance in the blend, 0..1. */
  readonly lambda: number;
}

export const MAX_RERANK_CANDIDATES = 500;
/** The neighbourhood sizes and blend of the product's re-ranking (measured: README, "Retrieval quality"). */
export const RERANK_K1 = 20;
export const RERANK_K2 = 6;
export const RERANK_LAMBDA = 0.8;
/** Candidates re-ranked by default (OMPF_RERANK). */
export const DEFAULT_RERANK_CANDIDATES = 100;
export const NO_RERANK: RerankParameters = {
  candidates: 0,
  k1: RERANK_K1,
  k2: RERANK_K2,
  lambda: RERANK_LAMBDA,
};
export function rerankWith(candidates: number): RerankParameters {
  return { ...NO_RERANK, candidates };
}

export function validateRerank(parameters: RerankParameters): RerankParameters {
  const problems: string[] = [];
  const { candidates, k1, k2, lambda } = parameters;
  if (!Number.isInteger(candidates) || candidates < 0 || candidates > MAX_RERANK_CANDIDATES) {
    problems.push(
      `the candidates re-ranked must be a whole number from 0 to ${MAX_RERANK_CANDIDATES}; got ${String(candidates)}`,
    );
  }
  if (!Number.isInteger(k1) || k1 < 1 || k1 > 100)
    problems.push(`k1 must be a whole number from 1 to 100; got ${String(k1)}`);
  if (!Number.isInteger(k2) || k2 < 1 || k2 > k1)
    problems.push(`k2 must be a whole number from 1 to k1; got ${String(k2)}`);
  if (!(lambda >= 0 && lambda <= 1)) problems.push(`lambda must be from 0 to 1; got ${String(lambda)}`);
  if (problems.length > 0) {
    throw new InvalidInputError(`Bad re-ranking settings: ${problems.join('; ')}.`, {
      hint: 'Set OMPF_RERANK to a candidate count (0 turns re-ranking off).',
      context: { ...parameters },
    });
  }
  return parameters;
}

/**
 * The re-ranked distances from the query (point 0) to every other point.
 *
 * @param distance squared Euclidean distances between n points (row-major n x n, symmetric, zero
 *   diagonal): point 0 is the query, points 1..n-1 its candidates. For unit vectors, 2 - 2 cos.
 * @returns n - 1 distances, for points 1..n-1 in order; smaller is nearer.
 */
export function kReciprocalDistances(
  distance: Float32Array,
  n: number,
  parameters: Pick<RerankParameters, 'k1' | 'k2' | 'lambda'>,
): Float32Array {
  if (distance.length !== n * n) throw new Error(`Expected ${n * n} distances, got ${distance.length}.`);
  if (n <= 1) return new Float32Array(0);
  const k1 = Math.min(parameters.k1, n - 1);
  const k2 = Math.min(parameters.k2, n);
  // Each row divided by its largest value (the reference code's column-wise max, on a symmetric matrix).
  const scaled = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    let max = 0;
    for (let j = 0; j < n; j++) max = Math.max(max, distance[i * n + j]!);
    const inverse = max > 0 ? 1 / max : 0;
    for (let j = 0; j < n; j++) scaled[i * n + j] = distance[i * n + j]! * inverse;
  }
  // Each point's ranking of all points, itself first (ties by index, for determinism).
  const rank: Int32Array[] = [];
  for (let i = 0; i < n; i++) {
    const order = Array.from({ length: n }, (_, j) => j);
    order.sort((a, b) => scaled[i * n + a]! - scaled[i * n + b]! || (a === i ? -1 : b === i ? 1 : a - b));
    rank.push(Int32Array.from(order));
  }
  const reciprocal = (i: number, k: number): number[] => {
    const forward = rank[i]!.subarray(0, k + 1);
    const result: number[] = [];
    for (const candidate of forward) {
      if (rank[candidate]!.subarray(0, k + 1).includes(i)) result.push(candidate);
    }
    return result;
  };
  const halfK = Math.round(k1 / 2);
  // Sparse encodings, dense storage: n is at most MAX_RERANK_CANDIDATES + 1.
  const encoding = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    const base = reciprocal(i, k1);
    const members = new Set(base);
    for (const candidate of base) {
      const theirs = reciprocal(candidate, halfK);
      const shared = theirs.filter((m) => base.includes(m)).length;
      if (shared > (2 / 3) * theirs.length) theirs.forEach((m) => members.add(m));
    }
    let sum = 0;
    for (const m of members) sum += Math.exp(-scaled[i * n + m]!);
    for (const m of members) encoding[i * n + m] = Math.exp(-scaled[i * n + m]!) / sum;
  }
  // Local query expansion of every encoding (the reference code expands all rows, not only the query's).
  const expanded = k2 > 1 ? new Float32Array(n * n) : encoding;
  if (k2 > 1) {
    for (let i = 0; i < n; i++) {
      for (const j of rank[i]!.subarray(0, k2)) {
        for (let m = 0; m < n; m++) expanded[i * n + m] = expanded[i * n + m]! + encoding[j * n + m]! / k2;
      }
    }
  }
  const result = new Float32Array(n - 1);
  const lambda = parameters.lambda;
  for (let j = 1; j < n; j++) {
    let shared = 0;
    for (let m = 0; m < n; m++) shared += Math.min(expanded[m]!, expanded[j * n + m]!);
    const jaccard = 1 - shared / (2 - shared);
    result[j - 1] = (1 - lambda) * jaccard + lambda * scaled[j]!;
  }
  return result;
}

/**
 * The candidates' order after re-ranking: indices into `candidates`, nearest first.
 * @param similarity cosine similarity between unit vectors (query, c1..cK) as a (K+1)^2 matrix.
 */
export function rerankOrder(
  similarity: Float32Array,
  n: number,
  parameters: Pick<RerankParameters, 'k1' | 'k2' | 'lambda'>,
): number[] {
  const distance = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) distance[i] = Math.max(0, 2 - 2 * similarity[i]!);
  for (let i = 0; i < n; i++) distance[i * n + i] = 0;
  const reranked = kReciprocalDistances(distance, n, parameters);
  return Array.from({ length: n - 1 }, (_, j) => j).sort((a, b) => reranked[a]! - reranked[b]! || a - b);
}

/** Cosine similarities between unit vectors, as a row-major n x n matrix. */
export function similarityMatrix(vectors: readonly Float32Array[]): Float32Array {
  const n = vectors.length;
  const matrix = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    matrix[i * n + i] = 1;
    for (let j = i + 1; j < n; j++) matrix[i * n + j] = matrix[j * n + i] = dot(vectors[i]!, vectors[j]!);
  }
  return matrix;
}
