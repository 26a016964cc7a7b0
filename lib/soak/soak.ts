import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import sharp from 'sharp';
import type { SqlClient, SqlExecutor } from '../adapters/store/sql-client';
import { startLoopbackS3 } from './loopback-s3';

/**
 * A fault-injection soak of the real indexing path: the indexing Lambda handler (lib/runtime/aws.ts,
 * Powertools partial batch responses, the ObjectEventIndexer, S3Objects, PgVectorStore) fed
 * SQS-shaped batches of S3 notifications, against s3rver on loopback and PGlite (on disk) or
 * PostgreSQL. The driver plays S3 and SQS: it changes the bucket, emits one notification per change,
 * and delivers them at least once, in any order, with retries and a dead-letter queue, while
 * injecting faults. Afterwards the index must match the bucket exactly.
 *
 * Database restarts are real: on PostgreSQL the driver runs `restartCommand` (a `pg_ctl restart -m
 * fast`, scripts/ci/restart-postgres.sh) while a batch is in flight and checks that the server's start
 * time changed; on PGlite it closes the store and opens it again from its data directory between
 * batches (what a local server restart does).
 */
export interface SoakOptions {
  /** S3 notifications to generate (duplicates and poison messages included). */
  readonly events: number;
  /** Distinct object keys the changes are spread over. */
  readonly keys: number;
  /** Stop generating changes after this long (the queue is still drained). */
  readonly seconds: number;
  readonly seed: number;
  readonly modelsDir: string;
  /** A message received this many times without success goes to the dead-letter queue. */
  readonly maxReceiveCount: number;
  readonly batchSize: number;
  /** A PostgreSQL (with pgvector) to run on, in a schema of its own; PGlite when unset. */
  readonly databaseUrl?: string | undefined;
  /**
   * PostgreSQL only: a shell command that restarts the server behind `databaseUrl` (it must return
   * once the server accepts connections again). Unset: no restarts are injected on PostgreSQL.
   */
  readonly restartCommand?: string | undefined;
  /** At most this many database restarts (they cost about a second each). */
  readonly maxRestarts?: number | undefined;
  readonly log?: (line: string) => void;
}

export const SHORT_PRESET = { events: 300, keys: 40, seconds: 60 } as const;
export const DEFAULT_PRESET = { events: 2000, keys: 200, seconds: 120 } as const;

export type FaultKind =
  | 'duplicate'
  | 'reordered'
  | 'corrupt'
  | 'truncated'
  | 'deletedBeforeProcessed'
  | 'crash'
  | 'transientS3Error'
  | 'slowResponse'
  | 'databaseDrop'
  | 'databaseRestart'
  | 'poison';

export const FAULT_KINDS: readonly FaultKind[] = [
  'duplicate',
  'reordered',
  'corrupt',
  'truncated',
  'deletedBeforeProcessed',
  'crash',
  'transientS3Error',
  'slowResponse',
  'databaseDrop',
  'databaseRestart',
  'poison',
];

export interface SoakReport {
  readonly engine: 'pglite' | 'postgresql';
  readonly events: number;
  readonly deliveries: number;
  readonly batches: number;
  readonly retries: number;
  /** Records of the batches a database restart hit that the handler reported failed (then retried). */
  readonly failedByRestart: number;
  readonly deadLettered: number;
  readonly faults: Record<FaultKind, number>;
  readonly objects: number;
  readonly rows: number;
  readonly failuresListed: number;
  readonly mismatches: readonly string[];
  readonly seconds: number;
}

const BUCKET = 'ompf-soak';
const MODEL = 'mobilenetv2-int8';

interface Message {
  readonly id: string;
  readonly body: string;
  receiveCount: number;
  readonly key?: string;
  readonly sequencer?: number;
  readonly poison: boolean;
}

/** mulberry32: a small seeded generator, so a failing run can be replayed with --seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** S3 sends keys form-encoded: percent-encoding with '+' for a space. */
function s3EncodeKey(key: string): string {
  return encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/');
}

