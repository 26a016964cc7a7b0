import { InvalidInputError } from './errors';
import type { Framing } from './model-spec';
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
  /**
   * Database-side augmentation with this many neighbours (0 or absent = off). The store applies it to
   * the vectors it keeps (PgVectorStore, StoreOptions.dba); query vectors stay the plain embedding. It is
   * part of the transform because stored vectors depend on it: a store built with another k holds other
   * vectors, so the model id records it and a change takes the re-index path.
   */
  readonly dba?: number;
  /**
   * The descriptor: GeM pooling exponent (0 or absent = the model's average pool) and the framing
   * (absent = 'crop'). The ONNX graph and the preprocessor apply them (describedSpec); they are here
   * because the stored vectors depend on them, so the model id names them ('+whole+gem3').
   */
  readonly gem?: number;
  readonly framing?: Framing;
}

export const PLAIN_EMBEDDING: EmbeddingTransform = { flip: false, power: 1 };

/** The largest GeM exponent accepted (OMPF_GEM_POWER); the literature's values lie in 2..4. */
export const MAX_GEM_POWER = 8;

/** The most DBA neighbours a store may use (OMPF_DBA). */
export const MAX_DBA_NEIGHBOURS = 10;

/** The suffix recorded with every stored vector; '' for the plain embedding. */
export function transformSuffix(transform: EmbeddingTransform): string {
  const framing = transform.framing && transform.framing !== 'crop' ? `+${transform.framing}` : '';
  const gem = transform.gem ? `+gem${transform.gem}` : '';
  return `${framing}${gem}${transform.flip ? '+flip' : ''}${transform.power !== 1 ? `+pow${transform.power}` : ''}${
    transform.dba ? `+dba${transform.dba}` : ''
  }`;
}

/** The inverse of transformSuffix: undefined for a suffix it would not write. */
export function parseTransformSuffix(suffix: string): EmbeddingTransform | undefined {
  const match = /^(?:\+(squash|whole))?(?:\+gem([0-9.]+))?(\+flip)?(?:\+pow([0-9.]+))?(?:\+dba(\d+))?$/.exec(
    suffix,
  );
  if (!match) return undefined;
  const transform: EmbeddingTransform = {
    framing: (match[1] as Framing | undefined) ?? 'crop',
    gem: match[2] === undefined ? 0 : Number(match[2]),
    flip: match[3] !== undefined,
    power: match[4] === undefined ? 1 : Number(match[4]),
    dba: match[5] === undefined ? 0 : Number(match[5]),
  };
  return transformSuffix(transform) === suffix ? transform : undefined;
}

/** A stored model id split into the model name and the transform suffix ('' when plain). */
export function splitModelId(modelId: string): { model: string; transform: string } {
  const at = modelId.search(/\+(squash|whole|gem[0-9.]+|flip|pow[0-9.]+|dba\d+)(\+|$)/);
  return at < 0
    ? { model: modelId, transform: '' }
    : { model: modelId.slice(0, at), transform: modelId.slice(at) };
}

export function validateTransform(transform: EmbeddingTransform): EmbeddingTransform {
  if (!(transform.power > 0 && transform.power <= 1)) {
    throw new InvalidInputError(
      `The power normalisation exponent must be in (0, 1]; got ${transform.power}.`,
    );
  }
  const gem = transform.gem ?? 0;
  if (gem !== 0 && !(gem >= 1 && gem <= MAX_GEM_POWER)) {
    throw new InvalidInputError(
      `The GeM exponent must be 0 (off) or from 1 to ${MAX_GEM_POWER}; got ${gem}.`,
    );
  }
  const dba = transform.dba ?? 0;
  if (!Number.isInteger(dba) || dba < 0 || dba > MAX_DBA_NEIGHBOURS) {
    throw new InvalidInputError(
      `Database-side augmentation takes 0 to ${MAX_DBA_NEIGHBOURS} neighbours; got ${String(dba)}.`,
    );
  }
  return transform;
}

/** Mirror a preprocessed CHW tensor left-right (cheaper than decoding the image twice). */
export function mirror(image: PreparedImage, cropSize: number): PreparedImage {
  const source = image.tensor;
  const width = image.tensorShape?.width ?? cropSize;
  const mirrored = new Float32Array(source.length);
  const rows = Math.floor(source.length / width); // 3 channels x height rows
  for (let row = 0; row < rows; row++) {
    const offset = row * width;
    for (let x = 0; x < width; x++) mirrored[offset + x] = source[offset + width - 1 - x]!;
  }
  return { ...image, tensor: mirrored };
}

export function signedPower(vector: Float32Array, power: number): Float32Array {
  if (power === 1) return vector;
  return vector.map((x) => Math.sign(x) * Math.abs(x) ** power);
}

/**
 * Applies an EmbeddingTransform around any Embedder; its modelId carries the transform suffix. DBA is
 * not applied here (the store applies it to stored vectors; a query is the plain embedding), but it is
 * in the id, so embedder and store agree on what the store holds.
 */
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

/** alpha of the similarity weights, for query expansion and for database-side augmentation. */
export const EXPANSION_ALPHA = 3;

/**
 * Database-side augmentation of one stored vector (Radenovic et al.): the vector plus its k nearest
 * gallery neighbours weighted by similarity^alpha, renormalised: the same weighting as query expansion.
 * `ompf eval` (configuration dba3) and the store (PgVectorStore, maintained as images arrive) both call
 * this, so the product stores exactly what the evaluation measured. Neighbours nearest first.
 */
export function databaseAugment(vector: Float32Array, neighbours: readonly Float32Array[]): Float32Array {
  return expandQuery(vector, neighbours, EXPANSION_ALPHA);
}

/**
 * Alpha query expansion (Radenovic et al.): the query plus its top-k neighbours weighted by
 * similarity^alpha, renormalised. Used by SearchService when asked, and by the evaluation.
 */
export function expandQuery(
  query: Float32Array,
  neighbours: readonly Float32Array[],
  alpha = EXPANSION_ALPHA,
): Float32Array {
  const expanded = Float32Array.from(query);
  for (const neighbour of neighbours) {
    const weight = Math.max(0, dot(query, neighbour)) ** alpha;
    for (let d = 0; d < expanded.length; d++) expanded[d] = expanded[d]! + weight * neighbour[d]!;
  }
  return l2Normalise(expanded);
}
