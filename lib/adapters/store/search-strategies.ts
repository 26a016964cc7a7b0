import type { NearestQuery, Neighbour } from '../../core/ports';
import { encodeHalfvec } from './halfvec-binary';
import { ownDistances, refKey } from './row-reads';
import type { SqlClient, SqlExecutor } from './sql-client';
import { dbaNeighbours, type StoreContext } from './store-context';

/**
 * How the store searches, and when it switches: exact scans for small stores; on PostgreSQL an HNSW
 * index over halfvec once the store passes hnswMinRows; on PGlite binary candidates (HNSW over the
 * centred sign bits, by Hamming distance) re-ranked exactly once it passes binaryMinRows. Owns the
 * search SQL, the indexes `images_embedding_hnsw` and `images_embedding_bits_hnsw`, the learned centre
 * and the maintenance VACUUM/ANALYZE of `optimise()`. Must not write rows or neighbour lists: DBA
 * maintenance (augmentation.ts) only asks which strategy is current and reuses `useHnsw`.
 */

export type SearchStrategy = 'exact' | 'hnsw' | 'binary';

/**
 * Default binaryMinRows. Measured on PGlite (top-10 p50, clustered vectors, HNSW over the bits): at
 * 2048-d exact 8.8 ms at 250 rows, 17 ms at 500, 65 ms at 2,000, against 4.6-6.9 ms with binary
 * candidates; 1280-d alike (6.2 vs 3.9 ms at 250). With DBA on, each write searches too, so the switch
 * also speeds indexing (ResNet50 layers 14.7 -> 17.3 images/s over the 1,348-image set).
 */
export const BINARY_MIN_ROWS = 250;

/**
 * Default binaryOversampling: Hamming candidates per requested result, re-ranked exactly. Measured on
 * real embeddings (MobileNetV2, 1280-d, the 1,348 dev photos and 7 augmentations of each: 10,784
 * images, 270 queries, their own image excluded; `npm run bench -- --mode full`, recall stage),
 * recall@10 against exact search: 0.993 at 64 candidates, 0.996 at 100; recall@20 0.986 at 6x, 0.996
 * at 10x. Each candidate costs about 20 us to re-rank at 2048-d in PGlite (detoast, half -> float),
 * so 10x oversampling cost 1-3 ms more per top-10 query than 6x (README, "Benchmarks").
 */
export const BINARY_OVERSAMPLING = 6;

/** Fewest Hamming candidates a binary search re-ranks, however small the limit. */
const BINARY_MIN_CANDIDATES = 64;

/** Hamming candidates re-ranked exactly for a top-`limit` query. */
export function binaryCandidates(limit: number, oversampling = BINARY_OVERSAMPLING): number {
  return Math.max(BINARY_MIN_CANDIDATES, oversampling * limit);
}

const HNSW_INDEX = 'images_embedding_hnsw';

/**
 * The binary strategy's candidate index: HNSW over the sign bits by Hamming distance. Measured on PGlite
 * at 10k x 2048 (clustered vectors): a sequential Hamming scan for 100 candidates takes 6-10 ms (the
 * executor's per-row cost, not the popcount), the index 1-2 ms at the same recall@10 after re-ranking;
 * it builds in about 4 s and costs about 0.4 ms per inserted row. HNSW over halfvec(2048) itself is no
 * option there: 485 s to build and 13 ms per query at ef 40 (each 2048-d halfvec distance costs about
 * 40 us in WebAssembly).
 */
const BITS_HNSW_INDEX = 'images_embedding_bits_hnsw';

/** The strategy of one open store; mutable, since optimise() and growth switch it. */
export class SearchStrategies {
  constructor(
    private readonly context: StoreContext,
    private strategy: SearchStrategy,
  ) {}

  get current(): SearchStrategy {
    return this.strategy;
  }

