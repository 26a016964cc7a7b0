import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { Signer } from '@aws-sdk/rds-signer';
import type pg from 'pg';
import { Logger } from '@aws-lambda-powertools/logger';
import { z } from 'zod';
import { databaseUrlFromSecret } from '../adapters/aws/secrets';
import {
  createMigrateHandler,
  type MaintenanceResult,
  type MigrationResult,
  type Provider,
} from '../adapters/aws/lambda';
import { resolveModelSpec } from '../adapters/models/model-registry';
import { HOME_SCHEMA, PgIndexCatalogue } from '../adapters/store/index-catalogue';
import { migrate } from '../adapters/store/migrator';
import { PgVectorStore, type StoreOptions } from '../adapters/store/pg-vector-store';
import {
  PostgresSqlClient,
  resilientPool,
  searchPathOption,
  type SqlClient,
} from '../adapters/store/sql-client';
import { ConfigError, ModelMismatchError } from '../core/errors';
import type { CatalogueEntry } from '../core/ports';
import { integer, loadConfig, type Config } from './config';
import { storeOptions } from './store-identity';

/**
 * The composition root for AWS Lambda, part one: configuration, clients, the database and the schema
 * steps (everything the migrate function needs). It loads no model stack (sharp, onnxruntime): the
 * migrate function has no native layer. aws.ts adds the model and the indexer and query handlers.
 *
 * The only place the cloud adapters are chosen. Configuration is
 * validated when a function module is imported (cold start), so a missing variable fails the
 * container before any event; the S3 client, the database pool and the ONNX session are created once
 * per container and reused by every invocation.
 */
const awsEnvSchema = z.object({
  OMPF_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
  /** Secrets Manager secret with the database credentials (RDS JSON). Or DATABASE_URL. */
  OMPF_DB_SECRET_ARN: z.string().min(1).optional(),
  /**
   * Or RDS IAM authentication: the database host and the role to log in as, with a 15-minute token
   * signed by the function's own credentials as the password (no password exists anywhere).
   */
  OMPF_DB_HOST: z
    .string()
    .regex(/^[A-Za-z0-9.-]+$/, 'a host name')
    .optional(),
  OMPF_DB_PORT: integer(1, 65_535).default(5432),
  OMPF_DB_USER: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a PostgreSQL role name')
    .optional(),
  OMPF_DB_NAME: z.string().min(1).default('ompf'),
  OMPF_DB_MAX_CONNECTIONS: integer(1, 20).default(2),
  /** Presigned query uploads land here; the indexer never indexes keys under it. */
  OMPF_UPLOADS_PREFIX: z
    .string()
    .regex(/^[^/].*\/$/, "a key prefix ending with '/', such as 'query-uploads/'")
    .default('query-uploads/'),
  OMPF_URL_TTL_SECONDS: integer(60, 43_200).default(900),
  OMPF_UPLOAD_TTL_SECONDS: integer(60, 3_600).default(300),
  /** Lambda's 6 MB payload holds about 4.5 MB of image once base64-encoded. */
  OMPF_MAX_INLINE_IMAGE_BYTES: integer(1, 4_500_000).default(4_500_000),
  /** An S3-compatible endpoint (tests, other clouds); path-style addressing. Unset on AWS. */
  OMPF_S3_ENDPOINT: z.url().optional(),
  /**
   * The model the stage used before a model change (cdk.json `previousModel`): its file ships in the
   * model layer too, so queries by image keep being answered from the old index while the new one is
   * built. Unset: during a re-index only queries by key are answered.
   */
  OMPF_PREVIOUS_MODEL: z.string().min(1).optional(),
  /** The indexing queue (reconciliation sends its checks there) and the dead-letter queue. */
  OMPF_QUEUE_URL: z.url().optional(),
  /** The indexing queue's ARN: where a redrive moves the dead letters (named, so no wider grant). */
  OMPF_QUEUE_ARN: z
    .string()
    .regex(/^arn:[a-z-]+:sqs:/, 'an SQS queue ARN')
    .optional(),
  OMPF_DEAD_LETTER_QUEUE_URL: z.url().optional(),
  OMPF_DEAD_LETTER_QUEUE_ARN: z
    .string()
    .regex(/^arn:[a-z-]+:sqs:/, 'an SQS queue ARN')
    .optional(),
  /** Refuse to deploy on an older pgvector (the migrate step checks). */
  OMPF_MIN_PGVECTOR: z
    .string()
    .regex(/^\d+\.\d+\.\d+$/, 'a version such as 0.8.2')
    .default('0.8.2'),
});

