import pgvector from 'pgvector';
import { InvalidInputError, ModelMismatchError } from '../../core/errors';
import { compareSequencers, normaliseSequencer } from '../../core/object-events';
import type {
  ImageRecord,
  IndexFailure,
  NearestQuery,
  Neighbour,
  SequencedWrite,
  StoreStats,
  VectorStore,
} from '../../core/ports';
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
  /**
   * On PGlite, switch to binary candidates + exact re-ranking once the store holds this many images
   * (default 2,000). Measured here at 10k x halfvec(2048): exact top-10 207 ms, binary candidates
   * (100, Hamming) re-ranked exactly 11 ms; on real embeddings recall@10 0.996 with 100 candidates.
   */
  readonly binaryMinRows?: number;
}

export type SearchStrategy = 'exact' | 'hnsw' | 'binary';

/** Hamming candidates re-ranked exactly per query: enough for recall@10 >= 0.99 on real embeddings. */
export function binaryCandidates(limit: number): number {
  return Math.max(100, 10 * limit);
}

const HNSW_INDEX = 'images_embedding_hnsw';

/**
 * The vector store over PostgreSQL + pgvector, for both engines: the same SQL text runs on PGlite and
 * on a PostgreSQL server. Vectors travel as pgvector text literals cast to halfvec (pgvector-node's
 * recommendation for one code path across drivers). Embeddings are stored as halfvec(D): pgvector
 * indexes `vector` only up to 2,000 dimensions, halfvec up to 4,000, and it halves storage.
 */
export class PgVectorStore implements VectorStore {
  private constructor(
    private readonly client: SqlClient,
    private readonly options: StoreOptions,
    private strategy: SearchStrategy,
  ) {}

  get modelId(): string {
    return this.options.modelId;
  }

