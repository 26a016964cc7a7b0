import {
  kReciprocalDistances,
  rerankOrder,
  similarityMatrix,
  validateRerank,
} from '../../lib/core/reranking';

/**
 * k-reciprocal re-ranking (lib/core/reranking.ts) against the authors' reference algorithm
 * (re_ranking_feature.py of Zhong et al. 2017: row-normalised squared distances, expanded k1-reciprocal
 * sets, exp(-d) weights, local query expansion over k2 rows, Jaccard blended with lambda), run in numpy
 * on these 14 unit vectors with k1 4, k2 2, lambda 0.3 (point 3 is a near copy of the query, point 0).
 */
const POINTS = [
  [0.000619, 0.150364, -0.137978, -0.448251, -0.228844, -0.499113, 0.030271, 0.674554],
  [-0.320688, -0.404258, 0.319147, 0.232523, 0.068681, -0.606229, -0.019058, 0.453011],
  [-0.381406, -0.129844, -0.539451, -0.365892, -0.522572, -0.066705, -0.359624, 0.076968],
  [0.006268, 0.141915, -0.227227, -0.46261, -0.228001, -0.48937, -0.025284, 0.649672],
  [-0.459972, -0.380209, 0.498696, -0.379597, -0.015287, 0.415724, -0.274333, -0.052508],
  [0.043275, 0.024987, -0.479928, 0.029829, 0.532333, -0.60611, 0.336672, 0.046758],
  [-0.237865, 0.74178, 0.282656, -0.444712, 0.027632, 0.213844, -0.070003, 0.253232],
  [-0.030823, 0.309194, 0.666593, -0.313093, 0.094132, -0.214691, 0.058975, -0.550131],
  [-0.190321, -0.064457, 0.295276, 0.376246, -0.434826, -0.261068, 0.212531, -0.65458],
  [-0.209111, -0.043923, 0.567513, 0.31125, -0.147729, -0.166404, -0.112957, 0.687839],
  [-0.311236, -0.220819, 0.256383, -0.087817, -0.143454, -0.810087, -0.008378, -0.322547],
  [0.598483, 0.33518, -0.012391, 0.343028, -0.174429, 0.539975, -0.002771, 0.299405],
  [-0.336147, 0.090275, -0.439607, -0.529997, -0.079285, -0.23434, 0.042719, 0.584532],
  [-0.560289, -0.420318, 0.13837, 0.332117, -0.118836, -0.138725, 0.473213, 0.350235],
].map((row) => Float32Array.from(row));

const REFERENCE = [
  0.770059, 0.362396, 0.001272, 0.903167, 0.664094, 0.790123, 0.922284, 0.971913, 0.776323, 0.842515,
  0.886234, 0.162052, 0.826313,
];

function squaredDistances(points: readonly Float32Array[]): Float32Array {
  const similarity = similarityMatrix(points);
  const distance = similarity.map((s) => Math.max(0, 2 - 2 * s));
  for (let i = 0; i < points.length; i++) distance[i * points.length + i] = 0;
  return distance;
}

describe('k-reciprocal re-ranking', () => {
  it('matches the reference algorithm on a small set', () => {
    // Arrange
    const distance = squaredDistances(POINTS);
    // Act
    const reranked = kReciprocalDistances(distance, POINTS.length, { k1: 4, k2: 2, lambda: 0.3 });
    // Assess
    expect(reranked).toHaveLength(REFERENCE.length);
    reranked.forEach((value, i) => expect(value).toBeCloseTo(REFERENCE[i]!, 4));
  });

  it('ranks the near copy first and returns every candidate once', () => {
    // Act
    const order = rerankOrder(similarityMatrix(POINTS), POINTS.length, { k1: 4, k2: 2, lambda: 0.3 });
    // Assess: indices are of the candidates (points 1..13), so the near copy, point 3, is index 2.
    expect(order[0]).toBe(2);
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 13 }, (_, i) => i));
  });

  it('with lambda 1 keeps the original order', () => {
    // Arrange
    const similarity = similarityMatrix(POINTS);
    const original = Array.from({ length: 13 }, (_, i) => i).sort(
      (a, b) => similarity[b + 1]! - similarity[a + 1]! || a - b,
    );
    // Act
    const order = rerankOrder(similarity, POINTS.length, { k1: 4, k2: 2, lambda: 1 });
    // Assess
    expect(order).toEqual(original);
  });

  it('handles a query with a single candidate, and none', () => {
    expect(rerankOrder(similarityMatrix(POINTS.slice(0, 2)), 2, { k1: 20, k2: 6, lambda: 0.6 })).toEqual([0]);
    expect(kReciprocalDistances(new Float32Array(1), 1, { k1: 20, k2: 6, lambda: 0.6 })).toHaveLength(0);
  });

  it('refuses bad settings, naming each', () => {
    expect(() => validateRerank({ candidates: -1, k1: 0, k2: 9, lambda: Number.NaN })).toThrow(
      /candidates re-ranked.*k1 must.*k2 must.*lambda must/,
    );
    expect(() => validateRerank({ candidates: 501, k1: 20, k2: 6, lambda: 0.6 })).toThrow(/0 to 500/);
  });
});
