import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { SQSRecord } from 'aws-lambda';
import sharp from 'sharp';
import { s3Notification } from '../lambda-local/event-sources';
import { checkIndex } from './soak-check';
import type { SoakTarget } from './soak-target';

/**
 * A fault-injection soak of the real indexing path, fed SQS-shaped batches of S3 notifications. The
 * driver plays S3 and SQS: it changes the bucket, emits one notification per change, and delivers
 * them at least once, in any order, with retries and a dead-letter queue, while injecting faults.
 * Afterwards the index must match the bucket exactly (soak-check.ts).
 *
 * The batches run against a target (soak-target.ts): the indexing handler in this process, against
 * s3rver and PGlite (on disk) or PostgreSQL (in-process-target.ts), or the deployed bundle on
 * Node.js 24 through the Lambda runtime harness (harness-target.ts). Database restarts are real: on
 * PostgreSQL `restartCommand` (a `pg_ctl restart -m fast`, scripts/ci/restart-postgres.sh) runs while
 * a batch is in flight and the server's start time must change; PGlite is closed and opened again
 * from its data directory between batches (what a local server restart does).
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
  /**
   * What runs the batches: the handler in this process (default), or the deployed bundle on Node.js
   * 24 through the Lambda runtime harness (lib/lambda-local; needs root and `databaseUrl`).
   */
  readonly target?: 'in-process' | 'harness';
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
  readonly runtime: string;
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

const REGION = 'eu-west-1';

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

function notification(
  bucket: string,
  eventName: string,
  key: string,
  sequencer: string,
  etag?: string,
  size?: number,
) {
  const created = eventName.startsWith('ObjectCreated');
  return s3Notification(
    { eventName, bucket, key, sequencer, ...(created ? { eTag: etag ?? 'unknown', size: size ?? 0 } : {}) },
    REGION,
  );
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
    eventSourceARN: `arn:aws:sqs:${REGION}:123456789012:ompf-soak-events`,
    awsRegion: REGION,
  };
}

/** The keys: mostly plain, some with a space, a '+', a '%' and non-ASCII (form-encoding traps). */
function keyName(index: number): string {
  if (index % 7 === 3) return `soak/dir ${index}/ökapi+${index}% x.jpg`;
  return `soak/k${String(index).padStart(4, '0')}.jpg`;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const rand = random(options.seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const common = { modelsDir: options.modelsDir, restartCommand: options.restartCommand, rand, log };
  let target: SoakTarget;
  if (options.target === 'harness') {
    if (!options.databaseUrl)
      throw new Error('The soak through the Lambda harness needs a PostgreSQL: --database-url.');
    const { harnessTarget } = await import('./harness-target');
    target = await harnessTarget({ ...common, databaseUrl: options.databaseUrl });
  } else {
    const { inProcessTarget } = await import('./in-process-target');
    target = await inProcessTarget({ ...common, databaseUrl: options.databaseUrl });
  }

  const bucket = target.bucket;
  const admin = target.admin;
  const faults: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<
    FaultKind,
    number
  >;
  const mismatches: string[] = [];
  const maxRestarts = options.maxRestarts ?? 3;

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
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: 'image/jpeg' }),
    );
    present.add(key);
    sequencer += 1 + pick(3);
    const etag = (result.ETag ?? '').replace(/"/g, '');
    enqueue(
      notification(bucket, 'ObjectCreated:Put', key, sequencer.toString(16).toUpperCase(), etag, body.length),
      key,
      sequencer,
    );
  };

  const remove = async (key: string) => {
    await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    present.delete(key);
    sequencer += 1 + pick(3);
    enqueue(
      notification(bucket, 'ObjectRemoved:Delete', key, sequencer.toString(16).toUpperCase()),
      key,
      sequencer,
    );
  };

  const poisonBodies = [
    '{"Records": [',
    JSON.stringify({ Records: [{ eventSource: 'aws:sqs', body: 'x' }] }),
    notification(bucket, 'ObjectCreated:Put', 'soak/poison.jpg', 'zz-not-hex'),
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
    // Faults only hit a batch whose messages were received at most twice: a healthy message then
    // succeeds by its third receive and never exhausts maxReceiveCount.
    const faultable = batch.every((m) => m.receiveCount <= 2);
    // A crash: the container dies part-way through the batch; SQS redelivers the whole batch.
    // (Forced once after 10 batches if chance has not produced one: every kind must be exercised.)
    const crash = batch.length >= 2 && faultable && (rand() < 0.15 || (faults.crash === 0 && batches > 10));
    const failGets = new Set<string>();
    if (!crash) {
      for (const message of batch) {
        if (faultable && !message.poison && message.key && rand() < 0.05) failGets.add(message.key);
      }
    }
    // (Forced after 8 batches if none has landed yet, as crashes and restarts are.)
    const dropConnection =
      !crash && faultable && (rand() < 0.2 || (target.counts.databaseDrop === 0 && batches > 8));
    const restart =
      !crash &&
      target.canRestart &&
      faultable &&
      faults.databaseRestart < maxRestarts &&
      (rand() < 0.12 || (faults.databaseRestart === 0 && batches > 5));
    const result = await target.invoke(records, { crash, failGets, dropConnection, restart });
    if (result.crashed) faults.crash += 1;
    if (result.restarted) {
      faults.databaseRestart += 1;
      if (target.engine === 'postgresql') failedByRestart += result.failed.size;
    }
    const failed = result.failed;
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
    faults.databaseDrop = target.counts.databaseDrop;
    faults.transientS3Error = target.counts.transientS3Error;
    faults.slowResponse = target.counts.slowResponse;

    const checked = await checkIndex(target, {
      present,
      corruptHashes,
      deadLetters: deadLetters.map((m) => ({ id: m.id, poison: m.poison })),
      poisonIds,
    });
    mismatches.push(...checked.mismatches);
    return {
      engine: target.engine,
      runtime: target.runtime,
      events,
      deliveries,
      batches,
      retries,
      failedByRestart,
      deadLettered: deadLetters.length,
      faults,
      objects: checked.objects,
      rows: checked.rows,
      failuresListed: checked.failures,
      mismatches,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await target.close();
  }
}

export function defaultModelsDir(): string {
  return resolve(process.env.OMPF_MODELS_DIR ?? join(process.cwd(), '..', 'shared', 'models'));
}
