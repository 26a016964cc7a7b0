import { InvalidInputError, ModelMismatchError } from '../../core/errors';
import { compareSequencers, normaliseSequencer } from '../../core/object-events';
import { databaseAugment, splitModelId } from '../../core/retrieval';
import type {
  ImageRecord,
  IndexFailure,
  NearestQuery,
  Neighbour,
  SequencedWrite,
  StoreStats,
  VectorStore,
} from '../../core/ports';
import { decodeHalfvec, encodeHalfvec, encodeHalfvecArray } from './halfvec-binary';
import { migrate } from './migrator';
import type { SqlClient, SqlExecutor } from './sql-client';

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

/**
 * DBA candidates per image on the approximate search paths (HNSW, binary): its 64 nearest by the
 * store's own search, re-ranked by raw distance. Exact stores consider every row.
 */
export const DBA_CANDIDATES = 64;

/** Rows per statement when recomputing neighbour lists and augmented vectors (bounded memory). */
const DBA_CHUNK = 64;

/** The advisory lock key that serialises DBA maintenance across connections (PostgreSQL). */
const DBA_LOCK = 'ompf_dba';

/** One row's DBA neighbour list: ids nearest first (ties by id), with their raw cosine distances. */
interface NeighbourList {
  readonly ids: string[];
  readonly distances: number[];
}

/**
 * The vector store over PostgreSQL + pgvector, for both engines: the same SQL text runs on PGlite and
 * on a PostgreSQL server. Vectors travel in pgvector's binary halfvec format (halfvec-binary.ts),
 * which both drivers send as binary parameters. Embeddings are stored as halfvec(D): pgvector
 * indexes `vector` only up to 2,000 dimensions, halfvec up to 4,000, and it halves storage.
 */
export class PgVectorStore implements VectorStore {
  private constructor(
    private readonly client: SqlClient,
    private readonly options: StoreOptions,
    private strategy: SearchStrategy,
    /** halfvec's type OID in this database, for binary halfvec[] parameters (halfvec-binary.ts). */
    private readonly halfvecOid: number,
  ) {}

  get modelId(): string {
    return this.options.modelId;
  }

  get dimension(): number {
    return this.options.dimension;
  }

  /** DBA neighbours per stored vector; 0 = off. */
  get dba(): number {
    return this.options.dba ?? 0;
  }

  /**
   * Migrate and open. A store created for another model or dimension refuses to open: its vectors
   * cannot be compared with this model's.
   */
  static async open(client: SqlClient, options: StoreOptions): Promise<PgVectorStore> {
    await migrate(client, { modelId: options.modelId, dimension: options.dimension });
    const [meta] = await client.query<{ model_id: string; dimension: number }>(
      'SELECT model_id, dimension FROM ompf_store',
    );
    if (!meta || meta.model_id !== options.modelId || meta.dimension !== options.dimension) {
      // Model and transform named apart: `--model` takes the model name, the transform comes from
      // OMPF_FLIP / OMPF_POWER / OMPF_DBA.
      const stored = splitModelId(meta?.model_id ?? '?');
      const wanted = splitModelId(options.modelId);
      throw new ModelMismatchError(
        `This store was built with model '${stored.model}'${describeTransform(stored.transform)} (${meta?.dimension ?? '?'}-d); the configured model is '${wanted.model}'${describeTransform(wanted.transform)} (${options.dimension}-d). Vectors of different models or transforms cannot be compared.`,
        {
          hint: `Re-index with the new model or transform (\`ompf index DIR --reindex\`), use --model ${stored.model}${stored.transform ? ` with the transform settings it was built with (OMPF_FLIP, OMPF_POWER, OMPF_DBA)` : ''}, or point OMPF_DATA_DIR/DATABASE_URL at another store.`,
          context: { storeModel: meta?.model_id, requestedModel: options.modelId },
        },
      );
    }
    const [halfvec] = await client.query<{ oid: number }>("SELECT 'halfvec'::regtype::oid::integer AS oid");
    return new PgVectorStore(client, options, await currentStrategy(client), halfvec!.oid);
  }

