import { HASH_CONFIRMED_CEILING } from './duplicates';

/**
 * Precision and recall of copy detection at each threshold. For every query copy, its candidates: the
 * gallery images near enough to matter, each with its cosine distance to the copy, its perceptual-hash
 * distance (bits), its rank by cosine distance and whether it is the copy's original. A candidate a
 * rule accepts is a detection: the copy and its original is a true positive, any other pair a false
 * positive. Precision = TP / (TP + FP) over all detected pairs; recall = copies whose original is
 * detected / copies. The measure imagededup reports (its CNN at cosine similarity 0.9, pHash at 10 bits).
 */
export interface CopyCandidate {
  readonly distance: number;
  readonly hashBits: number;
  /** 0 for the gallery image nearest to the copy by cosine distance. */
  readonly rank: number;
  readonly original: boolean;
}

export interface CopyQuery {
  readonly family: string;
  readonly candidates: readonly CopyCandidate[];
}

/** Whether a rule at `threshold` calls the candidate a copy. */
export type CopyRule = (candidate: CopyCandidate, threshold: number) => boolean;

export interface OperatingPoint {
  readonly threshold: number;
  readonly precision: number;
  readonly recall: number;
  readonly byFamily: Readonly<
    Record<string, { readonly precision: number; readonly recall: number; readonly queries: number }>
  >;
}

export function operatingPoint(
  queries: readonly CopyQuery[],
  threshold: number,
  rule: CopyRule,
): OperatingPoint {
  const families = new Map<string, { tp: number; fp: number; n: number }>();
  let tp = 0;
  let fp = 0;
  for (const q of queries) {
    const f = families.get(q.family) ?? { tp: 0, fp: 0, n: 0 };
    f.n += 1;
    let hit = 0;
    let wrong = 0;
    for (const c of q.candidates) {
      if (!rule(c, threshold)) continue;
      if (c.original) hit = 1;
      else wrong += 1;
    }
    f.tp += hit;
    f.fp += wrong;
    tp += hit;
    fp += wrong;
    families.set(q.family, f);
  }
  const precision = (t: number, f: number) => (t + f === 0 ? 1 : t / (t + f));
  return {
    threshold,
    precision: precision(tp, fp),
    recall: queries.length === 0 ? 0 : tp / queries.length,
    byFamily: Object.fromEntries(
      [...families].map(([name, f]) => [
        name,
        { precision: precision(f.tp, f.fp), recall: f.tp / f.n, queries: f.n },
      ]),
    ),
  };
}

/**
 * The threshold a product should default to: the largest on the grid whose precision, over the
 * families that are not excluded, stays at or above `minPrecision` (recall only grows with it).
 */
export function chooseThreshold(
  queries: readonly CopyQuery[],
  grid: readonly number[],
  rule: CopyRule,
  minPrecision: number,
  exclude: readonly string[] = [],
): OperatingPoint {
  const counted = queries.filter((q) => !exclude.includes(q.family));
  let best = operatingPoint(queries, grid[0]!, rule);
  for (const t of grid) {
    if (operatingPoint(counted, t, rule).precision >= minPrecision) best = operatingPoint(queries, t, rule);
  }
  return best;
}

/** The model's vectors alone: cosine distance within the threshold. */
export const byDistance: CopyRule = (c, threshold) => c.distance <= threshold;

/** The perceptual hash alone: Hamming distance within the threshold (bits). */
export const byHash: CopyRule = (c, threshold) => c.hashBits <= threshold;

/**
 * What the product's duplicate groups do (lib/core/duplicates.ts): among each image's `neighbours`
 * nearest (the DBA lists the store keeps), a pair within the threshold, or within `hashBits` of hash
 * while within HASH_CONFIRMED_CEILING. The store reads both images' lists; a copy's own list is the
 * side a query has, so this slightly under-counts what the store finds.
 */
export function byDuplicateRule(hashBits: number, neighbours: number): CopyRule {
  return (c, threshold) =>
    c.rank < neighbours &&
    (c.distance <= threshold ||
      (c.hashBits <= hashBits && c.distance <= Math.max(threshold, HASH_CONFIRMED_CEILING)));
}
