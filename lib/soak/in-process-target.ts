import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { SqlClient } from '../adapters/store/sql-client';
import { FaultySqlClient } from './faulty-sql-client';
import { startLoopbackS3 } from './loopback-s3';
import type { BatchFaults, BatchResult, FaultCounts, SoakTarget } from './soak-target';

/**
 * The indexing Lambda handler (lib/runtime/aws.ts) called in this process, against s3rver on loopback
 * and PGlite (on disk) or PostgreSQL. Faults: a crash runs part of the batch only; S3 errors and slow
 * answers come from a middleware on the handler's S3 client; dropped connections and restarts from
 * FaultySqlClient (PostgreSQL restarts are real: `restartCommand` while a statement runs; PGlite is
 * closed and opened again from its directory between batches).
 */
export interface InProcessOptions {
  readonly modelsDir: string;
  readonly databaseUrl?: string | undefined;
  readonly restartCommand?: string | undefined;
  readonly rand: () => number;
  readonly log: (line: string) => void;
}

const BUCKET = 'ompf-soak';
const MODEL = 'mobilenetv2-int8';
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Runs a shell command; resolves when it exits 0 (not when its pipes close: a postmaster keeps them). */
export function runCommand(command: string): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn('bash', ['-c', command], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2_000);
    });
    child.on('error', fail);
    child.on('exit', (code) =>
      code === 0 ? done() : fail(new Error(`'${command}' exited ${String(code)}: ${stderr.trim()}`)),
    );
  });
}

/** A restart that must really restart the server: its start time has to change. */
export function checkedRestart(databaseUrl: string, restartCommand: string): () => Promise<boolean> {
  const startTime = async () => {
    const { PostgresSqlClient } = await import('../adapters/store/sql-client');
    const probe = PostgresSqlClient.connect(databaseUrl, { maxConnections: 1 });
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const [row] = await probe.query<{ t: string }>('SELECT pg_postmaster_start_time()::text AS t');
          return row?.t ?? '';
        } catch (error) {
          if (attempt >= 20) throw error;
          await sleep(250);
        }
      }
    } finally {
      await probe.close();
    }
  };
  return async () => {
    const before = await startTime();
    await runCommand(restartCommand);
    const after = await startTime();
    if (after === before) throw new Error(`'${restartCommand}' did not restart PostgreSQL`);
    return true;
  };
}

