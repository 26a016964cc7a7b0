/**
 * Precision and recall of copy detection at each threshold, from distances: for every query copy, its
 * distance to its original and its distances to every other gallery image. A pair within the threshold
 * is a detection: the copy and its original is a true positive, any other pair a false positive.
 * Precision = TP / (TP + FP) over all detected pairs; recall = copies whose original is detected / copies.
 * The measure imagededup reports (its CNN at cosine similarity 0.9, pHash at 10 bits).
 */
export interface CopyQuery {
  readonly family: string;
  /** Distance to the query's original. */
  readonly positive: number;
  /** Distances to every other gallery image (only those up to the largest threshold matter). */
  readonly negatives: readonly number[];
}

export interface OperatingPoint {
  readonly threshold: number;
  readonly precision: number;
  readonly recall: number;
  readonly byFamily: Readonly<
    Record<string, { readonly precision: number; readonly recall: number; readonly queries: number }>
  >;
}

export function operatingPoint(queries: readonly CopyQuery[], threshold: number): OperatingPoint {
  const families = new Map<string, { tp: number; fp: number; n: number }>();
  let tp = 0;
  let fp = 0;
  for (const q of queries) {
    const f = families.get(q.family) ?? { tp: 0, fp: 0, n: 0 };
    f.n += 1;
    const hit = q.positive <= threshold ? 1 : 0;
    const wrong = q.negatives.reduce((count, d) => count + (d <= threshold ? 1 : 0), 0);
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
  minPrecision: number,
  exclude: readonly string[] = [],
): OperatingPoint {
  const counted = queries.filter((q) => !exclude.includes(q.family));
  let best = operatingPoint(queries, grid[0]!);
  for (const t of grid) {
    if (operatingPoint(counted, t).precision >= minPrecision) best = operatingPoint(queries, t);
  }
  return best;
}