  /** Drop everything this store holds and recreate it for `options.modelId` (re-index after a model change). */
  static async recreate(client: SqlClient, options: StoreOptions): Promise<PgVectorStore> {
    await client.exec(
      'DROP TABLE IF EXISTS images, index_failures, image_tombstones, ompf_store, ompf_migrations',
    );
    return PgVectorStore.open(client, options);
  }

  async upsertMany(records: readonly ImageRecord[]): Promise<void> {
    if (records.length === 0) return;
    // One row per (source, key): ON CONFLICT cannot touch the same row twice in one statement.
    const unique = [...new Map(records.map((r) => [`${r.source}\u0000${r.key}`, r])).values()];
    for (const record of unique) this.assertVector(record.embedding);
    await this.promoteForAugmentation();
    await this.client.transaction((tx) => this.writeRows(tx, unique));
  }

  private async writeRows(tx: SqlExecutor, unique: readonly ImageRecord[]): Promise<void> {
    const augmenting = this.dba > 0;
    if (augmenting) await this.lockAugmentation(tx);
    const column = <T>(pick: (r: ImageRecord) => T): T[] => unique.map(pick);
    const written = await tx.query<{ id: string }>(
      // The CTE is materialised so each vector's text is parsed once, not once per expression using it.
      // With DBA on, the model output goes to raw_embedding and `embedding` holds it only until
      // maintainAugmentation (below, same transaction) replaces it with the augmented vector.
      `WITH input AS MATERIALIZED (
         SELECT source, key, content_hash, etag, version_id, sequencer, embedding::halfvec AS embedding, width, height, bytes
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::halfvec[], $9::int[], $10::int[], $11::bigint[])
             AS input(source, key, content_hash, etag, version_id, sequencer, embedding, width, height, bytes))
       INSERT INTO images (source, key, content_hash, etag, version_id, sequencer, model_id, embedding, raw_embedding,
                           embedding_bits, dba_neighbours, dba_distances, width, height, bytes)
       SELECT source, key, content_hash, etag, version_id, sequencer, $7, input.embedding,
              CASE WHEN $12::boolean THEN input.embedding END,
              CASE WHEN store.centre IS NULL THEN NULL ELSE binary_quantize(input.embedding - store.centre) END,
              '{}', '{}', width, height, bytes
         FROM input CROSS JOIN ompf_store AS store
       ON CONFLICT (source, key) DO UPDATE SET
         content_hash = EXCLUDED.content_hash, etag = EXCLUDED.etag, version_id = EXCLUDED.version_id,
         sequencer = EXCLUDED.sequencer, model_id = EXCLUDED.model_id, embedding = EXCLUDED.embedding,
         raw_embedding = EXCLUDED.raw_embedding, embedding_bits = EXCLUDED.embedding_bits,
         dba_neighbours = EXCLUDED.dba_neighbours, dba_distances = EXCLUDED.dba_distances,
         width = EXCLUDED.width, height = EXCLUDED.height, bytes = EXCLUDED.bytes, updated_at = now()
       RETURNING id::text AS id`,
      [
        column((r) => r.source),
        column((r) => r.key),
        column((r) => r.contentHash),
        column((r) => r.etag ?? null),
        column((r) => r.versionId ?? null),
        column((r) => r.sequencer ?? null),
        this.options.modelId,
        encodeHalfvecArray(
          unique.map((r) => r.embedding),
          this.halfvecOid,
        ),
        column((r) => r.width),
        column((r) => r.height),
        column((r) => r.bytes),
        augmenting,
      ],
    );
    await tx.query(
      `DELETE FROM index_failures f USING unnest($1::text[], $2::text[]) AS done(source, key)
        WHERE f.source = done.source AND f.key = done.key`,
      [column((r) => r.source), column((r) => r.key)],
    );
    if (augmenting)
      await this.maintainAugmentation(
        tx,
        written.map((row) => row.id),
        [],
      );
  }

