import { compareSequencers, normaliseSequencer } from '../../core/object-events';
import type { ImageRecord, SequencedWrite } from '../../core/ports';
import type { Augmentation } from './augmentation';
import type { RowWrites } from './row-writes';
import type { SearchStrategies } from './search-strategies';
import type { SqlExecutor } from './sql-client';
import type { StoreContext } from './store-context';

/**
 * Event-ordered writes for object stores that deliver events at least once and out of order (S3): a
 * write applies only when its sequencer is newer than every event applied to the key, the image's or
 * its deletion's (a tombstone in `image_tombstones`). Owns `images.sequencer`, the tombstones and the
 * per-key advisory lock; the row itself is written by row-writes.ts, DBA restored by augmentation.ts.
 */
export class SequencedWrites {
  constructor(
    private readonly context: StoreContext,
    private readonly search: SearchStrategies,
    private readonly augmentation: Augmentation,
    private readonly rows: RowWrites,
  ) {}

  async latestSequencer(source: string, key: string): Promise<string | undefined> {
    return newest(await this.appliedSequencers(this.context.client, source, key));
  }

  async upsertIfNewer(record: ImageRecord & { readonly sequencer: string }): Promise<SequencedWrite> {
    this.rows.assertVector(record.embedding);
    normaliseSequencer(record.sequencer);
    await this.search.promoteForAugmentation();
    return this.context.client.transaction(async (tx) => {
      const applied = await this.lockAndReadSequencers(tx, record.source, record.key);
      const current = newest(applied);
      if (current !== undefined && compareSequencers(record.sequencer, current) <= 0) {
        return { applied: false, current };
      }
      await this.rows.writeRows(tx, [record]);
      await tx.query('DELETE FROM image_tombstones WHERE source = $1 AND key = $2', [
        record.source,
        record.key,
      ]);
      return { applied: true, existed: applied.image !== undefined };
    });
  }

  async removeIfNewer(source: string, key: string, sequencer: string): Promise<SequencedWrite> {
    normaliseSequencer(sequencer);
    return this.context.client.transaction(async (tx) => {
      const applied = await this.lockAndReadSequencers(tx, source, key);
      const current = newest(applied);
      if (current !== undefined && compareSequencers(sequencer, current) <= 0) {
        return { applied: false, current };
      }
      const existed = await this.deleteRow(tx, source, key);
      await this.writeTombstone(tx, source, key, sequencer);
      return { applied: true, existed };
    });
  }

  /** The row (with its DBA upkeep) and any failure of the key; true when a row existed. */
  private async deleteRow(tx: SqlExecutor, source: string, key: string): Promise<boolean> {
    if (this.augmentation.k > 0) await this.augmentation.lock(tx);
    const removed = await tx.query<{ id: string }>(
      'DELETE FROM images WHERE source = $1 AND key = $2 RETURNING id::text AS id',
      [source, key],
    );
    if (this.augmentation.k > 0)
      await this.augmentation.maintain(
        tx,
        [],
        removed.map((row) => row.id),
      );
    await tx.query('DELETE FROM index_failures WHERE source = $1 AND key = $2', [source, key]);
    return removed.length > 0;
  }

  private async writeTombstone(
    tx: SqlExecutor,
    source: string,
    key: string,
    sequencer: string,
  ): Promise<void> {
    await tx.query(
      `INSERT INTO image_tombstones (source, key, sequencer) VALUES ($1, $2, $3)
       ON CONFLICT (source, key) DO UPDATE SET sequencer = EXCLUDED.sequencer, deleted_at = now()`,
      [source, key, sequencer],
    );
  }

  /** Reconciliation's write: applied only while the key's newest applied sequencer is `expected`. */
  async upsertIfUnchanged(record: ImageRecord, expected: string | undefined): Promise<SequencedWrite> {
    this.rows.assertVector(record.embedding);
    await this.search.promoteForAugmentation();
    return this.context.client.transaction(async (tx) => {
      const applied = await this.lockAndReadSequencers(tx, record.source, record.key);
      const current = newest(applied);
      if (current !== expected) return { applied: false, current: current ?? '' };
      await this.rows.writeRows(tx, [{ ...record, sequencer: expected }]);
      await tx.query('DELETE FROM image_tombstones WHERE source = $1 AND key = $2', [
        record.source,
        record.key,
      ]);
      return { applied: true, existed: applied.image !== undefined };
    });
  }

  /**
   * Reconciliation's removal of a row whose object is gone, while nothing newer was applied. The
   * tombstone keeps `expected`, so a late event from before it cannot bring the row back.
   */
  async removeIfUnchanged(
    source: string,
    key: string,
    expected: string | undefined,
  ): Promise<SequencedWrite> {
    return this.context.client.transaction(async (tx) => {
      const applied = await this.lockAndReadSequencers(tx, source, key);
      const current = newest(applied);
      if (current !== expected) return { applied: false, current: current ?? '' };
      const existed = await this.deleteRow(tx, source, key);
      if (expected !== undefined) await this.writeTombstone(tx, source, key, expected);
      return { applied: true, existed };
    });
  }

  async pruneTombstones(before: Date): Promise<number> {
    const rows = await this.context.client.query(
      'DELETE FROM image_tombstones WHERE deleted_at < $1 RETURNING key',
      [before],
    );
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
    if (this.context.client.engine === 'postgresql') {
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