  async nearest(query: NearestQuery): Promise<Neighbour[]> {
    const params = [
      encodeHalfvec(query.vector),
      query.keyPrefix ?? null,
      query.exclude?.source ?? null,
      query.exclude?.key ?? null,
      query.limit,
    ];
    const filter = `($2::text IS NULL OR starts_with(key, $2::text))
                AND NOT (source IS NOT DISTINCT FROM $3::text AND key IS NOT DISTINCT FROM $4::text)`;
    type Row = { source: string; key: string; distance: number };
    let rows: Row[];
    if (this.strategy === 'hnsw') {
      rows = await this.context.client.transaction((tx) =>
        this.nearestWithHnsw(tx, filter, params, query.efSearch ?? defaultEfSearch(query.limit)),
      );
    } else if (this.strategy === 'binary') {
      // Hamming distance on the centred sign bits picks candidates through BITS_HNSW_INDEX (filter
      // applied there, iterative scans keep going until enough rows pass it); exact cosine distance
      // re-ranks them. The re-rank compares float32 vectors: PGlite's WebAssembly pgvector converts
      // half floats in software (about 10 ns each), and halfvec <=> halfvec converts both sides for
      // every row, the query 100 times over. Casting the query once and each candidate once halves
      // the re-rank at 10k x 2048 (3.6 -> 1.9 ms for 100 rows) with the same distances (half -> float
      // is exact, and the sums run in float either way).
      const candidates = binaryCandidates(query.limit, this.context.options.binaryOversampling);
      rows = await this.context.client.transaction(async (tx) => {
        await useHnsw(tx, Math.max(query.efSearch ?? defaultEfSearch(query.limit), candidates));
        return tx.query<Row>(
          `WITH query AS MATERIALIZED (
             SELECT binary_quantize($1::halfvec - centre) AS bits FROM ompf_store),
           candidates AS MATERIALIZED (
             SELECT id FROM images
              WHERE ${filter}
              ORDER BY embedding_bits <~> (SELECT bits FROM query)
              LIMIT $6)
           SELECT source, key, embedding::vector <=> $1::halfvec::vector AS distance
             FROM images JOIN candidates USING (id)
            ORDER BY distance, source, key
            LIMIT $5`,
          [...params, candidates],
        );
      });
    } else {
      rows = await this.context.client.query<Row>(
        `SELECT source, key, embedding <=> $1::halfvec AS distance FROM images
          WHERE ${filter}
          ORDER BY distance, source, key
          LIMIT $5`,
        params,
      );
    }
    // Ranked by the searched vectors (augmented ones with DBA on); the distance a user sees is to each
    // image's own vector, so an identical picture is at 0 whatever the ranking compared.
    const own =
      dbaNeighbours(this.context.options) > 0
        ? await ownDistances(this.context.client, query.vector, rows)
        : undefined;
    return rows.map((row) => {
      const distance = own?.get(refKey(row)) ?? row.distance;
      return {
        source: row.source,
        key: row.key,
        // Stored vectors are unit length, so Euclidean distance follows from cosine distance
        // (|a-b|^2 = 2 - 2cos = 2 * cosine distance) and one index serves both metrics.
        distance: query.metric === 'euclidean' ? Math.sqrt(Math.max(0, 2 * distance)) : distance,
      };
    });
  }

  /**
   * HNSW path: the index orders by distance alone, so take the candidates in index order and re-sort
   * them by (distance, source, key) for deterministic ties. Iterative scans (pgvector >= 0.8) keep
   * scanning until enough rows pass the filter, so a prefix filter still returns N rows when N exist.
   */
  private async nearestWithHnsw(
    tx: SqlExecutor,
    filter: string,
    params: unknown[],
    efSearch: number,
  ): Promise<{ source: string; key: string; distance: number }[]> {
    await useHnsw(tx, efSearch);
    return tx.query(
      `WITH candidates AS MATERIALIZED (
         SELECT source, key, embedding <=> $1::halfvec AS distance FROM images
          WHERE ${filter}
          ORDER BY embedding <=> $1::halfvec
          LIMIT $5)
       SELECT source, key, distance FROM candidates ORDER BY distance, source, key`,
      params,
    );
  }

  async optimise(): Promise<SearchStrategy> {
    const [{ count } = { count: 0 }] = await this.context.client.query<{ count: number }>(
      'SELECT count(*)::integer AS count FROM images',
    );
    if (
      this.context.client.engine === 'postgresql' &&
      count >= this.context.options.hnswMinRows &&
      this.strategy === 'exact'
    ) {
      await this.context.client.transaction(async (tx) => {
        await tx.query("SELECT set_config('maintenance_work_mem', $1, true)", [
          this.context.options.indexBuildMemory,
        ]);
        await tx.exec(
          `CREATE INDEX IF NOT EXISTS ${HNSW_INDEX} ON images USING hnsw (embedding halfvec_cosine_ops)`,
        );
      });
      this.strategy = 'hnsw';
    }
    if (
      this.context.client.engine === 'pglite' &&
      count >= (this.context.options.binaryMinRows ?? BINARY_MIN_ROWS) &&
      (this.strategy === 'exact' || (this.strategy === 'binary' && (await this.centreOutgrown(count))))
    ) {
      await this.learnCentre(); // vacuums too
    } else {
      if (this.strategy === 'binary') await this.ensureBitsIndex();
      // DBA rewrites rows as their neighbours change, leaving dead versions behind; PGlite runs no
      // autovacuum, so the store reclaims them here (after each `ompf index`). PostgreSQL's does.
      if (dbaNeighbours(this.context.options) > 0 && this.context.client.engine === 'pglite')
        await this.context.client.exec('VACUUM images');
    }
    await this.context.client.exec('ANALYZE images');
    return this.strategy;
  }

