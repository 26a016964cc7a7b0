import { assertSameModel, InvalidInputError, NotFoundError } from './errors';
import type { DistanceMetric, Embedder, ImagePreprocessor, Neighbour, VectorStore } from './ports';
import { MAX_RERANK_CANDIDATES, rerankOrder, rerankWith, similarityMatrix } from './reranking';
import { expandQuery } from './retrieval';

export const MIN_RESULTS = 1;
export const MAX_RESULTS = 100;
export const DEFAULT_RESULTS = 10;
export const MAX_QUERY_EXPANSION = 10;
/** S3's own key limit; longer prefixes or keys cannot exist. */
export const MAX_KEY_BYTES = 1024;

export interface SearchOptions {
  readonly limit?: number | undefined;
  /** alpha-query expansion with this many neighbours (0 = off, at most 10): a second, refined query. */
  readonly queryExpansion?: number | undefined;
  readonly metric?: DistanceMetric | undefined;
  readonly keyPrefix?: string | undefined;
  /**
   * k-reciprocal re-ranking of the first this-many candidates (0 = off, at most 500); the default is
   * the service's (OMPF_RERANK). Reported distances stay each image's own; only the order changes.
   */
  readonly rerank?: number | undefined;
}

export interface SearchHit extends Neighbour {
  /** 1 for an identical image, 0 for the opposite direction: 1 - cosineDistance / 2. */
  readonly score: number;
}

export interface ImageRef {
  readonly key: string;
  /** The bucket or gallery root; may be left out when the key is unique across sources. */
  readonly source?: string | undefined;
}

interface ValidSearchOptions {
  readonly limit: number;
  readonly queryExpansion: number;
  readonly metric: DistanceMetric;
  readonly keyPrefix: string | undefined;
  readonly rerank: number;
}

/** Validate before any work: a bad N or prefix never costs an embedding or a query. */
export function validateSearchOptions(options: SearchOptions): ValidSearchOptions {
  const limit = options.limit ?? DEFAULT_RESULTS;
  if (!Number.isInteger(limit) || limit < MIN_RESULTS || limit > MAX_RESULTS) {
    throw new InvalidInputError(
      `N must be a whole number from ${MIN_RESULTS} to ${MAX_RESULTS}; got ${String(limit)}.`,
      {
        hint: `Ask for between ${MIN_RESULTS} and ${MAX_RESULTS} results.`,
        context: { n: limit },
      },
    );
  }
  const queryExpansion = options.queryExpansion ?? 0;
  if (!Number.isInteger(queryExpansion) || queryExpansion < 0 || queryExpansion > MAX_QUERY_EXPANSION) {
    throw new InvalidInputError(
      `Query expansion must be a whole number from 0 to ${MAX_QUERY_EXPANSION}; got ${String(queryExpansion)}.`,
    );
  }
  const metric = options.metric ?? 'cosine';
  if (metric !== 'cosine' && metric !== 'euclidean') {
    throw new InvalidInputError(`Unknown distance metric '${String(metric)}'.`, {
      hint: "Use 'cosine' or 'euclidean'.",
    });
  }
  if (options.keyPrefix !== undefined) validateKey(options.keyPrefix, 'prefix', { allowEmpty: true });
  const rerank = options.rerank ?? 0;
  if (!Number.isInteger(rerank) || rerank < 0 || rerank > MAX_RERANK_CANDIDATES) {
    throw new InvalidInputError(
      `Re-ranking takes 0 (off) to ${MAX_RERANK_CANDIDATES} candidates; got ${String(rerank)}.`,
      { hint: 'Pass rerank=0 to turn it off, or a candidate count such as 100.', context: { rerank } },
    );
  }
  return { limit, queryExpansion, metric, keyPrefix: options.keyPrefix || undefined, rerank };
}

export function validateKey(key: string, what = 'key', { allowEmpty = false } = {}): void {
  if (typeof key !== 'string' || (!allowEmpty && key.length === 0)) {
    throw new InvalidInputError(`The ${what} must be a non-empty string.`);
  }
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new InvalidInputError(`The ${what} is longer than ${MAX_KEY_BYTES} bytes.`, {
      context: { bytes: Buffer.byteLength(key, 'utf8') },
    });
  }
  if (key.includes('\u0000')) throw new InvalidInputError(`The ${what} contains a NUL character.`);
}

/** Top-N nearest images, by an image or by an image already in the index. */
export class SearchService {
  constructor(
    private readonly store: VectorStore,
    private readonly embedder: Embedder,
    private readonly preprocessor: ImagePreprocessor,
    /** Applied when a request does not say (OMPF_QUERY_EXPANSION). */
    private readonly defaults: { readonly queryExpansion: number; readonly rerank?: number } = {
      queryExpansion: 0,
    },
  ) {
    assertSameModel(
      store.modelId,
      embedder.modelId,
      `Query with --model ${store.modelId}, or re-index with \`ompf index DIR --reindex\`.`,
    );
  }

