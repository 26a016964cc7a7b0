import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import pg from 'pg';
import { DependencyUnavailableError } from '../../core/errors';

/**
 * The one SQL surface the store uses. Both engines run the same parameterised SQL text; only the
 * transport differs: a pg connection pool for PostgreSQL, an in-process PGlite for the embedded store.
 */
export interface SqlExecutor {
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
  /** Multi-statement script without parameters (migrations). */
  exec(script: string): Promise<void>;
}

export interface SqlClient extends SqlExecutor {
  readonly engine: 'pglite' | 'postgresql';
  /** Run `work` in one transaction on one connection; rolled back if it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * A pg pool that survives the database going away (restart, failover): a connection lost while idle
 * is dropped by the pool, and so is one lost while checked out. pg-pool removes its error listener
 * from a client for as long as it is checked out (a transaction), so a connection terminated between
 * two statements of a transaction was an unhandled 'error' event that ended the process (found by the
 * soak's database restarts). The statement that follows fails as a connection error (retryable,
 * DependencyUnavailableError), and the pool discards the dead client on release.
 */
export function resilientPool(config: pg.PoolConfig): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * Connections whose unqualified table names resolve in `schema` (a cloud stage's index, one schema
 * per model id: index-catalogue.ts), with `public` after it for pgvector's types. A startup
 * parameter, so every connection of the pool has it from the first statement.
 */
export function searchPathOption(schema: string | undefined): { options?: string } {
  if (schema === undefined || schema === 'public') return {};
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`'${schema}' is not a schema name.`);
  return { options: `-c search_path=${schema},public` };
}

export class PostgresSqlClient implements SqlClient {
  readonly engine = 'postgresql';

  constructor(private readonly pool: pg.Pool) {}

  static connect(
    connectionString: string,
    options: { maxConnections?: number; schema?: string } = {},
  ): PostgresSqlClient {
    return new PostgresSqlClient(
      resilientPool({
        connectionString,
        max: options.maxConnections ?? 4,
        connectionTimeoutMillis: 10_000,
        idleTimeoutMillis: 30_000,
        ...searchPathOption(options.schema),
      }),
    );
  }

  async query<Row>(text: string, params: readonly unknown[] = []): Promise<Row[]> {
    return guard(async () => (await this.pool.query(text, params as unknown[])).rows as Row[]);
  }

  async exec(script: string): Promise<void> {
    await guard(() => this.pool.query(script));
  }

  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const client = await guard(() => this.pool.connect());
    try {
      await client.query('BEGIN');
      const result = await work({
        query: async <Row>(text: string, params: readonly unknown[] = []) =>
          (await guard(() => client.query(text, params as unknown[]))).rows as Row[],
        exec: async (script: string) => {
          await guard(() => client.query(script));
        },
      });
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export class PgliteSqlClient implements SqlClient {
  readonly engine = 'pglite';

  private constructor(private readonly db: PGlite) {}

  /** `dataDir` undefined: an in-memory database (evaluation runs, tests). */
  static async open(dataDir: string | undefined): Promise<PgliteSqlClient> {
    if (dataDir) mkdirSync(dataDir, { recursive: true });
    const db = await PGlite.create({ ...(dataDir ? { dataDir } : {}), extensions: { vector } });
    return new PgliteSqlClient(db);
  }

  async query<Row>(text: string, params: readonly unknown[] = []): Promise<Row[]> {
    return (await this.db.query<Row>(text, params as unknown[], this.binaryParameters(params))).rows;
  }

  async exec(script: string): Promise<void> {
    await this.db.exec(script);
  }

  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) =>
      work({
        query: async <Row>(text: string, params: readonly unknown[] = []) =>
          (await tx.query<Row>(text, params as unknown[], this.binaryParameters(params))).rows,
        exec: async (script: string) => {
          await tx.exec(script);
        },
      }),
    );
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  /**
   * Byte parameters (Buffer, Uint8Array) travel in binary format, as node-postgres sends them, so the
   * same SQL gets the same parameters on both engines (halfvec-binary.ts). PGlite picks a serializer
   * by the parameter's type OID and sends a byte view in binary, but has serializers only for its
   * built-in types and would stringify anything else (halfvec's OID is assigned at CREATE EXTENSION).
   */
  private binaryParameters(
    params: readonly unknown[],
  ): { serializers: Record<number, (value: unknown) => string> } | undefined {
    if (!params.some((param) => ArrayBuffer.isView(param))) return undefined;
    const builtIn = this.db.serializers;
    const passBytes = (oid: number) => (value: unknown) =>
      // A byte view is what PGlite's bind step sends in binary; the typings only know strings.
      ArrayBuffer.isView(value) ? (value as unknown as string) : (builtIn[oid]?.(value) ?? String(value));
    return {
      serializers: new Proxy<Record<number, (value: unknown) => string>>(
        {},
        { get: (_target, oid) => passBytes(Number(oid)) },
      ),
    };
  }
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EPIPE',
  '57P01',
  '57P03',
  '08006',
  '08001',
  '08003',
]);

/** Connection-level failures become DependencyUnavailableError (retryable); SQL errors pass through. */
async function guard<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : String(error);
    if (
      (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) ||
      /Connection terminated|timeout exceeded when trying to connect/i.test(message)
    ) {
      // The driver's message names hosts and ports: it stays in `cause` (logs, OMPF_DEBUG), never in
      // the message an API client sees.
      throw new DependencyUnavailableError('The database is unreachable.', {
        cause: error,
        hint: 'Check that PostgreSQL is running and DATABASE_URL is right, then retry.',
        ...(typeof code === 'string' ? { context: { code } } : {}),
      });
    }
    throw error;
  }
}
