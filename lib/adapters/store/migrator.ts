import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SqlClient } from './sql-client';

const MIGRATIONS_DIR = join(__dirname, 'migrations');
/** The control schema's migrations (a cloud stage's index catalogue: index-catalogue.ts). */
export const CONTROL_MIGRATIONS_DIR = join(MIGRATIONS_DIR, 'control');

/**
 * Where applied migrations are recorded: each index schema has its own ledger; the control schema
 * (public, in the cloud) keeps the catalogue's apart, so the two sets never mix.
 */
export type MigrationLedger = 'ompf_migrations' | 'ompf_control_migrations';
const MIGRATION_FILE = /^(\d{4})_[a-z0-9_]+\.sql$/;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The versioned SQL files, in order. The same files serve PGlite and PostgreSQL. */
export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((file) => MIGRATION_FILE.test(file))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 4)),
      name: file,
      sql: readFileSync(join(dir, file), 'utf8'),
    }));
}

/**
 * Apply pending migrations in one transaction (all or nothing), recording them in ompf_migrations.
 * Store parameters (model id, dimension) are passed as transaction-local settings, so the SQL files
 * stay static text. A PostgreSQL advisory lock serialises concurrent migrators (two Lambdas cold
 * starting at once); PGlite is single-connection and needs none.
 */
export async function migrate(
  client: SqlClient,
  settings: { modelId: string; dimension: number },
  migrations: readonly Migration[] = loadMigrations(),
  ledger: MigrationLedger = 'ompf_migrations',
): Promise<number[]> {
  return client.transaction(async (tx) => {
    if (client.engine === 'postgresql')
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ledger]);
    // Created only when missing: PostgreSQL checks CREATE on the schema even for CREATE TABLE IF NOT
    // EXISTS, and the Lambdas' roles (lib/infra/database-roles.ts) must open a migrated store without it.
    const [existing] = await tx.query<{ present: boolean }>(
      // In this schema only: an index schema's search_path has `public` after it, whose ledger is not its own.
      "SELECT to_regclass(format('%I.%I', current_schema(), $1::text)) IS NOT NULL AS present",
      [ledger],
    );
    if (!existing?.present) {
      await tx.exec(
        `CREATE TABLE ${ledger} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
    }
    const applied = new Set(
      (await tx.query<{ version: number }>(`SELECT version FROM ${ledger}`)).map((row) => row.version),
    );
    const appliedNow: number[] = [];
    for (const migration of migrations) {
      if (applied.has(migration.version)) continue;
      await tx.query("SELECT set_config('ompf.model_id', $1, true), set_config('ompf.dimension', $2, true)", [
        settings.modelId,
        String(settings.dimension),
      ]);
      await tx.exec(migration.sql);
      await tx.query(`INSERT INTO ${ledger} (version, name) VALUES ($1, $2)`, [
        migration.version,
        migration.name,
      ]);
      appliedNow.push(migration.version);
    }
    return appliedNow;
  });
}
