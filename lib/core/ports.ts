/**
 * Ports: the only ways the core talks to the outside world. Adapters (sharp, onnxruntime, PostgreSQL,
 * PGlite, S3, the file system) implement them; a composition root per runtime picks the adapters.
 */

/** An image decoded and preprocessed into the network's input layout. */
export interface PreparedImage {
  /** NCHW float32 for one image: 3 x height x width (3 x crop x crop unless tensorShape says), normalised. */
  readonly tensor: Float32Array;
  /** The tensor's height and width when it is not the model's square crop ('whole' framing). */
  readonly tensorShape?: TensorShape | undefined;
  /** Size of the decoded image after EXIF orientation, before resizing. */
  readonly width: number;
  readonly height: number;
  /**
   * The image's 64-bit perceptual hash (pHash: DCT of a 32 x 32 grey thumbnail, as 64 '0'/'1'), computed
   * on demand from the decoded pixels (no second decode): indexing asks for it, queries do not.
   */
  readonly perceptualHash?: (() => Promise<string>) | undefined;
}

export interface TensorShape {
  readonly height: number;
  readonly width: number;
}

export interface ImagePreprocessor {
  /**
   * Decode and preprocess. Throws UnsupportedImageError for bytes that are not a decodable image
   * and TooLargeError for images over the pixel or byte limit.
   */
  prepare(bytes: Uint8Array): Promise<PreparedImage>;
}

export interface Embedder {
  readonly modelId: string;
  readonly dimension: number;
  /** One L2-normalised vector per input, in input order. */
  embed(images: readonly PreparedImage[]): Promise<Float32Array[]>;
}

export type DistanceMetric = 'cosine' | 'euclidean';

export interface StoredImage {
  readonly source: string;
  readonly key: string;
  readonly contentHash: string;
  readonly etag?: string | undefined;
  readonly versionId?: string | undefined;
  readonly sequencer?: string | undefined;
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
  /** 64 '0'/'1' (PreparedImage.perceptualHash); absent for images indexed before schema v7. */
  readonly perceptualHash?: string | undefined;
}

export interface ImageRecord extends StoredImage {
  readonly embedding: Float32Array;
}

export interface NearestQuery {
  readonly vector: Float32Array;
  readonly limit: number;
  readonly metric: DistanceMetric;
  readonly keyPrefix?: string | undefined;
  /** Leave this image out of the results (query by an indexed image). */
  readonly exclude?: { readonly source: string; readonly key: string } | undefined;
  /** HNSW candidate list size (pgvector hnsw.ef_search, 1..1000); default max(40, 2 x limit). */
  readonly efSearch?: number | undefined;
}

export interface Neighbour {
  readonly source: string;
  readonly key: string;
  readonly distance: number;
}

export interface IndexFailure {
  readonly source: string;
  readonly key: string;
  readonly reason: string;
  readonly failedAt: Date;
}

export interface StoreStats {
  readonly modelId: string;
  readonly dimension: number;
  readonly images: number;
  readonly failures: number;
  readonly sources: readonly { readonly source: string; readonly images: number }[];
  readonly engine: string;
  /** exact scan; HNSW index (PostgreSQL); binary candidates re-ranked exactly (PGlite, large stores). */
  readonly searchStrategy: 'exact' | 'hnsw' | 'binary';
}

/** An image as duplicate detection sees it. */
export interface DuplicateImage {
  readonly source: string;
  readonly key: string;
  readonly contentHash: string;
  readonly perceptualHash: string | undefined;
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
}

/**
 * When two images are duplicates (lib/core/duplicates.ts): their own vectors within `threshold`, or
 * their perceptual hashes within `hashBits` (Hamming distance) while their vectors are within
 * `hashCeiling`; the candidates are the neighbour lists, so a hash match needs the vectors to agree
 * that the pair is close. Equal content hashes always are.
 */
export interface DuplicateRule {
  readonly threshold: number;
  readonly hashBits: number;
  readonly hashCeiling: number;
}

/**
 * The images that have a duplicate within the threshold, and the pairs (indexes into `images`): images
 * within the threshold of each other by their own vectors, or with equal content hashes.
 */
export interface DuplicateGraph {
  readonly images: readonly DuplicateImage[];
  readonly edges: readonly { readonly a: number; readonly b: number }[];
  /** False when the store keeps no neighbour lists (DBA off): only equal content hashes are edges. */
  readonly nearDuplicates: boolean;
}

/** One key as the index holds it: an image, or a failure recorded for the object version `etag`. */
export interface IndexedKey {
  readonly key: string;
  readonly etag: string | undefined;
  readonly failed: boolean;
}

/** A cloud stage's indexes (one per model id): which answers queries, which is being built. */
export interface CatalogueEntry {
  readonly modelId: string;
  /** The database schema holding the index's tables. */
  readonly schema: string;
  readonly dimension: number;
  readonly state: 'building' | 'active' | 'retired';
  readonly createdAt: Date;
  readonly activatedAt: Date | undefined;
}

export interface ReconcileRunCounts {
  /** Objects listed that the indexer would index (image suffixes, outside the upload prefix). */
  readonly listed: number;
  /** Listed, not in the index. */
  readonly missing: number;
  /** Listed with another ETag than the index holds. */
  readonly changed: number;
  /** In the index, not listed. */
  readonly gone: number;
  readonly unchanged: number;
  /** Checks sent to the indexing queue (missing + changed + gone). */
  readonly enqueued: number;
}

export interface ReconcileRun {
  readonly id: string;
  readonly modelId: string;
  readonly trigger: string;
  readonly startedAt: Date;
  readonly finishedAt: Date | undefined;
  readonly counts: ReconcileRunCounts;
  /** This run found the building index caught up and switched queries to it. */
  readonly switched: boolean;
  readonly error: string | undefined;
}

