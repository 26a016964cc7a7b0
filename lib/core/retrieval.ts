import { InvalidInputError } from './errors';
import type { Embedder, PreparedImage } from './ports';
import { dot, l2Normalise } from './vectors';

/**
 * Retrieval improvements beyond the plain embedding, each measured by `ompf eval --compare` on the
 * labelled dev set (figures in the README). Two kinds:
 * - embedding transforms change the stored vectors, so they are part of the store's model id
 *   ("mobilenetv2-int8+flip"): changing them takes the same re-index path as changing the model;
 * - query-time options (query expansion) need no re-index.
 */
export interface EmbeddingTransform {
  /** Average the embedding of the image and of its mirror image (test-time augmentation). */
  readonly flip: boolean;
  /** Signed power normalisation sign(x)|x|^p before L2; 1 = off. */
  readonly power: number;
}

export const PLAIN_EMBEDDING: EmbeddingTransform = { flip: false, power: 1 };

/** The suffix recorded with every stored vector; '' for the plain embedding. */
export function transformSuffix(transform: EmbeddingTransform): string {
  return `${transform.flip ? '+flip' : ''}${transform.power !== 1 ? `+pow${transform.power}` : ''}`;
}

export function validateTransform(transform: EmbeddingTransform): EmbeddingTransform {
  if (!(transform.power > 0 && transform.power <= 1)) {
    throw new InvalidInputError(
      `The power normalisation exponent must be in (0, 1]; got ${transform.power}.`,
    );
  }
  return transform;
}

/** Mirror a preprocessed CHW tensor left-right (cheaper than decoding the image twice). */
export function mirror(image: PreparedImage, cropSize: number): PreparedImage {
  const source = image.tensor;
  const mirrored = new Float32Array(source.length);
  const rows = Math.floor(source.length / cropSize); // 3 channels x cropSize rows
  for (let row = 0; row < rows; row++) {
    const offset = row * cropSize;
    for (let x = 0; x < cropSize; x++) mirrored[offset + x] = source[offset + cropSize - 1 - x]!;
  }
  return { ...image, tensor: mirrored };
}

export function signedPower(vector: Float32Array, power: number): Float32Array {
  if (power === 1) return vector;
  return vector.map((x) => Math.sign(x) * Math.abs(x) ** power);
}

/** Applies an EmbeddingTransform around any Embedder; its modelId carries the transform suffix. */
export class TransformingEmbedder implements Embedder {
  readonly modelId: string;
  readonly dimension: number;

  constructor(
    private readonly base: Embedder,
    private readonly transform: EmbeddingTransform,
    private readonly cropSize: number,
  ) {
    validateTransform(transform);
    this.modelId = `${base.modelId}${transformSuffix(transform)}`;
    this.dimension = base.dimension;
  }

  async embed(images: readonly PreparedImage[]): Promise<Float32Array[]> {
    const views = this.transform.flip ? [...images, ...images.map((i) => mirror(i, this.cropSize))] : images;
    const vectors = await this.base.embed(views);
    return images.map((_, i) => {
      const vector = Float32Array.from(vectors[i]!);
      if (this.transform.flip) {
        const mirrored = vectors[i + images.length]!;
        for (let d = 0; d < vector.length; d++) vector[d] = vector[d]! + mirrored[d]!;
      }
      return l2Normalise(signedPower(vector, this.transform.power));
    });
  }
}

/**
 * Alpha query expansion (Radenovic et al.): the query plus its top-k neighbours weighted by
 * similarity^alpha, renormalised. Used by SearchService when asked, and by the evaluation.
 */
export function expandQuery(
  query: Float32Array,
  neighbours: readonly Float32Array[],
  alpha = 3,
): Float32Array {
  const expanded = Float32Array.from(query);
  for (const neighbour of neighbours) {
    const weight = Math.max(0, dot(query, neighbour)) ** alpha;
    for (let d = 0; d < expanded.length; d++) expanded[d] = expanded[d]! + weight * neighbour[d]!;
  }
  return l2Normalise(expanded);
}