  /**
   * Learns the centre from the gallery as it is now and quantises every row against it; later rows are
   * quantised against it as they arrive, and optimise() learns it again once the gallery has doubled
   * (centreOutgrown: amortised, each row is re-quantised O(1) times on average). A stale centre costs a
   * little recall, never correctness: re-ranking is exact. The index is dropped first and built once
   * after the update: updating 10k rows with it in place would insert each one into the graph. Ends
   * with a VACUUM, which also reclaims what DBA rewrites left.
   */
  private async learnCentre(): Promise<void> {
    await this.context.client.transaction(async (tx) => {
      await tx.exec(`DROP INDEX IF EXISTS ${BITS_HNSW_INDEX}`);
      await tx.exec(
        'UPDATE ompf_store SET centre = (SELECT avg(embedding) FROM images), centre_rows = (SELECT count(*) FROM images)',
      );
      await tx.exec(
        'UPDATE images SET embedding_bits = binary_quantize(embedding - (SELECT centre FROM ompf_store))',
      );
    });
    this.strategy = 'binary';
    await this.ensureBitsIndex();
    // Every row was rewritten: reclaim the old versions so the table does not stay twice its size.
    await this.context.client.exec('VACUUM images');
  }

  private async centreOutgrown(count: number): Promise<boolean> {
    const [store] = await this.context.client.query<{ rows: number | null }>(
      'SELECT centre_rows AS rows FROM ompf_store',
    );
    return count >= 2 * (store?.rows ?? 0);
  }

  /**
   * Builds BITS_HNSW_INDEX after the bits are filled (one bulk build, not row by row). Idempotent, so
   * optimise() also gives it to binary stores written before the index existed.
   */
  private async ensureBitsIndex(): Promise<void> {
    await this.context.client.transaction(async (tx) => {
      await tx.query("SELECT set_config('maintenance_work_mem', $1, true)", [
        this.context.options.indexBuildMemory,
      ]);
      await tx.exec(
        `CREATE INDEX IF NOT EXISTS ${BITS_HNSW_INDEX} ON images USING hnsw (embedding_bits bit_hamming_ops)`,
      );
    });
  }

  /**
   * With DBA on, every write searches like a query does, so on PGlite the store moves to binary
   * candidates as soon as it passes binaryMinRows instead of waiting for optimise(): exact maintenance
   * costs one full scan per written image (measured in README, "Retrieval quality"), and a long bulk
   * load that stayed exact would grow quadratically. Runs in its own transaction, before the write.
   */
  async promoteForAugmentation(): Promise<void> {
    if (
      dbaNeighbours(this.context.options) === 0 ||
      this.context.client.engine !== 'pglite' ||
      this.strategy !== 'exact'
    )
      return;
    const [{ count } = { count: 0 }] = await this.context.client.query<{ count: number }>(
      'SELECT count(*)::integer AS count FROM images',
    );
    if (count >= (this.context.options.binaryMinRows ?? BINARY_MIN_ROWS)) await this.learnCentre();
  }
}

/**
 * ef_search when the caller names none: pgvector's own default (40), or twice N for larger N. Measured
 * at 100k x 2048 on PostgreSQL 15 (`npm run bench -- --mode full`, clustered vectors): ef 40 p50 about
 * 5 ms at recall@10 0.99-1.0, ef 100 about 9 ms, ef 200 about 18 ms; real embeddings reach recall@10
 * 1.0 from ef 20. The 10 ms query goal leaves no room for 100 as a default.
 */
export function defaultEfSearch(limit: number): number {
  return Math.max(40, 2 * limit);
}

/**
 * Transaction-local settings for a search through the HNSW index: ef_search (clamped to pgvector's
 * 1..1000), iterative scans so filters still return N rows, and no sequential scan. The last one is
 * not cosmetic: pgvector 0.8's cost estimate grows with ef_search, and at 100k x 2048 rows the planner
 * switched to a parallel exact scan for ef_search 99-149 (350 ms instead of about 6 ms; measured by
 * `npm run bench -- --mode full`). Once the store has built the index (optimise), it is always the
 * faster path; a query the index cannot serve still falls back to a scan.
 */
export async function useHnsw(tx: SqlExecutor, efSearch: number): Promise<void> {
  await tx.query(
    `SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),
            set_config('enable_seqscan', 'off', true)`,
    [String(Math.min(1000, Math.max(1, Math.round(efSearch))))],
  );
}

export async function detectStrategy(client: SqlClient): Promise<SearchStrategy> {
  if (await hasHnswIndex(client)) return 'hnsw';
  const [store] = await client.query<{ binary: boolean }>(
    'SELECT centre IS NOT NULL AS binary FROM ompf_store',
  );
  return store?.binary ? 'binary' : 'exact';
}

async function hasHnswIndex(client: SqlClient): Promise<boolean> {
  // Looked up in the store's own schema: to_regclass alone resolves through the whole search_path, and
  // a cloud index schema has `public` (another index, maybe) after it.
  const [row] = await client.query<{ present: boolean }>(
    "SELECT to_regclass(format('%I.%I', current_schema(), $1::text)) IS NOT NULL AS present",
    [HNSW_INDEX],
  );
  return row?.present === true;
}
