import { databaseAugment } from '../../core/retrieval';
import { decodeHalfvec, encodeHalfvecArray } from './halfvec-binary';
import { useHnsw, type SearchStrategies } from './search-strategies';
import type { SqlExecutor } from './sql-client';
import { dbaNeighbours, type StoreContext } from './store-context';

/**
 * Database-side augmentation (DBA): each row's neighbour list (`dba_neighbours`, `dba_distances`) and
 * augmented vector (`embedding`, with its sign bits), restored by every write inside its transaction,
 * and rebuilt from scratch on request. Owns those columns and the advisory lock `ompf_dba`; must not
 * decide which rows are written or deleted (row-writes.ts, sequenced-writes.ts call it with their ids)
 * nor change the search strategy (it only follows search-strategies.ts's current one).
 */

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
export class Augmentation {
  constructor(
    private readonly context: StoreContext,
    private readonly search: SearchStrategies,
  ) {}

  /** Neighbours per row; 0 = off. */
  get k(): number {
    return dbaNeighbours(this.context.options);
  }

  /**
   * Taken first in every transaction that maintains DBA: serialises maintenance across connections
   * (PostgreSQL) and lets its neighbour searches use the store's HNSW index.
   */
  async lock(tx: SqlExecutor): Promise<void> {
    if (this.context.client.engine === 'postgresql')
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [DBA_LOCK]);
    if (this.search.current !== 'exact') await useHnsw(tx, 2 * DBA_CANDIDATES);
  }

  /** Restore the DBA contract after writing the rows `written` and deleting the rows `removed`. */
  async maintain(tx: SqlExecutor, written: readonly string[], removed: readonly string[]): Promise<void> {
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
      const kept = merged.slice(0, this.k);
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
      [ids, this.k, reverse ?? null, this.search.current, DBA_CANDIDATES + 1],
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
            this.context.halfvecOid,
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
  async rebuild(): Promise<number> {
    if (this.k === 0) return 0;
    return this.context.client.transaction(async (tx) => {
      await this.lock(tx);
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