/** The last error of an object event that threw (by SQS message id), for the dead-letter listing. */
export interface EventErrorRecord {
  readonly messageId: string;
  readonly source?: string | undefined;
  readonly key?: string | undefined;
  readonly error: string;
  readonly attempts?: number;
  readonly lastFailedAt?: Date;
}

/** The catalogue operations reconciliation needs (the adapter: lib/adapters/store/index-catalogue.ts). */
export interface IndexCatalogue {
  entries(): Promise<CatalogueEntry[]>;
  startRun(modelId: string, trigger: string): Promise<string>;
  finishRun(
    id: string,
    counts: ReconcileRunCounts,
    outcome: { switched: boolean; error?: string },
  ): Promise<void>;
  /** Make the building index `modelId` the active one; false when it is not the building one. */
  switchTo(modelId: string): Promise<boolean>;
}

/**
 * The result of a write ordered by an event sequencer: applied, or refused because the key already
 * reflects an event at or after this one (`current`, the newest sequencer applied).
 */
export type SequencedWrite =
  | {
      readonly applied: true;
      /** A row existed before (an image replaced or removed). */ readonly existed: boolean;
    }
  | { readonly applied: false; readonly current: string };

/**
 * A vector store bound to one model. Opening a store with another model than the one it was built
 * with fails with ModelMismatchError.
 */
export interface VectorStore {
  readonly modelId: string;
  readonly dimension: number;
  /** Idempotent insert-or-replace keyed on (source, key). Clears any failure recorded for the key. */
  upsertMany(records: readonly ImageRecord[]): Promise<void>;
  /** Content hashes of the given keys already stored, for skipping unchanged files. */
  contentHashes(source: string, keys: readonly string[]): Promise<Map<string, string>>;
  listKeys(source: string): Promise<string[]>;
  /**
   * The model's embedding of a stored image: what a query by this image searches with. With
   * database-side augmentation on, this is the raw vector, not the augmented one that is searched.
   */
  getEmbedding(source: string, key: string): Promise<Float32Array | undefined>;
  /**
   * The vector searches compare queries with: the augmented one with DBA on, else the embedding.
   * Query expansion averages these, as `ompf eval` measures it.
   */
  getSearchedEmbedding(source: string, key: string): Promise<Float32Array | undefined>;
  /** The searched vectors of many images in one read, in the order asked; undefined where none is stored. */
  getSearchedEmbeddings(
    refs: readonly { readonly source: string; readonly key: string }[],
  ): Promise<(Float32Array | undefined)[]>;
  /** Source(s) holding `key`, for queries by key that do not name a source. */
  findSources(key: string): Promise<string[]>;
  remove(source: string, keys: readonly string[]): Promise<number>;
  nearest(query: NearestQuery): Promise<Neighbour[]>;
  /** `etag`: of the object version that failed, so reconciliation retries it only once it changes. */
  recordFailure(source: string, key: string, reason: string, etag?: string): Promise<void>;
  /**
   * What the index holds for the keys of `source` in the key range (after, upTo] (byte order, as S3
   * lists keys; `after` undefined: from the start, `upTo` undefined: to the end), images and recorded
   * failures alike, in key order: what reconciliation compares a page of a bucket listing with.
   */
  indexedKey(source: string, key: string): Promise<IndexedKey | undefined>;
  /** Duplicate pairs by `rule` (cosine distance of the images' own vectors, perceptual hashes). */
  duplicateGraph(rule: DuplicateRule): Promise<DuplicateGraph>;
  /** Cosine distances between the own vectors of `from` and each of `to` (NaN for one not stored). */
  distancesFrom(
    from: { readonly source: string; readonly key: string },
    to: readonly { readonly source: string; readonly key: string }[],
  ): Promise<number[]>;
  indexedRange(source: string, after: string | undefined, upTo: string | undefined): Promise<IndexedKey[]>;
  /**
   * Compare-and-set writes for reconciliation, which learns of objects from a listing, not from an
   * event with a sequencer: applied only while the newest sequencer applied to the key is still
   * `expected` (undefined: none), so any event applied meanwhile wins. The row keeps `expected` as its
   * sequencer, so every later event of the key still orders after it.
   */
  upsertIfUnchanged(record: ImageRecord, expected: string | undefined): Promise<SequencedWrite>;
  removeIfUnchanged(source: string, key: string, expected: string | undefined): Promise<SequencedWrite>;
  /**
   * Event-ordered writes for object stores that deliver events at least once and out of order (S3).
   * The newest sequencer applied to (source, key): its image's, or its deletion's (a tombstone).
   */
  latestSequencer(source: string, key: string): Promise<string | undefined>;
  /** Upsert only when `record.sequencer` is newer than every event applied to the key. */
  upsertIfNewer(record: ImageRecord & { readonly sequencer: string }): Promise<SequencedWrite>;
  /** Remove and leave a tombstone, only when `sequencer` is newer than every event applied to the key. */
  removeIfNewer(source: string, key: string, sequencer: string): Promise<SequencedWrite>;
  /** Forget tombstones older than `before` (once no delayed event can still arrive). */
  pruneTombstones(before: Date): Promise<number>;
  listFailures(source?: string): Promise<IndexFailure[]>;
  /**
   * Recompute every stored vector's database-side augmentation from scratch (it is maintained
   * incrementally on every write; this resets the drift of approximate search paths). Returns the
   * number of rows rewritten; 0 when augmentation is off.
   */
  rebuildAugmentation(): Promise<number>;
  /** Build or drop the ANN index to suit the current size and engine; call after bulk loads. */
  optimise(): Promise<'exact' | 'hnsw' | 'binary'>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}