function notification(eventName: string, key: string, sequencer: string, etag?: string, size?: number) {
  return JSON.stringify({
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: 'eu-west-1',
        eventTime: new Date().toISOString(),
        eventName,
        userIdentity: { principalId: 'AWS:AIDAEXAMPLE' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: { 'x-amz-request-id': 'SOAK', 'x-amz-id-2': 'SOAK' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 'ompf-images',
          bucket: { name: BUCKET, ownerIdentity: { principalId: 'SOAK' }, arn: `arn:aws:s3:::${BUCKET}` },
          object: {
            key: s3EncodeKey(key),
            ...(eventName.startsWith('ObjectCreated') ? { size: size ?? 0, eTag: etag ?? 'unknown' } : {}),
            sequencer,
          },
        },
      },
    ],
  });
}

function sqsRecord(message: Message): SQSRecord {
  return {
    messageId: message.id,
    receiptHandle: `soak-${message.id}-${message.receiveCount}`,
    body: message.body,
    attributes: {
      ApproximateReceiveCount: String(message.receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'SOAK',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(message.body).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:ompf-soak-events',
    awsRegion: 'eu-west-1',
  };
}

/** The keys: mostly plain, some with a space, a '+', a '%' and non-ASCII (form-encoding traps). */
function keyName(index: number): string {
  if (index % 7 === 3) return `soak/dir ${index}/ökapi+${index}% x.jpg`;
  return `soak/k${String(index).padStart(4, '0')}.jpg`;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / Math.sqrt(na * nb);
}

/** Runs a shell command; resolves when it exits 0 (not when its pipes close: a postmaster keeps them). */
function run(command: string): Promise<void> {
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

/**
 * The database as the handler sees it: after `drop(n)`, the n-th statement from then on fails as a
 * dropped connection does (inside a transaction too, which is then rolled back). `replace` swaps the
 * connection underneath (PGlite closed and opened again from its data directory).
 */
class FaultySqlClient implements SqlClient {
  private countdown: number | undefined;
  dropped = 0;
  private restartCountdown: number | undefined;
  private restartServer: (() => Promise<boolean>) | undefined;
  private restarting: Promise<boolean> | undefined;

  /** When the n-th statement from now starts, restart the server (not awaited: the batch runs on). */
  armRestart(afterStatements: number, restartServer: () => Promise<boolean>): void {
    this.restartCountdown = afterStatements;
    this.restartServer = restartServer;
    this.restarting = undefined;
  }

  /** Waits for a restart that started; false when the batch ended before its statement came. */
  async disarmRestart(): Promise<boolean> {
    this.restartCountdown = undefined;
    const restarting = this.restarting;
    this.restarting = undefined;
    return restarting ? restarting : false;
  }

  constructor(private inner: SqlClient) {}

  /** Close the current engine and continue on `reopen()`'s; statements in between wait for it. */
  async replace(reopen: () => Promise<SqlClient>): Promise<void> {
    const old = this.inner;
    await old.close();
    this.inner = await reopen();
  }

  get engine() {
    return this.inner.engine;
  }

  drop(afterStatements: number | undefined): void {
    this.countdown = afterStatements;
  }

  private check(): void {
    if (this.restartCountdown !== undefined && --this.restartCountdown <= 0) {
      this.restartCountdown = undefined;
      this.restarting = this.restartServer?.();
      // Awaited by disarmRestart; a failure must not surface as an unhandled rejection meanwhile.
      this.restarting?.catch(() => undefined);
    }
    if (this.countdown === undefined) return;
    this.countdown -= 1;
    if (this.countdown > 0) return;
    this.countdown = undefined;
    this.dropped += 1;
    throw new Error('soak: injected connection drop (Connection terminated unexpectedly)');
  }

  private wrap(executor: SqlExecutor): SqlExecutor {
    return {
      query: <Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) => {
        this.check();
        return executor.query<Row>(text, params);
      },
      exec: (script: string) => {
        this.check();
        return executor.exec(script);
      },
    };
  }

  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]> {
    return this.wrap(this.inner).query<Row>(text, params);
  }

  exec(script: string): Promise<void> {
    return this.wrap(this.inner).exec(script);
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.inner.transaction((tx) => work(this.wrap(tx)));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
  // Loaded here, after the log level is set: the runtime creates its logger at import.
  const aws = await import('../runtime/aws');
  const { PgliteSqlClient, PostgresSqlClient } = await import('../adapters/store/sql-client');
  const { PgVectorStore } = await import('../adapters/store/pg-vector-store');
  const { resolveModelSpec } = await import('../adapters/models/model-registry');
  const { productEmbedder, sharedEmbedder, storeOptions } = await import('../runtime/product');
  const { SharpImagePreprocessor } = await import('../adapters/image/sharp-preprocessor');

  const rand = random(options.seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const faults: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<
    FaultKind,
    number
  >;
  const mismatches: string[] = [];

  const s3 = await startLoopbackS3(BUCKET);
  const endpoint = s3.endpoint;
  const s3Options = s3.clientConfig;
  /** The driver's own client (it plays the users changing the bucket); never faulted. */
  const admin = new S3Client(s3Options);
  /** The handler's client: GetObject is slowed down or fails once for keys the driver arms. */
  const lambdaS3 = new S3Client(s3Options);
  const failNextGet = new Set<string>();
  lambdaS3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'GetObjectCommand') {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (failNextGet.delete(key)) {
          faults.transientS3Error += 1;
          throw Object.assign(new Error('soak: injected S3 503 SlowDown'), {
            name: 'SlowDown',
            $metadata: { httpStatusCode: 503 },
            $fault: 'server',
          });
        }
        if (rand() < 0.08) {
          faults.slowResponse += 1;
          await sleep(20 + pick(180));
        }
      }
      return next(args);
    },
    { step: 'initialize', name: 'ompfSoakFaults' },
  );

  let client: SqlClient;
  let dropSchema = () => Promise.resolve();
  /** Restarts the database; resolves to false when it cannot (PostgreSQL without a command). */
  let restart: (database: FaultySqlClient) => Promise<boolean> = () => Promise.resolve(false);
  /** Where the restart happens: during a batch (a server) or between batches (PGlite in-process). */
  let restartDuringBatch = false;
  const databaseUrl = options.databaseUrl;
  if (databaseUrl) {
    // A schema of its own, named from digits only (the one identifier the soak writes into SQL).
    const schema = `ompf_soak_${process.pid}_${Date.now()}`;
    if (!/^ompf_soak_\d+_\d+$/.test(schema)) throw new Error(`Unexpected schema name ${schema}`);
    const admin = () => PostgresSqlClient.connect(databaseUrl, { maxConnections: 1 });
    const creator = admin();
    try {
      await creator.exec(`CREATE SCHEMA ${schema}`);
    } finally {
      await creator.close();
    }
    dropSchema = async () => {
      const dropper = admin();
      try {
        await dropper.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await dropper.close();
      }
    };
    const url = new URL(databaseUrl);
    url.searchParams.set('options', `-c search_path=${schema},public`);
    // The pool the Lambdas use (resilientPool), so restarts exercise the production connection path.
    client = PostgresSqlClient.connect(url.toString(), { maxConnections: 2 });
    const restartCommand = options.restartCommand;
    if (restartCommand) {
      restartDuringBatch = true;
      // Each restart must really restart the server: its start time has to change.
      const startTime = async () => {
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
      restart = async () => {
        const before = await startTime();
        await run(restartCommand);
        const after = await startTime();
        if (after === before) throw new Error(`'${restartCommand}' did not restart PostgreSQL`);
        return true;
      };
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
    dropSchema = () => Promise.resolve(rmSync(dataDir, { recursive: true, force: true }));
  }
  const env: NodeJS.ProcessEnv = {
    OMPF_BUCKET: BUCKET,
    OMPF_MODEL: MODEL,
    OMPF_MODELS_DIR: options.modelsDir,
    OMPF_S3_ENDPOINT: endpoint,
    OMPF_UPLOADS_PREFIX: 'query-uploads/',
    OMPF_DB_SECRET_ARN: 'unused',
    AWS_REGION: 'us-east-1',
  };
  const config = aws.loadAwsConfig(env);
  const spec = resolveModelSpec(MODEL);
  const database = new FaultySqlClient(client);
  const store = await PgVectorStore.recreate(database, storeOptions(spec, config.base));
  const maxRestarts = options.maxRestarts ?? 3;
  const parts = aws.awsParts(config, {
    clients: { s3: lambdaS3, secrets: new SecretsManagerClient({ region: 'us-east-1' }) },
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

  // The bucket as the driver changed it, and every corrupt content written (by hash).
  const corruptHashes = new Set<string>();
  const present = new Set<string>();
  const queue: Message[] = [];
  const deadLetters: Message[] = [];
  const poisonIds = new Set<string>();
  let sequencer = 0x1000;
  let messageCount = 0;
  let events = 0;
  let deliveries = 0;
  let batches = 0;
  let retries = 0;
  let failedByRestart = 0;
  /** Per key, the newest sequencer the handler has been handed (to measure reordering). */
  const newestDelivered = new Map<string, number>();

  const enqueue = (body: string, key?: string, seq?: number, poison = false) => {
    const copies = !poison && rand() < 0.1 ? 2 : 1;
    if (copies === 2) faults.duplicate += 1;
    for (let c = 0; c < copies; c++) {
      messageCount += 1;
      const id = `soak-${String(messageCount).padStart(8, '0')}`;
      queue.push({
        id,
        body,
        receiveCount: 0,
        poison,
        ...(key === undefined ? {} : { key }),
        ...(seq === undefined ? {} : { sequencer: seq }),
      });
      if (poison) poisonIds.add(id);
      events += 1;
    }
  };

  const image = async (): Promise<Buffer> => {
    const size = 24 + pick(40);
    const base = sharp({
      create: {
        width: size,
        height: size,
        channels: 3,
        background: { r: pick(256), g: pick(256), b: pick(256) },
      },
    });
    const patch = await sharp({
      create: { width: 8, height: 8, channels: 3, background: { r: pick(256), g: pick(256), b: pick(256) } },
    })
      .png()
      .toBuffer();
    return base
      .composite([{ input: patch, left: pick(size - 8), top: pick(size - 8) }])
      .jpeg()
      .toBuffer();
  };

  const put = async (key: string, kind: 'valid' | 'corrupt' | 'truncated') => {
    let body: Buffer;
    if (kind === 'valid') body = await image();
    else if (kind === 'corrupt') {
      body = Buffer.from(Array.from({ length: 64 + pick(512) }, () => pick(256)));
      faults.corrupt += 1;
    } else {
      const whole = await image();
      body = whole.subarray(0, Math.max(16, Math.floor(whole.length / 3)));
      faults.truncated += 1;
    }
    if (kind !== 'valid') corruptHashes.add(sha256(body));
    const result = await admin.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentType: 'image/jpeg' }),
    );
    present.add(key);
    sequencer += 1 + pick(3);
    const etag = (result.ETag ?? '').replace(/"/g, '');
    enqueue(
      notification('ObjectCreated:Put', key, sequencer.toString(16).toUpperCase(), etag, body.length),
      key,
      sequencer,
    );
  };

  const remove = async (key: string) => {
    await admin.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    present.delete(key);
    sequencer += 1 + pick(3);
    enqueue(notification('ObjectRemoved:Delete', key, sequencer.toString(16).toUpperCase()), key, sequencer);
  };

  const poisonBodies = [
    '{"Records": [',
    JSON.stringify({ Records: [{ eventSource: 'aws:sqs', body: 'x' }] }),
    notification('ObjectCreated:Put', 'soak/poison.jpg', 'zz-not-hex'),
  ];
  const poisonEvery = Math.max(50, Math.floor(options.events / 12));
  let nextPoisonAt = Math.floor(poisonEvery / 2);

  /** One change to the bucket, as a user would make it. */
  const change = async () => {
    if (events >= nextPoisonAt) {
      nextPoisonAt += poisonEvery;
      faults.poison += 1;
      enqueue(poisonBodies[faults.poison % poisonBodies.length]!, undefined, undefined, true);
      return;
    }
    const key = keyName(pick(options.keys));
    const r = rand();
    if (r < 0.5) await put(key, 'valid');
    else if (r < 0.56) await put(key, 'corrupt');
    else if (r < 0.62) await put(key, 'truncated');
    else if (r < 0.85) {
      if (present.has(key)) await remove(key);
      else await put(key, 'valid');
    } else {
      // Created and deleted again before the handler sees the ObjectCreated event.
      await put(key, 'valid');
      await remove(key);
      faults.deletedBeforeProcessed += 1;
    }
  };

  /** SQS hands out up to batchSize messages, not in the order they were sent. */
  const deliver = async () => {
    const batch: Message[] = [];
    while (batch.length < options.batchSize && queue.length > 0) {
      const [message] = queue.splice(pick(Math.min(queue.length, 40)), 1);
      batch.push(message!);
    }
    if (batch.length === 0) return;
    batches += 1;
    for (const message of batch) {
      message.receiveCount += 1;
      if (message.key !== undefined && message.sequencer !== undefined) {
        const newest = newestDelivered.get(message.key) ?? 0;
        if (message.sequencer < newest) faults.reordered += 1;
        else newestDelivered.set(message.key, message.sequencer);
      }
    }
    const records = batch.map(sqsRecord);
    let failed: Set<string>;
    // Faults only hit a batch whose messages were received at most twice: a healthy message then
    // succeeds by its third receive and never exhausts maxReceiveCount.
    const faultable = batch.every((m) => m.receiveCount <= 2);
    // A crash: the container dies after part of the batch ran; SQS redelivers the whole batch.
    // (Forced once after 10 batches if chance has not produced one: every kind must be exercised.)
    if (batch.length >= 2 && faultable && (rand() < 0.15 || (faults.crash === 0 && batches > 10))) {
      faults.crash += 1;
      await invoke(records.slice(0, 1 + pick(batch.length - 1)));
      failed = new Set(batch.map((m) => m.id));
    } else {
      for (const message of batch) {
        if (faultable && !message.poison && message.key && rand() < 0.05) failNextGet.add(message.key);
      }
      // The database drops the connection part-way through the batch.
      if (faultable && rand() < 0.2) database.drop(1 + pick(batch.length * 4));
      // The database server restarts while the batch runs (pg_ctl restart -m fast).
      const restartNow =
        faultable &&
        faults.databaseRestart < maxRestarts &&
        (rand() < 0.12 || (faults.databaseRestart === 0 && batches > 5));
      if (restartNow && restartDuringBatch) {
        // The restart starts as one of the batch's statements does, so sessions die mid-batch.
        database.armRestart(1 + pick(batch.length * 2), () => restart(database));
        failed = await invoke(records);
        if (await database.disarmRestart()) {
          faults.databaseRestart += 1;
          failedByRestart += failed.size;
        }
      } else {
        failed = await invoke(records);
      }
      database.drop(undefined);
      // The embedded store closes and opens again from its directory before the next batch.
      if (restartNow && !restartDuringBatch && (await restart(database))) faults.databaseRestart += 1;
      failNextGet.clear();
    }
    deliveries += records.length;
    for (const message of batch) {
      if (!failed.has(message.id)) continue;
      if (message.receiveCount >= options.maxReceiveCount) deadLetters.push(message);
      else {
        retries += 1;
        queue.push(message);
      }
    }
  };

  try {
    const deadline = started + options.seconds * 1000;
    let logged = 0;
    while (events < options.events && Date.now() < deadline) {
      const n = 1 + pick(6);
      for (let i = 0; i < n && events < options.events; i++) await change();
      if (queue.length >= options.batchSize || rand() < 0.3) await deliver();
      if (batches >= logged + 25) {
        logged = batches;
        log(`events ${events}, queued ${queue.length}, batches ${batches}`);
      }
    }
    const drainBy = Date.now() + Math.max(60_000, options.seconds * 1000);
    while (queue.length > 0 && Date.now() < drainBy) await deliver();
    if (queue.length > 0) mismatches.push(`queue not drained: ${queue.length} messages left`);
    faults.databaseDrop = database.dropped;

    // The invariant, checked against the bucket itself (not the driver's bookkeeping).
    const objects = new Map<string, Uint8Array>();
    let token: string | undefined;
    do {
      const page = await admin.send(
        new ListObjectsV2Command({ Bucket: BUCKET, ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const object of page.Contents ?? []) {
        const got = await admin.send(new GetObjectCommand({ Bucket: BUCKET, Key: object.Key! }));
        objects.set(object.Key!, await got.Body!.transformToByteArray());
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    if (objects.size !== present.size || [...present].some((k) => !objects.has(k))) {
      mismatches.push(`bucket listing (${objects.size}) differs from the driver's (${present.size})`);
    }

    const rows = await store.listKeys(BUCKET);
    const hashes = await store.contentHashes(BUCKET, rows);
    const failures = new Map((await store.listFailures(BUCKET)).map((f) => [f.key, f.reason]));
    const embedder = productEmbedder(await sharedEmbedder(spec, config.base), spec, config.base);
    const preprocessor = new SharpImagePreprocessor(spec.preprocess, {
      maxBytes: config.base.maxImageBytes,
      maxPixels: config.base.maxPixels,
    });
    for (const key of rows) {
      if (!objects.has(key)) mismatches.push(`row for deleted object '${key}'`);
    }
    for (const [key, bytes] of objects) {
      const hash = sha256(bytes);
      if (corruptHashes.has(hash)) {
        if (!failures.get(key)) mismatches.push(`corrupt object '${key}' not listed as failed`);
        if (hashes.has(key)) mismatches.push(`corrupt object '${key}' has a row (of older content)`);
        continue;
      }
      const stored = hashes.get(key);
      if (stored === undefined) {
        mismatches.push(`object '${key}' has no row`);
        continue;
      }
      if (stored !== hash) {
        mismatches.push(
          `row of '${key}' holds another content (${stored.slice(0, 8)} != ${hash.slice(0, 8)})`,
        );
        continue;
      }
      const [expected] = await embedder.embed([await preprocessor.prepare(bytes)]);
      const actual = await store.getEmbedding(BUCKET, key);
      if (!expected || !actual || cosine(expected, actual) < 0.999) {
        mismatches.push(`embedding of '${key}' is not that of its current content`);
      }
    }
    const dead = new Set(deadLetters.map((m) => m.id));
    for (const message of deadLetters) {
      if (!message.poison) mismatches.push(`healthy message ${message.id} ended in the dead-letter queue`);
    }
    for (const id of poisonIds) {
      if (!dead.has(id)) mismatches.push(`poison message ${id} did not end in the dead-letter queue`);
    }
    return {
      engine: client.engine,
      events,
      deliveries,
      batches,
      retries,
      failedByRestart,
      deadLettered: deadLetters.length,
      faults,
      objects: objects.size,
      rows: rows.length,
      failuresListed: failures.size,
      mismatches,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    admin.destroy();
    lambdaS3.destroy();
    await database.close();
    await dropSchema();
    await s3.close();
  }
}

export function defaultModelsDir(): string {
  return resolve(process.env.OMPF_MODELS_DIR ?? join(process.cwd(), '..', 'shared', 'models'));
}
