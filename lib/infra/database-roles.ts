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
export const DATABASE_ROLES = { indexer: 'ompf_indexer', query: 'ompf_query' } as const;

export type DatabaseRole = (typeof DATABASE_ROLES)[keyof typeof DATABASE_ROLES];

/**
 * Create the function roles if missing and grant them exactly their privileges on the current schema
 * (run as the admin user, after the migrations). Idempotent. One literal: the role names are
 * DATABASE_ROLES' (a test keeps them equal), the schema and database names are quoted by format('%I').
 */
export async function grantFunctionRoles(sql: SqlExecutor): Promise<void> {
  await sql.exec(`DO $$
DECLARE
  schema_name text := current_schema();
  role_name text;
  table_name text;
BEGIN
  FOREACH role_name IN ARRAY ARRAY['ompf_indexer', 'ompf_query'] LOOP
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
  -- The index's data tables: only the indexer writes them.
  FOREACH table_name IN ARRAY ARRAY['images', 'index_failures', 'image_tombstones'] LOOP
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %I.%I TO ompf_indexer', schema_name, table_name);
  END LOOP;
  EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO ompf_indexer', schema_name);
END $$`);
}
