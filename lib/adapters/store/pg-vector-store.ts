import type {
  DuplicateGraph,
  DuplicateRule,
  ImageRecord,
  IndexedKey,
  IndexFailure,
  NearestQuery,
  Neighbour,
  SequencedWrite,
  StoreStats,
  VectorStore,
} from '../../core/ports';
import { Augmentation } from './augmentation';
import { DuplicatePairs } from './duplicate-pairs';
import { FailuresAndStats } from './failures-and-stats';
import { RowReads } from './row-reads';
import { RowWrites } from './row-writes';
import { detectStrategy, SearchStrategies, type SearchStrategy } from './search-strategies';
import { SequencedWrites } from './sequenced-writes';
import type { SqlClient } from './sql-client';
import { dbaNeighbours, type StoreContext, type StoreOptions } from './store-context';
import { dropSchema, openSchema } from './store-schema';

export { DBA_CANDIDATES } from './augmentation';
export {
  BINARY_MIN_ROWS,
  BINARY_OVERSAMPLING,
  binaryCandidates,
  defaultEfSearch,
  type SearchStrategy,
} from './search-strategies';
export type { StoreOptions } from './store-context';

/**
 * The vector store over PostgreSQL + pgvector, for both engines: the same SQL text runs on PGlite and
 * on a PostgreSQL server. Vectors travel in pgvector's binary halfvec format (halfvec-binary.ts),
 * which both drivers send as binary parameters. Embeddings are stored as halfvec(D): pgvector
 * indexes `vector` only up to 2,000 dimensions, halfvec up to 4,000, and it halves storage.
 *
 * A facade: each concern lives in its own module with its SQL, and this class only wires them and
 * presents the VectorStore port.
 *   store-schema.ts       opening, migrations, the model identity check, recreate
 *   search-strategies.ts  exact / binary candidates / HNSW search and the switches between them
 *   augmentation.ts       DBA neighbour lists and augmented vectors, kept by every write
 *   row-writes.ts         insert-or-replace and removal of rows
 *   sequenced-writes.ts   S3-event-ordered writes: sequencers and tombstones
 *   row-reads.ts          content hashes, keys, a row's vectors, distances to own vectors
 *   failures-and-stats.ts the failure list and the counts
 *   duplicate-pairs.ts    near-duplicate pairs from the DBA lists and content hashes
 */
export class PgVectorStore implements VectorStore {
  private readonly search: SearchStrategies;
  private readonly augmentation: Augmentation;
  private readonly rows: RowWrites;
  private readonly sequenced: SequencedWrites;
  private readonly reads: RowReads;
  private readonly failures: FailuresAndStats;
  private readonly duplicates: DuplicatePairs;

  private constructor(
    private readonly context: StoreContext,
    strategy: SearchStrategy,
  ) {
    this.search = new SearchStrategies(context, strategy);
    this.augmentation = new Augmentation(context, this.search);
    this.rows = new RowWrites(context, this.search, this.augmentation);
    this.sequenced = new SequencedWrites(context, this.search, this.augmentation, this.rows);
    this.reads = new RowReads(context.client);
    this.failures = new FailuresAndStats(context, this.search);
    this.duplicates = new DuplicatePairs(context, this.reads);
  }

  get modelId(): string {
    return this.context.options.modelId;
  }

  get dimension(): number {
    return this.context.options.dimension;
  }

  /** DBA neighbours per stored vector; 0 = off. */
  get dba(): number {
    return dbaNeighbours(this.context.options);
  }

  /**
   * Migrate and open. A store created for another model or dimension refuses to open: its vectors
   * cannot be compared with this model's.
   */
  static async open(client: SqlClient, options: StoreOptions): Promise<PgVectorStore> {
    const halfvecOid = await openSchema(client, options);
    return new PgVectorStore({ client, options, halfvecOid }, await detectStrategy(client));
  }

