import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { l2Normalise } from './vectors';

/** A PCA projection learned from a set of unit vectors: centre, rotate, keep the top components. */
export interface PcaProjection {
  readonly mean: Float64Array;
  /** One row per kept component, each of the input dimension. */
  readonly components: readonly Float64Array[];
  /** Per-component scale: 1 for plain PCA, eigenvalue^-1/2 for whitening. */
  readonly scales: readonly number[];
}

export function learnPca(
  vectors: readonly Float32Array[],
  dimensions: number,
  whiten: boolean,
): PcaProjection {
  const n = vectors.length;
  const d = vectors[0]?.length ?? 0;
  if (n < 2 || dimensions < 1 || dimensions > d)
    throw new Error(`Cannot learn ${dimensions} components from ${n} x ${d}.`);
  const mean = new Float64Array(d);
  for (const v of vectors) for (let i = 0; i < d; i++) mean[i] = mean[i]! + v[i]! / n;
  const centred = new Matrix(n, d);
  vectors.forEach((v, row) => {
    for (let i = 0; i < d; i++) centred.set(row, i, v[i]! - mean[i]!);
  });
  const covariance = centred.transpose().mmul(centred).div(n);
  const decomposition = new EigenvalueDecomposition(covariance, { assumeSymmetric: true });
  const order = decomposition.realEigenvalues
    .map((value, index) => ({ value, index }))
    .sort((a, b) => b.value - a.value)
    .slice(0, dimensions);
  return {
    mean,
    components: order.map(({ index }) => Float64Array.from(decomposition.eigenvectorMatrix.getColumn(index))),
    scales: order.map(({ value }) => (whiten ? 1 / Math.sqrt(Math.max(value, 0) + 1e-6) : 1)),
  };
}

export function project(pca: PcaProjection, vector: Float32Array): Float32Array {
  const out = new Float32Array(pca.components.length);
  pca.components.forEach((component, k) => {
    let sum = 0;
    for (let i = 0; i < component.length; i++) sum += (vector[i]! - pca.mean[i]!) * component[i]!;
    out[k] = sum * pca.scales[k]!;
  });
  return l2Normalise(out);
}
