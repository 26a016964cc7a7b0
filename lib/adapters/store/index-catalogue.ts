import { createHash } from 'node:crypto';
import type {
  CatalogueEntry,
  EventErrorRecord,
  IndexCatalogue,
  ReconcileRun,
  ReconcileRunCounts,
} from '../../core/ports';
import { loadMigrations, migrate, CONTROL_MIGRATIONS_DIR } from './migrator';
import type { SqlClient, SqlExecutor } from './sql-client';
import { dropSchema } from './store-schema';

/**
 * A cloud stage's index catalogue, in the control schema (public): which index answers queries
 * ('active'), which one is being built beside it after a model or transform change ('building'), and
 * which ones wait to be dropped ('retired'); the reconcile runs; the last error of each failed object
 * event. Each index is an ordinary store (store-schema.ts, the same migrations) in a schema of its own:
 * the first index of a stage lives in `public` itself (so a stage deployed before the catalogue existed
 * keeps its store where it is), every later one in `ompf_` + 12 hex digits of its model id's SHA-256.
 *
 * Owns the catalogue tables and CREATE / DROP SCHEMA; must not touch an index's rows.
 */
export const HOME_SCHEMA = 'public';
const INDEX_SCHEMA = /^ompf_[0-9a-f]{12}$/;

export function schemaForModel(modelId: string): string {
  return `ompf_${createHash('sha256').update(modelId).digest('hex').slice(0, 12)}`;
}

interface EntryRow {
  model_id: string;
  schema_name: string;
  dimension: number;
  state: CatalogueEntry['state'];
  created_at: Date;
  activated_at: Date | null;
}

interface RunRow {
  id: string;
  model_id: string;
  trigger: string;
  started_at: Date;
  finished_at: Date | null;
  listed: number;
  missing: number;
  changed: number;
  gone: number;
  unchanged: number;
  enqueued: number;
  switched: boolean;
  error: string | null;
}

export class PgIndexCatalogue implements IndexCatalogue {
  /** `sql` connects with the control schema (public) first on its search path. */
  constructor(private readonly sql: SqlClient) {}

  /** Apply the control migrations (the migrate step, as the admin user). */
  async migrate(): Promise<number[]> {
    return migrate(
      this.sql,
      { modelId: '-', dimension: 1 },
      loadMigrations(CONTROL_MIGRATIONS_DIR),
      'ompf_control_migrations',
    );
  }

  async entries(): Promise<CatalogueEntry[]> {
    const rows = await this.sql.query<EntryRow>(
      `SELECT model_id, schema_name, dimension, state, created_at, activated_at FROM ompf_indexes
       ORDER BY created_at, model_id`,
    );
    return rows.map(toEntry);
  }

  async entry(modelId: string): Promise<CatalogueEntry | undefined> {
    return (await this.entries()).find((e) => e.modelId === modelId);
  }