  get dimension(): number {
    return this.options.dimension;
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
      throw new ModelMismatchError(
        `This store was built with model '${meta?.model_id ?? '?'}' (${meta?.dimension ?? '?'}-d); the configured model is '${options.modelId}' (${options.dimension}-d). Vectors of different models cannot be compared.`,
        {
          hint: `Re-index with the new model (\`ompf index DIR --reindex\`), use --model ${meta?.model_id ?? 'NAME'}, or point OMPF_DATA_DIR/DATABASE_URL at another store.`,
          context: { storeModel: meta?.model_id, requestedModel: options.modelId },
        },
      );
    }
    return new PgVectorStore(client, options, await currentStrategy(client));
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
    await this.client.transaction((tx) => this.writeRows(tx, unique));
  }

  private async writeRows(tx: SqlExecutor, unique: readonly ImageRecord[]): Promise<void> {
    const column = <T>(pick: (r: ImageRecord) => T): T[] => unique.map(pick);
    await tx.query(
      // The CTE is materialised so each vector's text is parsed once, not once per expression using it.
      `WITH input AS MATERIALIZED (
         SELECT source, key, content_hash, etag, version_id, sequencer, embedding::halfvec AS embedding, width, height, bytes
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::text[], $9::int[], $10::int[], $11::bigint[])
             AS input(source, key, content_hash, etag, version_id, sequencer, embedding, width, height, bytes))
       INSERT INTO images (source, key, content_hash, etag, version_id, sequencer, model_id, embedding, embedding_bits, width, height, bytes)
       SELECT source, key, content_hash, etag, version_id, sequencer, $7, input.embedding,
              CASE WHEN store.centre IS NULL THEN NULL ELSE binary_quantize(input.embedding - store.centre) END,
              width, height, bytes
         FROM input CROSS JOIN ompf_store AS store
       ON CONFLICT (source, key) DO UPDATE SET
         content_hash = EXCLUDED.content_hash, etag = EXCLUDED.etag, version_id = EXCLUDED.version_id,
         sequencer = EXCLUDED.sequencer, model_id = EXCLUDED.model_id, embedding = EXCLUDED.embedding,
         embedding_bits = EXCLUDED.embedding_bits,
         width = EXCLUDED.width, height = EXCLUDED.height, bytes = EXCLUDED.bytes, updated_at = now()`,
      [
        column((r) => r.source),
        column((r) => r.key),
        column((r) => r.contentHash),
        column((r) => r.etag ?? null),
        column((r) => r.versionId ?? null),
        column((r) => r.sequencer ?? null),
        this.options.modelId,
        column((r) => toSql(r.embedding)),
        column((r) => r.width),
        column((r) => r.height),
        column((r) => r.bytes),
      ],
    );
    await tx.query(
      `DELETE FROM index_failures f USING unnest($1::text[], $2::text[]) AS done(source, key)
        WHERE f.source = done.source AND f.key = done.key`,
      [column((r) => r.source), column((r) => r.key)],
    );
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

  async getEmbedding(source: string, key: string): Promise<Float32Array | undefined> {
    const [row] = await this.client.query<{ embedding: string }>(
      'SELECT embedding::text AS embedding FROM images WHERE source = $1 AND key = $2',
      [source, key],
    );
    return row ? Float32Array.from(pgvector.fromSql(row.embedding) as number[]) : undefined;
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
      const removed = await tx.query(
        'DELETE FROM images WHERE source = $1 AND key = ANY($2::text[]) RETURNING id',
        [source, keys],
      );
      await tx.query('DELETE FROM index_failures WHERE source = $1 AND key = ANY($2::text[])', [
        source,
        keys,
      ]);
      return removed.length;
    });
  }

  async nearest(query: NearestQuery): Promise<Neighbour[]> {
    this.assertVector(query.vector);
    const params = [
      toSql(query.vector),
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
        this.nearestWithHnsw(tx, filter, params, query.efSearch ?? Math.max(100, query.limit * 2)),
      );
    } else if (this.strategy === 'binary') {
      // Hamming distance on the centred sign bits picks candidates (filter applied there, so N rows
      // come back when N match); exact cosine distance re-ranks them.
      rows = await this.client.query<Row>(
        `WITH query AS MATERIALIZED (
           SELECT binary_quantize($1::halfvec - centre) AS bits FROM ompf_store),
         candidates AS MATERIALIZED (
           SELECT id FROM images
            WHERE ${filter}
            ORDER BY embedding_bits <~> (SELECT bits FROM query)
            LIMIT $6)
         SELECT source, key, embedding <=> $1::halfvec AS distance
           FROM images JOIN candidates USING (id)
          ORDER BY distance, source, key
          LIMIT $5`,
        [...params, binaryCandidates(query.limit)],
      );
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
    await tx.query(
      "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
      [String(Math.min(1000, Math.max(1, Math.round(efSearch))))],
    );
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
      const removed = await tx.query('DELETE FROM images WHERE source = $1 AND key = $2 RETURNING id', [
        source,
        key,
      ]);
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
      count >= (this.options.binaryMinRows ?? 2000) &&
      this.strategy === 'exact'
    ) {
      // The centre is learned once, from the gallery as it is now; later rows are quantised against
      // it as they arrive (a shifted centre costs a little recall, never correctness: re-ranking is exact).
      await this.client.transaction(async (tx) => {
        await tx.exec('UPDATE ompf_store SET centre = (SELECT avg(embedding) FROM images)');
        await tx.exec(
          'UPDATE images SET embedding_bits = binary_quantize(embedding - (SELECT centre FROM ompf_store))',
        );
      });
      this.strategy = 'binary';
      // Every row was rewritten: reclaim the old versions so the table does not stay twice its size.
      await this.client.exec('VACUUM images');
    }
    await this.client.exec('ANALYZE images');
    return this.strategy;
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

function toSql(vector: Float32Array): string {
  return pgvector.toSql(Array.from(vector)) as string;
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
