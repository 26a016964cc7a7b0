import { InvalidInputError } from '../../core/errors';
import type { ImageRecord } from '../../core/ports';
import type { Augmentation } from './augmentation';
import { encodeHalfvecArray } from './halfvec-binary';
import type { SearchStrategies } from './search-strategies';
import type { SqlExecutor } from './sql-client';
import type { StoreContext } from './store-context';

/**
 * Plain row writes: insert-or-replace by (source, key) and removal, each in one transaction that also
 * clears the keys' failures and restores DBA (augmentation.ts) for the rows it touched. Owns the
 * INSERT ... ON CONFLICT of `images` and the DELETEs; must not read or write sequencers or tombstones
 * (sequenced-writes.ts) and decides no search strategy (it asks search-strategies.ts to promote first).
 */
export class RowWrites {
  constructor(
    private readonly context: StoreContext,
    private readonly search: SearchStrategies,
    private readonly augmentation: Augmentation,
  ) {}

  async upsertMany(records: readonly ImageRecord[]): Promise<void> {
    if (records.length === 0) return;
    // One row per (source, key): ON CONFLICT cannot touch the same row twice in one statement.
    const unique = [...new Map(records.map((r) => [`${r.source}\u0000${r.key}`, r])).values()];
    for (const record of unique) this.assertVector(record.embedding);
    await this.search.promoteForAugmentation();
    await this.context.client.transaction((tx) => this.writeRows(tx, unique));
  }

  /** Insert or replace `unique` (one record per key) inside `tx`, restoring DBA for them. */
  async writeRows(tx: SqlExecutor, unique: readonly ImageRecord[]): Promise<void> {
    const augmenting = this.augmentation.k > 0;
    if (augmenting) await this.augmentation.lock(tx);
    const column = <T>(pick: (r: ImageRecord) => T): T[] => unique.map(pick);
    const written = await tx.query<{ id: string }>(
      // The CTE is materialised so each vector's text is parsed once, not once per expression using it.
      // With DBA on, the model output goes to raw_embedding and `embedding` holds it only until
      // maintainAugmentation (below, same transaction) replaces it with the augmented vector.
      `WITH input AS MATERIALIZED (
         SELECT source, key, content_hash, etag, version_id, sequencer, embedding::halfvec AS embedding, width, height, bytes,
                perceptual_hash::bit(64) AS perceptual_hash
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::halfvec[], $9::int[], $10::int[], $11::bigint[], $13::text[])
             AS input(source, key, content_hash, etag, version_id, sequencer, embedding, width, height, bytes, perceptual_hash))
       INSERT INTO images (source, key, content_hash, etag, version_id, sequencer, model_id, embedding, raw_embedding,
                           embedding_bits, dba_neighbours, dba_distances, width, height, bytes, perceptual_hash)
       SELECT source, key, content_hash, etag, version_id, sequencer, $7, input.embedding,
              CASE WHEN $12::boolean THEN input.embedding END,
              CASE WHEN store.centre IS NULL THEN NULL ELSE binary_quantize(input.embedding - store.centre) END,
              '{}', '{}', width, height, bytes, input.perceptual_hash
         FROM input CROSS JOIN ompf_store AS store
       ON CONFLICT (source, key) DO UPDATE SET
         content_hash = EXCLUDED.content_hash, etag = EXCLUDED.etag, version_id = EXCLUDED.version_id,
         sequencer = EXCLUDED.sequencer, model_id = EXCLUDED.model_id, embedding = EXCLUDED.embedding,
         raw_embedding = EXCLUDED.raw_embedding, embedding_bits = EXCLUDED.embedding_bits,
         dba_neighbours = EXCLUDED.dba_neighbours, dba_distances = EXCLUDED.dba_distances,
         width = EXCLUDED.width, height = EXCLUDED.height, bytes = EXCLUDED.bytes,
         perceptual_hash = EXCLUDED.perceptual_hash, updated_at = now()
       RETURNING id::text AS id`,
      [
        column((r) => r.source),
        column((r) => r.key),
        column((r) => r.contentHash),
        column((r) => r.etag ?? null),
        column((r) => r.versionId ?? null),
        column((r) => r.sequencer ?? null),
        this.context.options.modelId,
        encodeHalfvecArray(
          unique.map((r) => r.embedding),
          this.context.halfvecOid,
        ),
        column((r) => r.width),
        column((r) => r.height),
        column((r) => r.bytes),
        augmenting,
        column((r) => r.perceptualHash ?? null),
      ],
    );
    await tx.query(
      `DELETE FROM index_failures f USING unnest($1::text[], $2::text[]) AS done(source, key)
        WHERE f.source = done.source AND f.key = done.key`,
      [column((r) => r.source), column((r) => r.key)],
    );
    if (augmenting)
      await this.augmentation.maintain(
        tx,
        written.map((row) => row.id),
        [],
      );
  }

  async remove(source: string, keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    return this.context.client.transaction(async (tx) => {
      if (this.augmentation.k > 0) await this.augmentation.lock(tx);
      const removed = await tx.query<{ id: string }>(
        'DELETE FROM images WHERE source = $1 AND key = ANY($2::text[]) RETURNING id::text AS id',
        [source, keys],
      );
      await tx.query('DELETE FROM index_failures WHERE source = $1 AND key = ANY($2::text[])', [
        source,
        keys,
      ]);
      if (this.augmentation.k > 0)
        await this.augmentation.maintain(
          tx,
          [],
          removed.map((row) => row.id),
        );
      return removed.length;
    });
  }

  /** Refuses a vector of another dimension, or holding NaN or infinities, before any SQL. */
  assertVector(vector: Float32Array): void {
    if (vector.length !== this.context.options.dimension) {
      throw new InvalidInputError(
        `A ${vector.length}-d vector cannot be stored or searched in a ${this.context.options.dimension}-d store (model '${this.context.options.modelId}').`,
        { hint: 'Embed with the model the store was built with, or re-index with --reindex.' },
      );
    }
    if (!vector.every(Number.isFinite)) {
      throw new InvalidInputError('The vector contains NaN or infinite values.');
    }
  }
}
