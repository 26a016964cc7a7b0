import { chooseThreshold, operatingPoint, type CopyQuery } from '../../lib/core/copy-detection';

/** Precision and recall of copy detection, from distances (lib/core/copy-detection.ts). */
const queries: CopyQuery[] = [
  { family: 'jpeg', positive: 0.01, negatives: [0.3, 0.5] },
  { family: 'jpeg', positive: 0.05, negatives: [0.04, 0.6] },
  { family: 'strong', positive: 0.2, negatives: [0.1, 0.15] },
];

describe('copy detection figures', () => {
  it('counts the original within the threshold as a hit and every other pair within it as a false positive', () => {
    const point = operatingPoint(queries, 0.05);
    // TP: both jpeg copies; FP: 0.04 of the second.
    expect(point.precision).toBeCloseTo(2 / 3);
    expect(point.recall).toBeCloseTo(2 / 3);
    expect(point.byFamily.jpeg).toEqual({ precision: 2 / 3, recall: 1, queries: 2 });
    expect(point.byFamily.strong).toEqual({ precision: 1, recall: 0, queries: 1 });
    expect(operatingPoint(queries, 0).precision).toBe(1);
  });

  it('chooses the largest threshold that keeps the precision outside the excluded families', () => {
    const grid = [0, 0.01, 0.02, 0.03, 0.04, 0.05];
    expect(chooseThreshold(queries, grid, 0.99, ['strong']).threshold).toBe(0.03);
    expect(chooseThreshold(queries, grid, 0.5, ['strong']).threshold).toBe(0.05);
  });
});