  /** Drop everything this store holds and recreate it for `options.modelId` (re-index after a model change). */
  static async recreate(client: SqlClient, options: StoreOptions): Promise<PgVectorStore> {
    await dropSchema(client);
    return PgVectorStore.open(client, options);
  }

  upsertMany(records: readonly ImageRecord[]): Promise<void> {
    return this.rows.upsertMany(records);
  }

  remove(source: string, keys: readonly string[]): Promise<number> {
    return this.rows.remove(source, keys);
  }

  /**
   * Recompute every row's DBA list and augmented vector from scratch (after a bulk load, or to reset
   * the drift of approximate maintenance on large stores). Returns the number of rows rewritten.
   */
  rebuildAugmentation(): Promise<number> {
    return this.augmentation.rebuild();
  }

  /** Async, so a bad vector rejects like every other failure instead of throwing at the call. */
  async nearest(query: NearestQuery): Promise<Neighbour[]> {
    this.rows.assertVector(query.vector);
    return this.search.nearest(query);
  }

  /** Switch to the search strategy the store's size calls for, and maintain the tables. */
  optimise(): Promise<SearchStrategy> {
    return this.search.optimise();
  }

  contentHashes(source: string, keys: readonly string[]): Promise<Map<string, string>> {
    return this.reads.contentHashes(source, keys);
  }

  listKeys(source: string): Promise<string[]> {
    return this.reads.listKeys(source);
  }

  getEmbedding(source: string, key: string): Promise<Float32Array | undefined> {
    return this.reads.getEmbedding(source, key);
  }

  getSearchedEmbeddings(
    refs: readonly { readonly source: string; readonly key: string }[],
  ): Promise<(Float32Array | undefined)[]> {
    return this.reads.getSearchedEmbeddings(refs);
  }

  getSearchedEmbedding(source: string, key: string): Promise<Float32Array | undefined> {
    return this.reads.getSearchedEmbedding(source, key);
  }

  findSources(key: string): Promise<string[]> {
    return this.reads.findSources(key);
  }

  latestSequencer(source: string, key: string): Promise<string | undefined> {
    return this.sequenced.latestSequencer(source, key);
  }

  upsertIfNewer(record: ImageRecord & { readonly sequencer: string }): Promise<SequencedWrite> {
    return this.sequenced.upsertIfNewer(record);
  }

  removeIfNewer(source: string, key: string, sequencer: string): Promise<SequencedWrite> {
    return this.sequenced.removeIfNewer(source, key, sequencer);
  }

  pruneTombstones(before: Date): Promise<number> {
    return this.sequenced.pruneTombstones(before);
  }

  recordFailure(source: string, key: string, reason: string, etag?: string): Promise<void> {
    return this.failures.recordFailure(source, key, reason, etag);
  }

  duplicateGraph(rule: DuplicateRule): Promise<DuplicateGraph> {
    return this.duplicates.graph(rule);
  }

  distancesFrom(
    from: { readonly source: string; readonly key: string },
    to: readonly { readonly source: string; readonly key: string }[],
  ): Promise<number[]> {
    return this.duplicates.distancesFrom(from, to);
  }

  indexedKey(source: string, key: string): Promise<IndexedKey | undefined> {
    return this.reads.indexedKey(source, key);
  }

  indexedRange(source: string, after: string | undefined, upTo: string | undefined): Promise<IndexedKey[]> {
    return this.reads.indexedRange(source, after, upTo);
  }

  upsertIfUnchanged(record: ImageRecord, expected: string | undefined): Promise<SequencedWrite> {
    return this.sequenced.upsertIfUnchanged(record, expected);
  }

  removeIfUnchanged(source: string, key: string, expected: string | undefined): Promise<SequencedWrite> {
    return this.sequenced.removeIfUnchanged(source, key, expected);
  }

  listFailures(source?: string): Promise<IndexFailure[]> {
    return this.failures.listFailures(source);
  }

  stats(): Promise<StoreStats> {
    return this.failures.stats();
  }

  async close(): Promise<void> {
    await this.context.client.close();
  }
}
