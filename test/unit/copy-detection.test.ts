import {
  byDistance,
  byDuplicateRule,
  byHash,
  chooseThreshold,
  operatingPoint,
  type CopyCandidate,
  type CopyQuery,
} from '../../lib/core/copy-detection';

/** Precision and recall of copy detection, from candidates (lib/core/copy-detection.ts). */
function query(family: string, original: [number, number], others: [number, number][]): CopyQuery {
  const all: Omit<CopyCandidate, 'rank'>[] = [
    { distance: original[0], hashBits: original[1], original: true },
    ...others.map(([distance, hashBits]) => ({ distance, hashBits, original: false })),
  ];
  const ranked = [...all].sort((a, b) => a.distance - b.distance);
  return { family, candidates: all.map((c) => ({ ...c, rank: ranked.indexOf(c) })) };
}

const queries: CopyQuery[] = [
  query(
    'jpeg',
    [0.01, 2],
    [
      [0.3, 30],
      [0.5, 31],
    ],
  ),
  query(
    'jpeg',
    [0.05, 4],
    [
      [0.04, 28],
      [0.6, 3],
    ],
  ),
  query(
    'strong',
    [0.2, 9],
    [
      [0.1, 40],
      [0.15, 20],
      [0.18, 22],
    ],
  ),
];

describe('copy detection figures', () => {
  it('counts the original within the threshold as a hit and every other accepted pair as a false positive', () => {
    const point = operatingPoint(queries, 0.05, byDistance);
    // TP: both jpeg copies; FP: 0.04 of the second.
    expect(point.precision).toBeCloseTo(2 / 3);
    expect(point.recall).toBeCloseTo(2 / 3);
    expect(point.byFamily.jpeg).toEqual({ precision: 2 / 3, recall: 1, queries: 2 });
    expect(point.byFamily.strong).toEqual({ precision: 1, recall: 0, queries: 1 });
    expect(operatingPoint(queries, 0, byDistance).precision).toBe(1);
  });

  it('measures the hash alone in bits', () => {
    const point = operatingPoint(queries, 4, byHash);
    // TP: both jpeg copies; FP: the 3-bit hash 0.6 away.
    expect(point).toMatchObject({ precision: 2 / 3, recall: 2 / 3 });
  });

  it("applies the product's rule: the hash confirms only within the ceiling, among the nearest", () => {
    const rule = byDuplicateRule(10, 3);
    const point = operatingPoint(queries, 0.03, rule);
    // jpeg 1 by distance; jpeg 2 by hash (4 bits, 0.05 away); the 3-bit stranger is 0.6 away, beyond
    // the ceiling; strong by hash (9 bits, 0.2 away) but its original ranks fourth: not a candidate.
    expect(point.byFamily.jpeg).toEqual({ precision: 1, recall: 1, queries: 2 });
    expect(point.byFamily.strong).toEqual({ precision: 1, recall: 0, queries: 1 });
    expect(operatingPoint(queries, 0.03, byDuplicateRule(10, 4)).byFamily.strong!.recall).toBe(1);
  });

  it('chooses the largest threshold that keeps the precision outside the excluded families', () => {
    const grid = [0, 0.01, 0.02, 0.03, 0.04, 0.05];
    expect(chooseThreshold(queries, grid, byDistance, 0.99, ['strong']).threshold).toBe(0.03);
    expect(chooseThreshold(queries, grid, byDistance, 0.5, ['strong']).threshold).toBe(0.05);
  });
});