  async searchByImage(bytes: Uint8Array, options: SearchOptions = {}): Promise<SearchHit[]> {
    const valid = validateSearchOptions(this.withDefaults(options));
    const image = await this.preprocessor.prepare(bytes);
    const [vector] = await this.embedder.embed([image]);
    if (!vector) throw new Error('The embedder returned no vector.');
    return this.nearest(vector, valid, undefined);
  }

  /**
   * Uses the stored embedding (no re-embedding; the model's raw vector, never the DBA-augmented one,
   * so the query is the same as an upload of that image) and leaves the image itself out.
   */
  async searchByKey(ref: ImageRef, options: SearchOptions = {}): Promise<SearchHit[]> {
    const valid = validateSearchOptions(this.withDefaults(options));
    validateKey(ref.key);
    const source = ref.source ?? (await this.uniqueSource(ref.key));
    const vector = await this.store.getEmbedding(source, ref.key);
    if (!vector) throw notIndexed(ref.key);
    return this.nearest(vector, valid, { source, key: ref.key });
  }

  private async uniqueSource(key: string): Promise<string> {
    const sources = await this.store.findSources(key);
    if (sources.length === 0) throw notIndexed(key);
    if (sources.length > 1) {
      throw new InvalidInputError(`The key '${key}' exists in ${sources.length} sources; name one.`, {
        hint: 'Pass the source (bucket or gallery folder) with the key.',
        context: { sources },
      });
    }
    return sources[0]!;
  }

  private withDefaults(options: SearchOptions): SearchOptions {
    return {
      ...options,
      queryExpansion: options.queryExpansion ?? this.defaults.queryExpansion,
      rerank: options.rerank ?? this.defaults.rerank ?? 0,
    };
  }

  private async nearest(
    vector: Float32Array,
    options: ValidSearchOptions,
    exclude: { source: string; key: string } | undefined,
  ): Promise<SearchHit[]> {
    const query = { ...options, exclude, limit: Math.max(options.limit, options.rerank) };
    let searched = vector;
    let neighbours = await this.store.nearest({
      ...query,
      vector,
      limit: Math.max(query.limit, options.queryExpansion),
    });
    if (options.queryExpansion > 0 && neighbours.length > 0) {
      const expandWith = await Promise.all(
        neighbours
          .slice(0, options.queryExpansion)
          .map((n) => this.store.getSearchedEmbedding(n.source, n.key)),
      );
      const expanded = expandQuery(
        vector,
        expandWith.filter((v): v is Float32Array => v !== undefined),
      );
      searched = expanded;
      neighbours = await this.store.nearest({ ...query, vector: expanded });
    }
    if (options.rerank > 0 && neighbours.length > 1) {
      neighbours = await rerankNeighbours(this.store, searched, neighbours.slice(0, options.rerank));
    }
    neighbours = promoteExactCopies(neighbours, options.metric).slice(0, options.limit);
    return neighbours.map((n) => ({ ...n, score: scoreOf(n.distance, options.metric) }));
  }
}

/**
 * The candidates in k-reciprocal order (lib/core/reranking.ts), compared through the vectors the store
 * ranks by (augmented with DBA on), as `ompf eval` measures it. A candidate deleted meanwhile drops out.
 */
export async function rerankNeighbours<T extends Neighbour>(
  store: Pick<VectorStore, 'getSearchedEmbeddings'>,
  query: Float32Array,
  candidates: readonly T[],
): Promise<T[]> {
  const vectors = await store.getSearchedEmbeddings(candidates);
  const kept = candidates.flatMap((candidate, i) => {
    const stored = vectors[i];
    return stored ? [{ candidate, vector: stored }] : [];
  });
  const points = [query, ...kept.map((k) => k.vector)];
  const order = rerankOrder(similarityMatrix(points), points.length, rerankWith(kept.length));
  return order.map((i) => kept[i]!.candidate);
}

/**
 * Below this distance two vectors are the same picture (what halfvec storage leaves of an identical
 * image: about 1e-6 measured; re-encoded copies start around 1e-3).
 */
export const IDENTICAL_DISTANCE = 1e-4;

/**
 * Hits come ranked by the searched vectors (DBA-augmented ones by default) and carry the distance to
 * each image's own vector: an identical picture is moved to the front, whatever the ranking said.
 */
function promoteExactCopies<T extends { distance: number }>(hits: readonly T[], metric: DistanceMetric): T[] {
  const identical = (h: T) =>
    (metric === 'euclidean' ? (h.distance * h.distance) / 2 : h.distance) < IDENTICAL_DISTANCE;
  const same = hits.filter(identical);
  return same.length === 0 ? [...hits] : [...same, ...hits.filter((h) => !identical(h))];
}

/** Map a distance between unit vectors to 0..1 (1 = identical). */
export function scoreOf(distance: number, metric: DistanceMetric): number {
  const cosineDistance = metric === 'euclidean' ? (distance * distance) / 2 : distance;
  return Math.min(1, Math.max(0, 1 - cosineDistance / 2));
}

function notIndexed(key: string): NotFoundError {
  return new NotFoundError(`No indexed image has the key '${key}'.`, {
    hint: 'Check the key (keys are paths relative to the gallery root), or index the image first.',
    context: { key },
  });
}
