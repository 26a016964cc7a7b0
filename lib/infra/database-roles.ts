import type { SqlExecutor } from '../adapters/store/sql-client';

/**
 * The database roles the Lambdas log in as, one per function, instead of the admin user. They
 * authenticate with RDS IAM tokens (rds_iam; no password exists anywhere): the stack grants each
 * function `rds-db:connect` to its own role only, and the migrate step (functions/migrate.ts) creates
 * the roles and their privileges after every migration. Plain data, no aws-cdk-lib: the migrate
 * bundle imports it too.
 *
 * - ompf_indexer: reads and writes the index (images, failures, tombstones); reads the store's
 *   metadata and migration list. No DDL on existing tables (they belong to the admin user).
 * - ompf_query: reads only.
 *
 * Neither may create anything: USAGE on the schema only. PgVectorStore.open runs the migrator, which
 * on a migrated store only reads ompf_migrations (it creates that table only when it is missing).
 */
export const DATABASE_ROLES = {
  indexer: 'ompf_indexer',
  query: 'ompf_query',
  operator: 'ompf_operator',
} as const;

export type DatabaseRole = (typeof DATABASE_ROLES)[keyof typeof DATABASE_ROLES];

/**
 * Create the function roles if missing and grant them exactly their privileges on the current schema
 * (run as the admin user, after the migrations, in every schema that holds an index and in the control
 * schema). Idempotent; tables the schema does not hold are skipped. One literal: the role names are
 * DATABASE_ROLES' (a test keeps them equal), the schema and database names are quoted by format('%I').
 *
 * - every role reads every table of the schema (an index, or the catalogue);
 * - ompf_indexer writes an index's data tables and the event errors (ompf_event_errors);
 * - ompf_operator (reconcile, dead letters, status) records reconcile runs and switches the catalogue
 *   from the building index to the new one; it writes no index row (its checks go through the queue).
 */
export async function grantFunctionRoles(sql: SqlExecutor): Promise<void> {
  await sql.exec(`DO $$
DECLARE
  schema_name text := current_schema();
  role_name text;
  table_name text;
BEGIN
  FOREACH role_name IN ARRAY ARRAY['ompf_indexer', 'ompf_query', 'ompf_operator'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', role_name);
    END IF;
    -- RDS: log in with an IAM authentication token instead of a password.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
      EXECUTE format('GRANT rds_iam TO %I', role_name);
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role_name);
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', schema_name, role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema_name, role_name);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', schema_name, role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', schema_name, role_name);
  END LOOP;
  -- The index's data tables and the event errors: only the indexer writes them.
  FOREACH table_name IN ARRAY ARRAY['images', 'index_failures', 'image_tombstones', 'ompf_event_errors'] LOOP
    IF to_regclass(format('%I.%I', schema_name, table_name)) IS NOT NULL THEN
      EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %I.%I TO ompf_indexer', schema_name, table_name);
    END IF;
  END LOOP;
  EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO ompf_indexer', schema_name);
  -- The catalogue: the operator records its runs and switches indexes.
  IF to_regclass(format('%I.ompf_reconcile_runs', schema_name)) IS NOT NULL THEN
    EXECUTE format('GRANT INSERT, UPDATE ON %I.ompf_reconcile_runs TO ompf_operator', schema_name);
    EXECUTE format('GRANT UPDATE ON %I.ompf_indexes TO ompf_operator', schema_name);
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO ompf_operator', schema_name);
  END IF;
END $$`);
}