export async function inProcessTarget(options: InProcessOptions): Promise<SoakTarget> {
  process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
  // Loaded here, after the log level is set: the runtime creates its logger at import.
  const aws = await import('../runtime/aws');
  const { PgliteSqlClient, PostgresSqlClient } = await import('../adapters/store/sql-client');
  const { PgVectorStore } = await import('../adapters/store/pg-vector-store');
  const { resolveModelSpec } = await import('../adapters/models/model-registry');
  const { storeOptions } = await import('../runtime/store-identity');
  const { rand, log } = options;
  const pick = (n: number) => Math.floor(rand() * n);
  const counts: FaultCounts = { transientS3Error: 0, slowResponse: 0, databaseDrop: 0 };

  const s3 = await startLoopbackS3(BUCKET);
  const admin = new S3Client(s3.clientConfig);
  /** The handler's client: GetObject is slowed down or fails once for keys the driver arms. */
  const lambdaS3 = new S3Client(s3.clientConfig);
  let failNextGet = new Set<string>();
  lambdaS3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'GetObjectCommand') {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (failNextGet.delete(key)) {
          counts.transientS3Error += 1;
          throw Object.assign(new Error('soak: injected S3 503 SlowDown'), {
            name: 'SlowDown',
            $metadata: { httpStatusCode: 503 },
            $fault: 'server',
          });
        }
        if (rand() < 0.08) {
          counts.slowResponse += 1;
          await sleep(20 + pick(180));
        }
      }
      return next(args);
    },
    { step: 'initialize', name: 'ompfSoakFaults' },
  );

  let client: SqlClient;
  let cleanUp = () => Promise.resolve();
  let restart: ((database: FaultySqlClient) => Promise<boolean>) | undefined;
  let restartDuringBatch = false;
  const databaseUrl = options.databaseUrl;
  if (databaseUrl) {
    // A schema of its own, named from digits only (the one identifier the soak writes into SQL).
    const schema = `ompf_soak_${process.pid}_${Date.now()}`;
    if (!/^ompf_soak_\d+_\d+$/.test(schema)) throw new Error(`Unexpected schema name ${schema}`);
    const withAdmin = async (work: (connection: SqlClient) => Promise<void>) => {
      const connection = PostgresSqlClient.connect(databaseUrl, { maxConnections: 1 });
      try {
        await work(connection);
      } finally {
        await connection.close();
      }
    };
    await withAdmin((c) => c.exec(`CREATE SCHEMA ${schema}`));
    cleanUp = () => withAdmin((c) => c.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
    const url = new URL(databaseUrl);
    url.searchParams.set('options', `-c search_path=${schema},public`);
    // The pool the Lambdas use (resilientPool), so restarts exercise the production connection path.
    client = PostgresSqlClient.connect(url.toString(), { maxConnections: 2 });
    if (options.restartCommand) {
      restartDuringBatch = true;
      const restartServer = checkedRestart(databaseUrl, options.restartCommand);
      restart = () => restartServer();
    } else {
      log('soak: no --restart-command: database restarts are not injected on PostgreSQL');
    }
  } else {
    // On disk, so a restart (close, open again from the directory) has something to lose.
    const dataDir = mkdtempSync(join(tmpdir(), 'ompf-soak-pglite-'));
    client = await PgliteSqlClient.open(dataDir);
    restart = async (database) => {
      await database.replace(() => PgliteSqlClient.open(dataDir));
      return true;
    };
    cleanUp = () => Promise.resolve(rmSync(dataDir, { recursive: true, force: true }));
  }
  const env: NodeJS.ProcessEnv = {
    OMPF_BUCKET: BUCKET,
    OMPF_MODEL: MODEL,
    OMPF_MODELS_DIR: options.modelsDir,
    OMPF_S3_ENDPOINT: s3.endpoint,
    OMPF_UPLOADS_PREFIX: 'query-uploads/',
    OMPF_DB_SECRET_ARN: 'unused',
    AWS_REGION: 'us-east-1',
  };
  const config = aws.loadAwsConfig(env);
  const spec = resolveModelSpec(MODEL);
  const database = new FaultySqlClient(client);
  const store = await PgVectorStore.recreate(database, storeOptions(spec, config.base));
  const parts = aws.awsParts(config, {
    clients: {
      s3: lambdaS3,
      secrets: new SecretsManagerClient({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
    },
    sql: () => Promise.resolve(database),
  });
  const indexHandler = aws.indexImagesHandler(parts);
  const context = {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'ompf-soak-index-images',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:ompf-soak-index-images',
    memoryLimitInMB: '2048',
    awsRequestId: 'soak',
    logGroupName: '/aws/lambda/ompf-soak',
    logStreamName: 'soak',
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
  const invoke = async (records: SQSRecord[]): Promise<Set<string>> => {
    const event: SQSEvent = { Records: records };
    try {
      const response: SQSBatchResponse = await indexHandler(event, context);
      return new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    } catch {
      // Every record failed: Powertools throws and Lambda hands the whole batch back to the queue.
      return new Set(records.map((r) => r.messageId));
    }
  };

  return {
    engine: client.engine,
    runtime: 'in-process (this Node.js, the repository node_modules)',
    bucket: BUCKET,
    admin,
    store,
    config: config.base,
    counts,
    canRestart: restart !== undefined,
    async invoke(records: SQSRecord[], faults: BatchFaults): Promise<BatchResult> {
      const all = new Set(records.map((r) => r.messageId));
      // A crash: the container dies after part of the batch ran; SQS redelivers the whole batch.
      if (faults.crash) {
        await invoke(records.slice(0, 1 + pick(records.length - 1)));
        return { failed: all, restarted: false, crashed: true };
      }
      failNextGet = new Set(faults.failGets);
      if (faults.dropConnection) database.drop(1 + pick(records.length * 4));
      let restarted = false;
      let failed: Set<string>;
      if (faults.restart && restart && restartDuringBatch) {
        // The restart starts as one of the batch's statements does, so sessions die mid-batch.
        database.armRestart(1 + pick(records.length * 2), () => restart(database));
        failed = await invoke(records);
        restarted = await database.disarmRestart();
      } else {
        failed = await invoke(records);
      }
      database.drop(undefined);
      counts.databaseDrop = database.dropped;
      // The embedded store closes and opens again from its directory before the next batch.
      if (faults.restart && restart && !restartDuringBatch) restarted = await restart(database);
      failNextGet.clear();
      return { failed, restarted };
    },
    async close() {
      admin.destroy();
      lambdaS3.destroy();
      await database.close();
      await cleanUp();
      await s3.close();
    },
  };
}
