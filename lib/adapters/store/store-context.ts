import type { SqlClient } from './sql-client';

/**
 * What the store's concern modules share: the options the store was opened with, and the handle to the
 * database. Owns no behaviour; each module (search-strategies, augmentation, row-writes,
 * sequenced-writes, row-reads, failures-and-stats) keeps its own SQL beside the code that runs it.
 */
export interface StoreOptions {
  readonly modelId: string;
  readonly dimension: number;
  /**
   * Build an HNSW index on PostgreSQL once the store holds this many images. Below it, exact search
   * is fast enough and always right. PGlite never builds one: measured here, an HNSW build over 20k
   * halfvec(2048) rows took 38 minutes in PGlite (85 s natively) and inserts with the index present
   * ran at 5 rows/s, while an exact top-10 over the same 20k rows took 361 ms.
   */
  readonly hnswMinRows: number;
  /** maintenance_work_mem for index builds: builds are much faster when the graph fits. */
  readonly indexBuildMemory: string;
  /** On PGlite, switch to binary candidates + exact re-ranking at this many images (BINARY_MIN_ROWS). */
  readonly binaryMinRows?: number;
  /** Binary strategy: Hamming candidates per requested result (BINARY_OVERSAMPLING; at least 64). */
  readonly binaryOversampling?: number;
  /**
   * Database-side augmentation with this many neighbours (0 or absent: off, and the store behaves as
   * before v4: `embedding` is the model output and nothing else is maintained). The caller records it
   * in `modelId` (transformSuffix: '+dba3'), so a store built with another k refuses to open.
   */
  readonly dba?: number;
}

export interface StoreContext {
  readonly client: SqlClient;
  readonly options: StoreOptions;
  /** halfvec's type OID in this database, for binary halfvec[] parameters (halfvec-binary.ts). */
  readonly halfvecOid: number;
}

/** DBA neighbours per stored vector; 0 = off. */
export function dbaNeighbours(options: StoreOptions): number {
  return options.dba ?? 0;
}