  /**
   * Where the index of `modelId` lives, registering it when the stage has none yet: a fresh stage's
   * first index goes to `public`; a store already in `public` from before the catalogue is registered
   * as the active index under the model id it records. Returns what the deployment must do.
   */
  async plan(modelId: string, dimension: number): Promise<CatalogueEntry> {
    return this.sql.transaction(async (tx) => {
      await tx.query('LOCK TABLE ompf_indexes IN EXCLUSIVE MODE');
      const existing = (
        await tx.query<EntryRow>(
          'SELECT model_id, schema_name, dimension, state, created_at, activated_at FROM ompf_indexes',
        )
      ).map(toEntry);
      if (existing.length === 0) {
        // A store in `public` from before the catalogue (checked first: a query naming a missing
        // table fails when it is parsed, whatever its WHERE says).
        const [present] = await tx.query<{ present: boolean }>(
          "SELECT to_regclass('public.ompf_store') IS NOT NULL AS present",
        );
        const [legacy] = present?.present
          ? await tx.query<{ model_id: string; dimension: number }>(
              'SELECT model_id, dimension FROM public.ompf_store',
            )
          : [];
        const homeModel = legacy?.model_id ?? modelId;
        await tx.query(
          `INSERT INTO ompf_indexes (model_id, schema_name, dimension, state, activated_at)
           VALUES ($1, $2, $3, 'active', now())`,
          [homeModel, HOME_SCHEMA, legacy?.dimension ?? dimension],
        );
        if (homeModel === modelId) return (await this.entryIn(tx, modelId))!;
      }
      const current = await this.entryIn(tx, modelId);
      if (current && current.state !== 'retired') {
        // Deploying back to a model whose index is still active: a half-built index for another
        // model is abandoned (retired; maintenance drops it).
        if (current.state === 'active') {
          await tx.query(
            "UPDATE ompf_indexes SET state = 'retired', retired_at = now() WHERE state = 'building'",
          );
        }
        return current;
      }
      await tx.query(
        "UPDATE ompf_indexes SET state = 'retired', retired_at = now() WHERE state = 'building'",
      );
      // A retired index of this model is not reused: it missed every change since it was retired.
      await tx.query("DELETE FROM ompf_indexes WHERE model_id = $1 AND state = 'retired'", [modelId]);
      const schema = schemaForModel(modelId);
      await tx.query(
        `INSERT INTO ompf_indexes (model_id, schema_name, dimension, state) VALUES ($1, $2, $3, 'building')`,
        [modelId, schema, dimension],
      );
      return (await this.entryIn(tx, modelId))!;
    });
  }

  /** CREATE SCHEMA for an index (the admin user; idempotent). */
  async createSchema(schema: string): Promise<void> {
    if (schema === HOME_SCHEMA) return;
    assertIndexSchema(schema);
    await this.sql.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  }

  /**
   * The building index answers queries from now on; the active one is retired. Refused (false) when
   * `modelId` is not the building index any more (a deployment changed the model again meanwhile).
   */
  async switchTo(modelId: string): Promise<boolean> {
    return this.sql.transaction(async (tx) => {
      await tx.query('LOCK TABLE ompf_indexes IN EXCLUSIVE MODE');
      const [building] = await tx.query<{ model_id: string }>(
        "SELECT model_id FROM ompf_indexes WHERE state = 'building'",
      );
      if (building?.model_id !== modelId) return false;
      await tx.query("UPDATE ompf_indexes SET state = 'retired', retired_at = now() WHERE state = 'active'");
      await tx.query("UPDATE ompf_indexes SET state = 'active', activated_at = now() WHERE model_id = $1", [
        modelId,
      ]);
      return true;
    });
  }

  /**
   * Drop the retired indexes that have been retired for `graceSeconds` (query containers re-read the
   * catalogue every few seconds, so none still reads them). The admin user; returns their model ids.
   */
  async dropRetired(graceSeconds: number): Promise<string[]> {
    const retired = await this.sql.query<{ model_id: string; schema_name: string }>(
      `SELECT model_id, schema_name FROM ompf_indexes
       WHERE state = 'retired' AND retired_at <= now() - make_interval(secs => $1)`,
      [graceSeconds],
    );
    for (const { model_id: modelId, schema_name: schema } of retired) {
      if (schema === HOME_SCHEMA) {
        await dropSchema(this.sql);
      } else {
        assertIndexSchema(schema);
        await this.sql.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      }
      await this.sql.query('DELETE FROM ompf_indexes WHERE model_id = $1', [modelId]);
    }
    return retired.map((r) => r.model_id);
  }

  async startRun(modelId: string, trigger: string): Promise<string> {
    const [row] = await this.sql.query<{ id: string }>(
      'INSERT INTO ompf_reconcile_runs (model_id, trigger) VALUES ($1, $2) RETURNING id::text AS id',
      [modelId, trigger],
    );
    return row!.id;
  }