export interface AwsConfig {
  readonly base: Config;
  readonly bucket: string;
  readonly dbSecretArn: string | undefined;
  /** RDS IAM authentication as this role (indexer, query); undefined: the secret or DATABASE_URL. */
  readonly dbIam: { readonly host: string; readonly port: number; readonly user: string } | undefined;
  readonly dbName: string;
  readonly dbMaxConnections: number;
  readonly uploadsPrefix: string;
  readonly urlTtlSeconds: number;
  readonly uploadTtlSeconds: number;
  readonly maxInlineImageBytes: number;
  readonly s3Endpoint: string | undefined;
  readonly minPgvector: string;
  readonly previousModel: string | undefined;
  readonly queueUrl: string | undefined;
  readonly queueArn: string | undefined;
  readonly deadLetters: { readonly url: string; readonly arn: string } | undefined;
}

/** Every variable checked at once; one ConfigError lists every problem. */
export function loadAwsConfig(env: NodeJS.ProcessEnv = process.env): AwsConfig {
  const problems: string[] = [];
  let base: Config | undefined;
  try {
    base = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...((error.context.problems as string[] | undefined) ?? [error.message]));
  }
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = awsEnvSchema.safeParse(present);
  if (!parsed.success) {
    problems.push(...parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  if (parsed.success && base) {
    const e = parsed.data;
    if (!e.OMPF_DEAD_LETTER_QUEUE_URL !== !e.OMPF_DEAD_LETTER_QUEUE_ARN)
      problems.push('OMPF_DEAD_LETTER_QUEUE_URL / OMPF_DEAD_LETTER_QUEUE_ARN: set both or neither');
    if (!e.OMPF_DB_HOST !== !e.OMPF_DB_USER)
      problems.push('OMPF_DB_HOST / OMPF_DB_USER: set both or neither');
    const ways = [e.OMPF_DB_SECRET_ARN, base.databaseUrl, e.OMPF_DB_HOST].filter(Boolean).length;
    if (ways !== 1) {
      problems.push(
        'OMPF_DB_SECRET_ARN / DATABASE_URL / OMPF_DB_HOST + OMPF_DB_USER: set exactly one of them',
      );
    }
  }
  if (problems.length > 0 || !parsed.success || !base) {
    throw new ConfigError(`Invalid Lambda configuration: ${problems.join('; ')}.`, {
      hint: 'The stack sets these variables; see "Deploy to AWS" in the README.',
      context: { problems },
    });
  }
  const e = parsed.data;
  return {
    base,
    bucket: e.OMPF_BUCKET,
    dbSecretArn: e.OMPF_DB_SECRET_ARN,
    dbIam:
      e.OMPF_DB_HOST && e.OMPF_DB_USER
        ? { host: e.OMPF_DB_HOST, port: e.OMPF_DB_PORT, user: e.OMPF_DB_USER }
        : undefined,
    dbName: e.OMPF_DB_NAME,
    dbMaxConnections: e.OMPF_DB_MAX_CONNECTIONS,
    uploadsPrefix: e.OMPF_UPLOADS_PREFIX,
    urlTtlSeconds: e.OMPF_URL_TTL_SECONDS,
    uploadTtlSeconds: e.OMPF_UPLOAD_TTL_SECONDS,
    maxInlineImageBytes: e.OMPF_MAX_INLINE_IMAGE_BYTES,
    s3Endpoint: e.OMPF_S3_ENDPOINT,
    minPgvector: e.OMPF_MIN_PGVECTOR,
    previousModel: e.OMPF_PREVIOUS_MODEL,
    queueUrl: e.OMPF_QUEUE_URL,
    queueArn: e.OMPF_QUEUE_ARN,
    deadLetters:
      e.OMPF_DEAD_LETTER_QUEUE_URL && e.OMPF_DEAD_LETTER_QUEUE_ARN
        ? { url: e.OMPF_DEAD_LETTER_QUEUE_URL, arn: e.OMPF_DEAD_LETTER_QUEUE_ARN }
        : undefined,
  };
}

export interface AwsClients {
  readonly s3: S3Client;
  readonly secrets: SecretsManagerClient;
  readonly sqs: SQSClient;
}

export function createAwsClients(config: AwsConfig): AwsClients {
  return {
    s3: new S3Client(
      config.s3Endpoint ? { endpoint: config.s3Endpoint, forcePathStyle: true, region: 'us-east-1' } : {},
    ),
    secrets: new SecretsManagerClient({}),
    sqs: new SQSClient({}),
  };
}

/** How long a password read from the secret is reused for new connections (rotation is followed). */
const SECRET_REUSE_MS = 5 * 60_000;

/**
 * The database, one of three ways: DATABASE_URL (tests, other clouds); RDS IAM authentication as the
 * function's own role (the indexer and the query API: each new connection gets a fresh token signed
 * with the function's credentials, so no password is stored or configured); or the admin secret
 * (the migrate step), re-read for new connections at most every 5 minutes so a rotated password is
 * picked up without a cold start. TLS with the certificate and host name verified in both AWS modes.
 */
export async function openSqlClient(
  config: AwsConfig,
  clients: AwsClients,
  schema?: string,
): Promise<SqlClient> {
  if (config.base.databaseUrl) {
    return PostgresSqlClient.connect(config.base.databaseUrl, {
      maxConnections: config.dbMaxConnections,
      ...(schema ? { schema } : {}),
    });
  }
  // The pool that survives a database restart, idle or mid-transaction (lib/adapters/store/sql-client.ts).
  return new PostgresSqlClient(
    resilientPool({ ...(await databasePoolConfig(config, clients)), ...searchPathOption(schema) }),
  );
}

/** The pool settings of the two AWS modes (IAM token or the secret); exported for the tests. */
export async function databasePoolConfig(config: AwsConfig, clients: AwsClients): Promise<pg.PoolConfig> {
  const pool = { max: config.dbMaxConnections, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 };
  let connection: pg.PoolConfig;
  if (config.dbIam) {
    const { host, port, user } = config.dbIam;
    const signer = new Signer({ hostname: host, port, username: user });
    connection = { host, port, user, database: config.dbName, password: () => signer.getAuthToken() };
  } else {
    const read = async () =>
      new URL(await databaseUrlFromSecret(clients.secrets, config.dbSecretArn!, config.dbName));
    let url = await read();
    let readAt = Date.now();
    connection = {
      host: url.hostname,
      port: Number(url.port),
      user: decodeURIComponent(url.username),
      database: decodeURIComponent(url.pathname.slice(1)),
      password: async () => {
        if (Date.now() - readAt > SECRET_REUSE_MS) {
          url = await read();
          readAt = Date.now();
        }
        return decodeURIComponent(url.password);
      },
    };
  }
  return { ...connection, ...pool, ssl: { rejectUnauthorized: true } };
}

/**
 * What the indexer, the query API and the migrate step are built from; `sql` (the control schema,
 * public) is opened once, and so is each index schema's pool (`sqlFor`).
 */
export interface AwsParts {
  readonly config: AwsConfig;
  readonly clients: AwsClients;
  readonly sql: Provider<SqlClient>;
  sqlFor(schema: string): Promise<SqlClient>;
}

/**
 * The stage's index catalogue, or undefined for a database without one (one index in `public`: the
 * handler tests, a DATABASE_URL user who never ran the migrate step).
 */
export async function readCatalogue(parts: AwsParts): Promise<CatalogueEntry[] | undefined> {
  const sql = await parts.sql();
  const [table] = await sql.query<{ present: boolean }>(
    "SELECT to_regclass('public.ompf_indexes') IS NOT NULL AS present",
  );
  return table?.present ? new PgIndexCatalogue(sql).entries() : undefined;
}

/** The index of `options.modelId` (building or active), opened in its schema. */
export async function openIndex(parts: AwsParts, options: StoreOptions): Promise<PgVectorStore> {
  const entries = await readCatalogue(parts);
  if (!entries) return PgVectorStore.open(await parts.sql(), options);
  const entry = entries.find((e) => e.modelId === options.modelId && e.state !== 'retired');
  if (!entry) {
    const held = entries.map((e) => `${e.modelId} (${e.state})`).join(', ') || 'none';
    throw new ModelMismatchError(
      `This stage's database has no index for model '${options.modelId}'; it has: ${held}.`,
      {
        hint: 'Deploy the stage with this model: its migrate step creates the index, and a reconcile run fills it.',
        context: { requestedModel: options.modelId },
      },
    );
  }
  return PgVectorStore.open(await parts.sqlFor(entry.schema), options);
}

export async function openStore(parts: AwsParts): Promise<PgVectorStore> {
  const spec = resolveModelSpec(parts.config.base.model);
  return openIndex(parts, storeOptions(spec, parts.config.base));
}

/** The options that open an index of the catalogue to read it (reconcile, status): its own ids. */
export function readerOptions(entry: CatalogueEntry, config: Config): StoreOptions {
  return {
    modelId: entry.modelId,
    dimension: entry.dimension,
    hnswMinRows: config.hnswMinRows,
    indexBuildMemory: config.indexBuildMemory,
  };
}

/**
 * The deploy-time schema step: check pgvector's version, apply the control schema's migrations (the
 * index catalogue), register the configured model's index (a new model or transform gets a new
 * index in a schema of its own, built beside the one that keeps answering queries), and apply the
 * index migrations (the same files as the local mode) to every index in use. `eachSchema` runs as
 * the admin in every schema afterwards (the function roles' grants).
 */
export async function runMigrations(
  parts: AwsParts,
  eachSchema: (sql: SqlClient) => Promise<void> = () => Promise.resolve(),
): Promise<MigrationResult> {
  const sql = await parts.sql();
  // Refuse a server whose newest pgvector is too old before anything is changed: a failed deployment
  // rolls back the stack, not the database, so the check comes first (found with the Lambda harness).
  const [offered] = await sql.query<{ version: string | null }>(
    "SELECT default_version AS version FROM pg_available_extensions WHERE name = 'vector'",
  );
  const available = offered?.version ?? '0';
  if (compareVersions(available, parts.config.minPgvector) < 0) {
    throw new ConfigError(`pgvector ${available} is older than the required ${parts.config.minPgvector}.`, {
      hint: 'Pick a newer PostgreSQL minor version for the database (see cdk.json), then deploy again.',
    });
  }
  const catalogue = new PgIndexCatalogue(sql);
  await catalogue.migrate();
  const options = storeOptions(resolveModelSpec(parts.config.base.model), parts.config.base);
  const target = await catalogue.plan(options.modelId, options.dimension);
  await catalogue.createSchema(target.schema);
  const targetSql = await parts.sqlFor(target.schema);
  const [table] = await targetSql.query<{ present: boolean }>(
    "SELECT to_regclass(format('%I.ompf_migrations', current_schema())) IS NOT NULL AS present",
  );
  const before = table?.present
    ? await targetSql.query<{ version: number }>('SELECT version FROM ompf_migrations')
    : [];
  const granted = new Set<string>();
  for (const entry of await catalogue.entries()) {
    if (entry.state === 'retired') continue;
    granted.add(entry.schema);
    const indexSql = await parts.sqlFor(entry.schema);
    // The configured index is opened (created, migrated, identity checked); another one (the index
    // still answering queries while this one is built) gets the new migrations with its own ids.
    if (entry.modelId === options.modelId) await PgVectorStore.open(indexSql, options);
    else await migrate(indexSql, { modelId: entry.modelId, dimension: entry.dimension });
    await eachSchema(indexSql);
  }
  // The control schema's own tables (the catalogue), when no index lives there.
  if (!granted.has(HOME_SCHEMA)) await eachSchema(sql);
  // Move an existing installation to the newest pgvector the server offers.
  await sql.exec('ALTER EXTENSION vector UPDATE');
  const [row] = await sql.query<{ version: string }>(
    "SELECT extversion AS version FROM pg_extension WHERE extname = 'vector'",
  );
  const pgvector = row?.version ?? '0';
  const after = await targetSql.query<{ version: number }>(
    'SELECT version FROM ompf_migrations ORDER BY version',
  );
  const known = new Set(before.map((r) => r.version));
  return {
    applied: after.map((r) => r.version).filter((v) => !known.has(v)),
    pgvector,
    index: { modelId: target.modelId, state: target.state },
  };
}

/** Build the ANN index once the store is large enough; forget tombstones older than `tombstoneDays`. */
export async function runMaintenance(parts: AwsParts, tombstoneDays = 30): Promise<MaintenanceResult> {
  const store = await openStore(parts);
  const strategy = await store.optimise();
  const prunedTombstones = await store.pruneTombstones(new Date(Date.now() - tombstoneDays * 86_400_000));
  // Indexes replaced by a re-index, once no query container can still be reading them.
  const droppedIndexes = (await readCatalogue(parts))
    ? await new PgIndexCatalogue(await parts.sql()).dropRetired(RETIRED_GRACE_SECONDS)
    : [];
  return { strategy, prunedTombstones, droppedIndexes };
}

/** Query containers re-read the catalogue every CATALOGUE_TTL_MS; a retired index is kept well past it. */
export const RETIRED_GRACE_SECONDS = 300;

export function compareVersions(a: string, b: string): number {
  const x = a.split(/[.-]/).map((part) => Number.parseInt(part, 10) || 0);
  const y = b.split(/[.-]/).map((part) => Number.parseInt(part, 10) || 0);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * A value created on first use and kept for the container's life. A failure (database down at cold
 * start) is not kept: the next invocation tries again.
 */
export function once<T>(create: () => Promise<T>): Provider<T> {
  let value: Promise<T> | undefined;
  return () => {
    if (!value) {
      value = create();
      value.catch(() => {
        value = undefined;
      });
    }
    return value;
  };
}

const opened = new Set<Provider<SqlClient>>();

export function awsParts(
  config: AwsConfig,
  overrides: { clients?: AwsClients; sql?: Provider<SqlClient> } = {},
): AwsParts {
  const clients = overrides.clients ?? createAwsClients(config);
  let sql = overrides.sql;
  const given = sql !== undefined;
  if (!sql) {
    sql = once(() => openSqlClient(config, clients));
    opened.add(sql);
  }
  const home = sql;
  const bySchema = new Map<string, Provider<SqlClient>>();
  const sqlFor = (schema: string): Promise<SqlClient> => {
    if (schema === HOME_SCHEMA) return home();
    if (given)
      throw new Error(`A given SQL client serves the '${HOME_SCHEMA}' schema only, not '${schema}'.`);
    let provider = bySchema.get(schema);
    if (!provider) {
      provider = once(() => openSqlClient(config, clients, schema));
      bySchema.set(schema, provider);
      opened.add(provider);
    }
    return provider();
  };
  return { config, clients, sql, sqlFor };
}

/** Close the database pools this module opened (tests, or a runtime shutdown hook). */
export async function closeAwsResources(): Promise<void> {
  const providers = [...opened];
  opened.clear();
  await Promise.all(providers.map(async (sql) => (await sql().catch(() => undefined))?.close()));
}

export const logger = new Logger({ serviceName: 'ompf' });

export function migrateHandler(parts: AwsParts = awsParts(loadAwsConfig())) {
  return createMigrateHandler(
    { migrate: () => runMigrations(parts), maintain: () => runMaintenance(parts) },
    logger,
  );
}