  /*
   * Database-side augmentation (DBA), maintained by the store.
   *
   * Contract, with k = options.dba > 0: for every row x,
   *   dba_neighbours(x) = the k other rows nearest to raw(x) by cosine distance (raw vectors as stored,
   *                       halfvec), nearest first, ties by id; dba_distances(x) their distances;
   *   embedding(x)      = databaseAugment(raw(x), raw vectors of dba_neighbours(x) in that order):
   *                       the weighting `ompf eval` measures as dba3 (lib/core/retrieval.ts);
   *   embedding_bits(x) = the sign bits of embedding(x) once the binary strategy is on.
   * Lists depend only on the raw vectors, so the maintained state is a function of the set of raw
   * vectors, whatever the order of inserts, overwrites and deletes. Every write restores the contract
   * inside its own transaction: after writing the rows B (new or overwritten) or deleting the rows R,
   *   - each row of B gets its list from scratch;
   *   - each other row that lists a row of B or R (found through the GIN index) gets its list from
   *     scratch (its neighbour moved or left);
   *   - each remaining row x that some y in B now beats ((d(x,y), y) < its k-th, or x has fewer than k)
   *     gets y spliced into its list (its other neighbours are unchanged, so top-k of the union is right);
   *   - the embeddings of all these rows are recomputed.
   * "Nearest" is searched the way queries are: an exact store compares with every row, so maintenance
   * is exact and equals rebuildAugmentation(); an HNSW or binary store takes the DBA_CANDIDATES nearest
   * by its own search and re-ranks them by raw distance, so a row that would list y but is not among
   * y's candidates keeps its old list until the next rebuildAugmentation() (approximate, like search).
   * Cost per written image: one search (plus one per row that listed it, on overwrite or delete), one
   * read of the raw vectors involved and one UPDATE per DBA_CHUNK rows; round trips are per batch, not
   * per row. On PostgreSQL all DBA maintenance is serialised by a transaction-scoped advisory lock:
   * concurrent indexing Lambdas would otherwise each miss the other's uncommitted rows. The lock is held
   * for database time only (embedding happens before the store is called); under READ COMMITTED each
   * statement after the lock sees everything the previous holder committed.
   */