  async finishRun(
    id: string,
    counts: ReconcileRunCounts,
    outcome: { switched: boolean; error?: string },
  ): Promise<void> {
    await this.sql.query(
      `UPDATE ompf_reconcile_runs SET finished_at = now(), listed = $2, missing = $3, changed = $4,
         gone = $5, unchanged = $6, enqueued = $7, switched = $8, error = $9
       WHERE id = $1::bigint`,
      [
        id,
        counts.listed,
        counts.missing,
        counts.changed,
        counts.gone,
        counts.unchanged,
        counts.enqueued,
        outcome.switched,
        outcome.error ?? null,
      ],
    );
  }

  async recentRuns(limit: number): Promise<ReconcileRun[]> {
    const rows = await this.sql.query<RunRow>(
      `SELECT id::text AS id, model_id, trigger, started_at, finished_at, listed, missing, changed, gone,
              unchanged, enqueued, switched, error
       FROM ompf_reconcile_runs ORDER BY started_at DESC, id DESC LIMIT $1`,
      [limit],
    );
    return rows.map((r) => ({
      id: r.id,
      modelId: r.model_id,
      trigger: r.trigger,
      startedAt: new Date(r.started_at),
      finishedAt: r.finished_at ? new Date(r.finished_at) : undefined,
      counts: {
        listed: r.listed,
        missing: r.missing,
        changed: r.changed,
        gone: r.gone,
        unchanged: r.unchanged,
        enqueued: r.enqueued,
      },
      switched: r.switched,
      error: r.error ?? undefined,
    }));
  }

  async recordEventError(record: EventErrorRecord): Promise<void> {
    await this.sql.query(
      `INSERT INTO ompf_event_errors (message_id, source, key, error) VALUES ($1, $2, $3, $4)
       ON CONFLICT (message_id) DO UPDATE SET error = EXCLUDED.error, source = EXCLUDED.source,
         key = EXCLUDED.key, attempts = ompf_event_errors.attempts + 1, last_failed_at = now()`,
      [record.messageId, record.source ?? null, record.key ?? null, record.error],
    );
  }

  async clearEventErrors(messageIds: readonly string[]): Promise<void> {
    if (messageIds.length === 0) return;
    await this.sql.query('DELETE FROM ompf_event_errors WHERE message_id = ANY($1::text[])', [messageIds]);
  }

  async eventErrors(messageIds: readonly string[]): Promise<Map<string, EventErrorRecord>> {
    const rows = await this.sql.query<{
      message_id: string;
      source: string | null;
      key: string | null;
      error: string;
      attempts: number;
      last_failed_at: Date;
    }>(
      `SELECT message_id, source, key, error, attempts, last_failed_at FROM ompf_event_errors
       WHERE message_id = ANY($1::text[])`,
      [messageIds],
    );
    return new Map(
      rows.map((r) => [
        r.message_id,
        {
          messageId: r.message_id,
          source: r.source ?? undefined,
          key: r.key ?? undefined,
          error: r.error,
          attempts: r.attempts,
          lastFailedAt: new Date(r.last_failed_at),
        },
      ]),
    );
  }

  private async entryIn(tx: SqlExecutor, modelId: string): Promise<CatalogueEntry | undefined> {
    const [row] = await tx.query<EntryRow>(
      `SELECT model_id, schema_name, dimension, state, created_at, activated_at FROM ompf_indexes
       WHERE model_id = $1`,
      [modelId],
    );
    return row ? toEntry(row) : undefined;
  }
}

function assertIndexSchema(schema: string): void {
  if (!INDEX_SCHEMA.test(schema)) throw new Error(`'${schema}' is not an index schema name.`);
}

function toEntry(row: EntryRow): CatalogueEntry {
  return {
    modelId: row.model_id,
    schema: row.schema_name,
    dimension: row.dimension,
    state: row.state,
    createdAt: new Date(row.created_at),
    activatedAt: row.activated_at ? new Date(row.activated_at) : undefined,
  };
}
