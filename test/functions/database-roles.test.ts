import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { PgVectorStore } from '../../lib/adapters/store/pg-vector-store';
import { PostgresSqlClient, resilientPool, type SqlClient } from '../../lib/adapters/store/sql-client';
import { resolveModelSpec } from '../../lib/adapters/models/model-registry';
import { DATABASE_ROLES } from '../../lib/infra/database-roles';
import { closeAwsResources, loadAwsConfig } from '../../lib/runtime/aws';
import { storeOptions } from '../../lib/runtime/product';
import { MODELS_DIR } from '../helpers/shared';
import { engines, MIGRATE_CREATE_EVENT } from './fixtures';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

/**
 * The functions' database roles on a real PostgreSQL: the migrate function (functions/migrate.ts, as
 * deployed) creates ompf_indexer and ompf_query; logged in as each, the store opens and does its job,
 * and everything else is refused by PostgreSQL itself (SQLSTATE 42501, or 42501/42P01-free ownership
 * errors for DDL).
 */
const postgres = engines('ompf_roles_fn').filter((e) => e.url);

const create = MIGRATE_CREATE_EVENT;

const DENIED = /permission denied|must be owner/;

describe.each(postgres)('database roles on $name', (engine) => {
  const saved = { ...process.env };
  const env = {
    OMPF_BUCKET: 'ompf-dev-gallery',
    OMPF_MODEL: 'mobilenetv2-int8',
    OMPF_MODELS_DIR: MODELS_DIR,
    OMPF_MIN_PGVECTOR: '0.7.0',
    DATABASE_URL: engine.url!,
  };
  const spec = resolveModelSpec('mobilenetv2-int8');
  const options = storeOptions(spec, loadAwsConfig(env).base);
  const clients: SqlClient[] = [];
  /** A connection logged in as `role` (the test server trusts 127.0.0.1; RDS wants an IAM token). */
  const as = (role: string) => {
    const url = new URL(engine.url!);
    url.username = role;
    const client = PostgresSqlClient.connect(url.toString(), { maxConnections: 1 });
    clients.push(client);
    return client;
  };
  const record = (key: string) => ({
    source: 'ompf-dev-gallery',
    key,
    contentHash: 'a'.repeat(64),
    sequencer: '0A',
    width: 8,
    height: 8,
    bytes: 100,
    embedding: Float32Array.from({ length: spec.dimension }, (_, i) => (i === 0 ? 1 : 0)),
  });

  beforeAll(async () => {
    // Prepare: the real migrate function, configured from its environment at import (cold start).
    const admin = await engine.connect();
    clients.push(admin);
    Object.assign(process.env, env);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const migrate = require('../../functions/migrate') as {
      handler: (event: CloudFormationCustomResourceEvent) => Promise<unknown>;
    };
    await expect(migrate.handler(create)).resolves.toMatchObject({ PhysicalResourceId: 'ompf-schema' });
    // Running it again (every deploy that changes a migration) changes nothing and does not fail.
    await expect(migrate.handler({ ...create, RequestType: 'Update' } as never)).resolves.toBeDefined();
  });
  afterAll(async () => {
    process.env = saved;
    await closeAwsResources();
    await Promise.all(clients.map((c) => c.close()));
    await engine.drop();
  });

  it('creates both roles as plain logins (no superuser, no CREATEROLE, no CREATEDB)', async () => {
    const admin = clients[0]!;
    const roles = await admin.query<{
      rolname: string;
      super: boolean;
      createrole: boolean;
      createdb: boolean;
    }>(
      'SELECT rolname, rolsuper AS super, rolcreaterole AS createrole, rolcreatedb AS createdb FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname',
      [Object.values(DATABASE_ROLES)],
    );
    expect(roles).toEqual([
      { rolname: 'ompf_indexer', super: false, createrole: false, createdb: false },
      { rolname: 'ompf_operator', super: false, createrole: false, createdb: false },
      { rolname: 'ompf_query', super: false, createrole: false, createdb: false },
    ]);
  });

  it('ompf_indexer opens the store and writes the index; it cannot alter, drop or truncate anything', async () => {
    // Prepare
    const sql = as(DATABASE_ROLES.indexer);
    // Act: what the indexing Lambda does.
    const store = await PgVectorStore.open(sql, options);
    await store.upsertMany([record('cats/tom.jpg'), record('cats/felix.jpg')]);
    await store.recordFailure('ompf-dev-gallery', 'bad.jpg', 'The image could not be decoded.');
    await expect(store.remove('ompf-dev-gallery', ['cats/felix.jpg'])).resolves.toBe(1);
    // Assess
    await expect(store.listKeys('ompf-dev-gallery')).resolves.toEqual(['cats/tom.jpg']);
    for (const statement of [
      'DROP TABLE images',
      'TRUNCATE images',
      'ALTER TABLE images ADD COLUMN x int',
      "UPDATE ompf_store SET model_id = 'other'",
      'DELETE FROM ompf_migrations',
      'CREATE ROLE ompf_intruder',
      'CREATE TABLE intruder (x int)',
    ]) {
      await expect(sql.query(statement)).rejects.toThrow(DENIED);
    }
  });

  it('ompf_query opens the store and searches; it cannot write, delete or change anything', async () => {
    // Prepare
    const sql = as(DATABASE_ROLES.query);
    // Act: what the query Lambda does.
    const store = await PgVectorStore.open(sql, options);
    const hits = await store.nearest({ vector: record('q').embedding, limit: 5, metric: 'cosine' });
    // Assess
    expect(hits.map((h) => h.key)).toEqual(['cats/tom.jpg']);
    await expect(store.upsertMany([record('cats/new.jpg')])).rejects.toThrow(DENIED);
    await expect(store.recordFailure('ompf-dev-gallery', 'x.jpg', 'reason')).rejects.toThrow(DENIED);
    await expect(store.remove('ompf-dev-gallery', ['cats/tom.jpg'])).rejects.toThrow(DENIED);
    for (const statement of [
      'DELETE FROM images',
      "INSERT INTO image_tombstones (source, key, sequencer) VALUES ('b', 'k', '01')",
      'UPDATE index_failures SET reason = $$x$$',
      'DROP TABLE images',
      'TRUNCATE image_tombstones',
      'CREATE TABLE intruder (x int)',
    ]) {
      await expect(sql.query(statement)).rejects.toThrow(DENIED);
    }
    await expect(store.listKeys('ompf-dev-gallery')).resolves.toEqual(['cats/tom.jpg']);
  });
});

describe.each(postgres)('the Lambdas’ pool when PostgreSQL drops a connection ($name)', (engine) => {
  it('survives a connection terminated while checked out (a transaction): the next statement fails, the pool recovers', async () => {
    // Prepare: the pool the Lambdas use, one connection checked out as a transaction does.
    const pool = resilientPool({ connectionString: engine.url!, max: 1 });
    const admin = PostgresSqlClient.connect(engine.url!, { maxConnections: 1 });
    try {
      const client = await pool.connect();
      const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [
        { pid: number },
      ];
      // pg-pool takes its own error listener off a checked-out client: without ours, the 'error' the
      // client emits when its connection dies would be unhandled and end the process.
      expect(client.listenerCount('error')).toBeGreaterThan(0);
      // Act: the server ends the session between two statements (what a restart does).
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await new Promise((done) => setTimeout(done, 200));
      // Assess
      await expect(client.query('SELECT 1')).rejects.toThrow();
      client.release();
      await expect(pool.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
    } finally {
      await pool.end();
      await admin.close();
    }
  });
});