  private async lockAugmentation(tx: SqlExecutor): Promise<void> {
    if (this.client.engine === 'postgresql')
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [DBA_LOCK]);
    if (this.strategy !== 'exact') await useHnsw(tx, 2 * DBA_CANDIDATES);
  }

  /** Restore the DBA contract after writing the rows `written` and deleting the rows `removed`. */
  private async maintainAugmentation(
    tx: SqlExecutor,
    written: readonly string[],
    removed: readonly string[],
  ): Promise<void> {
    const changed = [...written, ...removed];
    if (changed.length === 0) return;
    const referrers = (
      await tx.query<{ id: string }>(
        'SELECT id::text AS id FROM images WHERE dba_neighbours && $1::bigint[] AND NOT (id = ANY($1::bigint[])) ORDER BY id',
        [changed],
      )
    ).map((row) => row.id);
    const fromScratch = new Set([...written, ...referrers]);
    const lists = new Map<string, NeighbourList>();
    const splices = new Map<string, { old: NeighbourList; added: { id: string; distance: number }[] }>();
    for (let i = 0; i < written.length; i += DBA_CHUNK) {
      const rows = await this.neighbourRows(tx, written.slice(i, i + DBA_CHUNK), written);
      for (const row of rows) {
        if (row.forward) addNeighbour(lists, row.y, row.c, row.distance);
        if (row.reverse && !fromScratch.has(row.c)) {
          const splice = splices.get(row.c) ?? {
            old: { ids: row.neighbours, distances: row.distances },
            added: [],
          };
          splice.added.push({ id: row.y, distance: row.distance });
          splices.set(row.c, splice);
        }
      }
    }
    for (let i = 0; i < referrers.length; i += DBA_CHUNK) {
      for (const row of await this.neighbourRows(tx, referrers.slice(i, i + DBA_CHUNK), undefined)) {
        addNeighbour(lists, row.y, row.c, row.distance);
      }
    }
    for (const id of fromScratch) if (!lists.has(id)) lists.set(id, { ids: [], distances: [] });
    for (const [id, { old, added }] of splices) {
      const merged = [...old.ids.map((n, j) => ({ id: n, distance: old.distances[j]! })), ...added].sort(
        byDistanceThenId,
      );
      const kept = merged.slice(0, this.dba);
      lists.set(id, { ids: kept.map((e) => e.id), distances: kept.map((e) => e.distance) });
    }
    await this.rewriteAugmented(tx, lists);
  }

  /**
   * For each row y of `ids`: its k nearest rows by raw distance (`forward`), and, when `reverse` names
   * the rows being written, the rows outside it whose lists y now enters (`reverse`), with their lists.
   * Candidates follow the store's search strategy (see the contract above).
   */
  private async neighbourRows(
    tx: SqlExecutor,
    ids: readonly string[],
    reverse: readonly string[] | undefined,
  ): Promise<NeighbourRow[]> {
    const rows = await tx.query<{
      y: string;
      c: string;
      distance: number;
      forward: boolean;
      reverse: boolean;
      neighbours: string[] | null;
      distances: number[] | null;
    }>(
      // One literal statement for the three strategies: $4 picks the candidate source and the other
      // branches are skipped by their one-time filters (exact: every row; hnsw: the index's nearest;
      // binary: the nearest by Hamming distance of the centred bits). y is materialised first, so its
      // bits are computed once per y, not once per row. Pairs stay narrow (scalars only: the sort and
      // the materialised rows stay small); a candidate's whole list is read only when y enters it.
      `WITH y AS MATERIALIZED (
         SELECT id, raw_embedding,
                CASE WHEN $4::text = 'binary'
                     THEN binary_quantize(raw_embedding - (SELECT centre FROM ompf_store)) END AS bits
           FROM images WHERE id = ANY($1::bigint[])),
       pairs AS MATERIALIZED (
         SELECT y.id AS y, c.id AS c, y.raw_embedding <=> c.raw_embedding AS distance,
                cardinality(c.dba_neighbours) AS listed, c.dba_distances[$2::integer] AS radius,
                c.dba_neighbours[$2::integer] AS last
           FROM y CROSS JOIN LATERAL (
                  SELECT id, raw_embedding, dba_neighbours, dba_distances FROM images WHERE $4::text = 'exact'
                  UNION ALL
                  SELECT images.id, raw_embedding, dba_neighbours, dba_distances
                    FROM (SELECT id FROM images WHERE $4::text = 'hnsw'
                           ORDER BY embedding <=> y.raw_embedding LIMIT $5::integer) AS candidate
                    JOIN images USING (id)
                  UNION ALL
                  SELECT images.id, raw_embedding, dba_neighbours, dba_distances
                    FROM (SELECT id FROM images WHERE $4::text = 'binary'
                           ORDER BY embedding_bits <~> y.bits LIMIT $5::integer) AS candidate
                    JOIN images USING (id)) AS c
          WHERE c.id <> y.id),
       ranked AS (
         SELECT y, c, distance, row_number() OVER (PARTITION BY y ORDER BY distance, c) <= $2::integer AS forward,
                ($3::bigint[] IS NOT NULL AND NOT (c = ANY($3::bigint[]))
                 AND (listed < $2::integer OR (distance, y) < (radius, last))) AS reverse
           FROM pairs)
       SELECT ranked.y::text AS y, ranked.c::text AS c, ranked.distance, ranked.forward, ranked.reverse,
              x.dba_neighbours::text[] AS neighbours, x.dba_distances AS distances
         FROM ranked LEFT JOIN images AS x ON ranked.reverse AND x.id = ranked.c
        WHERE ranked.forward OR ranked.reverse
        ORDER BY ranked.y, ranked.distance, ranked.c`, // qualified: the bigints, not the text aliases
      // The row itself is among its own candidates, hence one more.
      [ids, this.dba, reverse ?? null, this.strategy, DBA_CANDIDATES + 1],
    );
    return rows.map((row) => ({
      y: row.y,
      c: row.c,
      distance: Number(row.distance),
      forward: row.forward,
      reverse: row.reverse,
      neighbours: row.neighbours ?? [],
      distances: (row.distances ?? []).map(Number),
    }));
  }

  /** Write the lists and recompute the augmented vectors (and their sign bits) of the given rows. */
  private async rewriteAugmented(tx: SqlExecutor, lists: ReadonlyMap<string, NeighbourList>): Promise<void> {
    const entries = [...lists];
    for (let i = 0; i < entries.length; i += DBA_CHUNK) {
      const chunk = entries.slice(i, i + DBA_CHUNK);
      const needed = new Set(chunk.flatMap(([id, list]) => [id, ...list.ids]));
      const raws = new Map(
        (
          await tx.query<{ id: string; raw: Uint8Array }>(
            'SELECT id::text AS id, halfvec_send(raw_embedding) AS raw FROM images WHERE id = ANY($1::bigint[])',
            [[...needed]],
          )
        ).map((row) => [row.id, decodeHalfvec(row.raw)]),
      );
      const raw = (id: string): Float32Array => {
        const vector = raws.get(id);
        if (!vector) throw new Error(`DBA maintenance: row ${id} has no raw embedding.`);
        return vector;
      };
      await tx.query(
        `UPDATE images SET
           embedding = u.embedding::halfvec,
           embedding_bits = CASE WHEN store.centre IS NULL THEN NULL
                                 ELSE binary_quantize(u.embedding::halfvec - store.centre) END,
           dba_neighbours = u.neighbours::bigint[],
           dba_distances = u.distances::double precision[]
         FROM unnest($1::bigint[], $2::halfvec[], $3::text[], $4::text[]) AS u(id, embedding, neighbours, distances),
              ompf_store AS store
        WHERE images.id = u.id`,
        [
          chunk.map(([id]) => id),
          encodeHalfvecArray(
            chunk.map(([id, list]) => databaseAugment(raw(id), list.ids.map(raw))),
            this.halfvecOid,
          ),
          chunk.map(([, list]) => `{${list.ids.join(',')}}`),
          // String(number) is the shortest exact round trip, so stored distances compare exactly.
          chunk.map(([, list]) => `{${list.distances.map(String).join(',')}}`),
        ],
      );
    }
  }

  /**
   * Recompute every row's DBA list and augmented vector from scratch (after a bulk load, or to reset
   * the drift of approximate maintenance on large stores). Exact while the store searches exactly;
   * otherwise it uses the store's candidates, like maintenance. Returns the number of rows rewritten.
   */
  async rebuildAugmentation(): Promise<number> {
    if (this.dba === 0) return 0;
    return this.client.transaction(async (tx) => {
      await this.lockAugmentation(tx);
      const ids = (await tx.query<{ id: string }>('SELECT id::text AS id FROM images ORDER BY id')).map(
        (row) => row.id,
      );
      const lists = new Map<string, NeighbourList>(ids.map((id) => [id, { ids: [], distances: [] }]));
      for (let i = 0; i < ids.length; i += DBA_CHUNK) {
        for (const row of await this.neighbourRows(tx, ids.slice(i, i + DBA_CHUNK), undefined)) {
          addNeighbour(lists, row.y, row.c, row.distance);
        }
      }
      await this.rewriteAugmented(tx, lists);
      return ids.length;
    });
  }

  async contentHashes(source: string, keys: readonly string[]): Promise<Map<string, string>> {
    if (keys.length === 0) return new Map();
    const rows = await this.client.query<{ key: string; content_hash: string }>(
      'SELECT key, content_hash FROM images WHERE source = $1 AND key = ANY($2::text[])',
      [source, keys],
    );
    return new Map(rows.map((row) => [row.key, row.content_hash]));
  }

  async listKeys(source: string): Promise<string[]> {
    const rows = await this.client.query<{ key: string }>(
      'SELECT key FROM images WHERE source = $1 ORDER BY key',
      [source],
    );
    return rows.map((row) => row.key);
  }

  /** The model's output for the image (with DBA on, the raw vector, not the augmented one). */
  async getEmbedding(source: string, key: string): Promise<Float32Array | undefined> {
    const [row] = await this.client.query<{ embedding: Uint8Array }>(
      'SELECT halfvec_send(coalesce(raw_embedding, embedding)) AS embedding FROM images WHERE source = $1 AND key = $2',
      [source, key],
    );
    return row ? decodeHalfvec(row.embedding) : undefined;
  }

  /** The vector searches compare queries with (with DBA on, the augmented one). */
  async getSearchedEmbedding(source: string, key: string): Promise<Float32Array | undefined> {
    const [row] = await this.client.query<{ embedding: Uint8Array }>(
      'SELECT halfvec_send(embedding) AS embedding FROM images WHERE source = $1 AND key = $2',
      [source, key],
    );
    return row ? decodeHalfvec(row.embedding) : undefined;
  }

  async findSources(key: string): Promise<string[]> {
    const rows = await this.client.query<{ source: string }>(
      'SELECT source FROM images WHERE key = $1 ORDER BY source',
      [key],
    );
    return rows.map((row) => row.source);
  }

  async remove(source: string, keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    return this.client.transaction(async (tx) => {
      if (this.dba > 0) await this.lockAugmentation(tx);
      const removed = await tx.query<{ id: string }>(
        'DELETE FROM images WHERE source = $1 AND key = ANY($2::text[]) RETURNING id::text AS id',
        [source, keys],
      );
      await tx.query('DELETE FROM index_failures WHERE source = $1 AND key = ANY($2::text[])', [
        source,
        keys,
      ]);
      if (this.dba > 0)
        await this.maintainAugmentation(
          tx,
          [],
          removed.map((row) => row.id),
        );
      return removed.length;
    });
  }

  async nearest(query: NearestQuery): Promise<Neighbour[]> {
    this.assertVector(query.vector);
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
      rows = await this.client.transaction((tx) =>
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
      const candidates = binaryCandidates(query.limit, this.options.binaryOversampling);
      rows = await this.client.transaction(async (tx) => {
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
      rows = await this.client.query<Row>(
        `SELECT source, key, embedding <=> $1::halfvec AS distance FROM images
          WHERE ${filter}
          ORDER BY distance, source, key
          LIMIT $5`,
        params,
      );
    }
    return rows.map((row) => ({
      source: row.source,
      key: row.key,
      // Stored vectors are unit length, so Euclidean distance follows from cosine distance
      // (|a-b|^2 = 2 - 2cos = 2 * cosine distance) and one index serves both metrics.
      distance: query.metric === 'euclidean' ? Math.sqrt(Math.max(0, 2 * row.distance)) : row.distance,
    }));
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

  async recordFailure(source: string, key: string, reason: string): Promise<void> {
    await this.client.query(
      `INSERT INTO index_failures (source, key, reason) VALUES ($1, $2, $3)
       ON CONFLICT (source, key) DO UPDATE SET reason = EXCLUDED.reason, failed_at = now()`,
      [source, key, reason],
    );
  }

  async latestSequencer(source: string, key: string): Promise<string | undefined> {
    return newest(await this.appliedSequencers(this.client, source, key));
  }

  async upsertIfNewer(record: ImageRecord & { readonly sequencer: string }): Promise<SequencedWrite> {
    this.assertVector(record.embedding);
    normaliseSequencer(record.sequencer);
    await this.promoteForAugmentation();
    return this.client.transaction(async (tx) => {
      const applied = await this.lockAndReadSequencers(tx, record.source, record.key);
      const current = newest(applied);
      if (current !== undefined && compareSequencers(record.sequencer, current) <= 0) {
        return { applied: false, current };
      }
      await this.writeRows(tx, [record]);
      await tx.query('DELETE FROM image_tombstones WHERE source = $1 AND key = $2', [
        record.source,
        record.key,
      ]);
      return { applied: true, existed: applied.image !== undefined };
    });
  }

  async removeIfNewer(source: string, key: string, sequencer: string): Promise<SequencedWrite> {
    normaliseSequencer(sequencer);
    return this.client.transaction(async (tx) => {
      const applied = await this.lockAndReadSequencers(tx, source, key);
      const current = newest(applied);
      if (current !== undefined && compareSequencers(sequencer, current) <= 0) {
        return { applied: false, current };
      }
      if (this.dba > 0) await this.lockAugmentation(tx);
      const removed = await tx.query<{ id: string }>(
        'DELETE FROM images WHERE source = $1 AND key = $2 RETURNING id::text AS id',
        [source, key],
      );
      if (this.dba > 0)
        await this.maintainAugmentation(
          tx,
          [],
          removed.map((row) => row.id),
        );
      await tx.query('DELETE FROM index_failures WHERE source = $1 AND key = $2', [source, key]);
      await tx.query(
        `INSERT INTO image_tombstones (source, key, sequencer) VALUES ($1, $2, $3)
         ON CONFLICT (source, key) DO UPDATE SET sequencer = EXCLUDED.sequencer, deleted_at = now()`,
        [source, key, sequencer],
      );
      return { applied: true, existed: removed.length > 0 };
    });
  }

  async pruneTombstones(before: Date): Promise<number> {
    const rows = await this.client.query('DELETE FROM image_tombstones WHERE deleted_at < $1 RETURNING key', [
      before,
    ]);
    return rows.length;
  }

  /**
   * Serialise writers of one key (two Lambdas handling two events of the same key at once): a
   * transaction-scoped advisory lock on the key's hash. PGlite has a single connection and needs none.
   */
  private async lockAndReadSequencers(
    tx: SqlExecutor,
    source: string,
    key: string,
  ): Promise<AppliedSequencers> {
    if (this.client.engine === 'postgresql') {
      await tx.query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))", [source, key]);
    }
    return this.appliedSequencers(tx, source, key);
  }

  private async appliedSequencers(db: SqlExecutor, source: string, key: string): Promise<AppliedSequencers> {
    const [row] = await db.query<{ image: string | null; tombstone: string | null }>(
      `SELECT (SELECT sequencer FROM images WHERE source = $1 AND key = $2) AS image,
              (SELECT sequencer FROM image_tombstones WHERE source = $1 AND key = $2) AS tombstone`,
      [source, key],
    );
    return { image: row?.image ?? undefined, tombstone: row?.tombstone ?? undefined };
  }

  async listFailures(source?: string): Promise<IndexFailure[]> {
    const rows = await this.client.query<{ source: string; key: string; reason: string; failed_at: Date }>(
      'SELECT source, key, reason, failed_at FROM index_failures WHERE $1::text IS NULL OR source = $1 ORDER BY source, key',
      [source ?? null],
    );
    return rows.map((row) => ({
      source: row.source,
      key: row.key,
      reason: row.reason,
      failedAt: new Date(row.failed_at),
    }));
  }

  async optimise(): Promise<SearchStrategy> {
    const [{ count } = { count: 0 }] = await this.client.query<{ count: number }>(
      'SELECT count(*)::integer AS count FROM images',
    );
    if (
      this.client.engine === 'postgresql' &&
      count >= this.options.hnswMinRows &&
      this.strategy === 'exact'
    ) {
      await this.client.transaction(async (tx) => {
        await tx.query("SELECT set_config('maintenance_work_mem', $1, true)", [
          this.options.indexBuildMemory,
        ]);
        await tx.exec(
          `CREATE INDEX IF NOT EXISTS ${HNSW_INDEX} ON images USING hnsw (embedding halfvec_cosine_ops)`,
        );
      });
      this.strategy = 'hnsw';
    }
    if (
      this.client.engine === 'pglite' &&
      count >= (this.options.binaryMinRows ?? BINARY_MIN_ROWS) &&
      (this.strategy === 'exact' || (this.strategy === 'binary' && (await this.centreOutgrown(count))))
    ) {
      await this.learnCentre(); // vacuums too
    } else {
      if (this.strategy === 'binary') await this.ensureBitsIndex();
      // DBA rewrites rows as their neighbours change, leaving dead versions behind; PGlite runs no
      // autovacuum, so the store reclaims them here (after each `ompf index`). PostgreSQL's does.
      if (this.dba > 0 && this.client.engine === 'pglite') await this.client.exec('VACUUM images');
    }
    await this.client.exec('ANALYZE images');
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
    await this.client.transaction(async (tx) => {
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
    await this.client.exec('VACUUM images');
  }

  private async centreOutgrown(count: number): Promise<boolean> {
    const [store] = await this.client.query<{ rows: number | null }>(
      'SELECT centre_rows AS rows FROM ompf_store',
    );
    return count >= 2 * (store?.rows ?? 0);
  }

  /**
   * Builds BITS_HNSW_INDEX after the bits are filled (one bulk build, not row by row). Idempotent, so
   * optimise() also gives it to binary stores written before the index existed.
   */
  private async ensureBitsIndex(): Promise<void> {
    await this.client.transaction(async (tx) => {
      await tx.query("SELECT set_config('maintenance_work_mem', $1, true)", [this.options.indexBuildMemory]);
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
  private async promoteForAugmentation(): Promise<void> {
    if (this.dba === 0 || this.client.engine !== 'pglite' || this.strategy !== 'exact') return;
    const [{ count } = { count: 0 }] = await this.client.query<{ count: number }>(
      'SELECT count(*)::integer AS count FROM images',
    );
    if (count >= (this.options.binaryMinRows ?? BINARY_MIN_ROWS)) await this.learnCentre();
  }

  async stats(): Promise<StoreStats> {
    const sources = await this.client.query<{ source: string; images: number }>(
      'SELECT source, count(*)::integer AS images FROM images GROUP BY source ORDER BY source',
    );
    const [failures] = await this.client.query<{ count: number }>(
      'SELECT count(*)::integer AS count FROM index_failures',
    );
    return {
      modelId: this.modelId,
      dimension: this.dimension,
      images: sources.reduce((sum, s) => sum + s.images, 0),
      failures: failures?.count ?? 0,
      sources,
      engine: this.client.engine,
      searchStrategy: this.strategy,
    };
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private assertVector(vector: Float32Array): void {
    if (vector.length !== this.dimension) {
      throw new InvalidInputError(
        `A ${vector.length}-d vector cannot be stored or searched in a ${this.dimension}-d store (model '${this.modelId}').`,
        { hint: 'Embed with the model the store was built with, or re-index with --reindex.' },
      );
    }
    if (!vector.every(Number.isFinite)) {
      throw new InvalidInputError('The vector contains NaN or infinite values.');
    }
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
async function useHnsw(tx: SqlExecutor, efSearch: number): Promise<void> {
  await tx.query(
    `SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),
            set_config('enable_seqscan', 'off', true)`,
    [String(Math.min(1000, Math.max(1, Math.round(efSearch))))],
  );
}

async function currentStrategy(client: SqlClient): Promise<SearchStrategy> {
  if (await hasHnswIndex(client)) return 'hnsw';
  const [store] = await client.query<{ binary: boolean }>(
    'SELECT centre IS NOT NULL AS binary FROM ompf_store',
  );
  return store?.binary ? 'binary' : 'exact';
}

async function hasHnswIndex(client: SqlClient): Promise<boolean> {
  // to_regclass resolves through search_path: an index of the same name in another schema is not ours.
  const [row] = await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [
    HNSW_INDEX,
  ]);
  return row?.present === true;
}

function describeTransform(suffix: string): string {
  return suffix ? ` with transform '${suffix}'` : '';
}

interface NeighbourRow {
  readonly y: string;
  readonly c: string;
  readonly distance: number;
  readonly forward: boolean;
  readonly reverse: boolean;
  readonly neighbours: string[];
  readonly distances: number[];
}

/** Append c to y's list; rows arrive ordered by (y, distance, c), so lists come out nearest first. */
function addNeighbour(lists: Map<string, NeighbourList>, y: string, c: string, distance: number): void {
  const list = lists.get(y) ?? { ids: [], distances: [] };
  list.ids.push(c);
  list.distances.push(distance);
  lists.set(y, list);
}

/** The order of DBA lists: raw distance, then id (as the SQL's ORDER BY distance, id). */
function byDistanceThenId(a: { id: string; distance: number }, b: { id: string; distance: number }): number {
  if (a.distance !== b.distance) return a.distance - b.distance;
  const x = BigInt(a.id);
  const y = BigInt(b.id);
  return x < y ? -1 : x > y ? 1 : 0;
}

interface AppliedSequencers {
  readonly image: string | undefined;
  readonly tombstone: string | undefined;
}

function newest({ image, tombstone }: AppliedSequencers): string | undefined {
  if (image === undefined) return tombstone;
  if (tombstone === undefined) return image;
  return compareSequencers(image, tombstone) >= 0 ? image : tombstone;
}
