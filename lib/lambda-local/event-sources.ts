import { createHash, randomUUID } from 'node:crypto';
import type { SQSEvent, SQSRecord } from 'aws-lambda';

/**
 * The two AWS services between the bucket and the indexing function, as the function sees them:
 * S3 event notifications (records as S3 writes them) and the SQS queue with its event source mapping
 * (batches, partial batch responses, visibility timeout, redrive to the dead-letter queue).
 */

/** S3 sends keys form-encoded: percent-encoding, '+' for a space, '/' kept. */
export function s3EncodeKey(key: string): string {
  return encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/');
}

export interface ObjectChange {
  /** ObjectCreated:Put, ObjectCreated:Copy, ObjectRemoved:Delete, LifecycleExpiration:Delete, ... */
  readonly eventName: string;
  readonly bucket: string;
  readonly key: string;
  /** ObjectCreated only. */
  readonly size?: number;
  readonly eTag?: string;
  /** Per key, later changes have larger values (hex; S3 compares them as such). */
  readonly sequencer: string;
}

/** Whether S3 sends `eventName` (ObjectCreated:Put) for `key` under a rule (s3:ObjectCreated:*, suffix). */
export function notificationMatches(
  rule: {
    readonly events: readonly string[];
    readonly prefix?: string | undefined;
    readonly suffix?: string | undefined;
  },
  eventName: string,
  key: string,
): boolean {
  const type = `s3:${eventName}`;
  const event = rule.events.some((pattern) =>
    pattern.endsWith(':*') ? type.startsWith(pattern.slice(0, -1)) : pattern === type,
  );
  return (
    event && (!rule.prefix || key.startsWith(rule.prefix)) && (!rule.suffix || key.endsWith(rule.suffix))
  );
}

/** One S3 event notification message (one record, as S3 sends one per change). */
export function s3Notification(change: ObjectChange, region = 'eu-west-1'): string {
  const created = change.eventName.startsWith('ObjectCreated');
  return JSON.stringify({
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: region,
        eventTime: new Date().toISOString(),
        eventName: change.eventName,
        userIdentity: { principalId: 'AWS:AIDALOCALHARNESS' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: {
          'x-amz-request-id': randomUUID().slice(0, 16).toUpperCase(),
          'x-amz-id-2': 'local',
        },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 'ompf-images',
          bucket: {
            name: change.bucket,
            ownerIdentity: { principalId: 'A3LOCALHARNESS' },
            arn: `arn:aws:s3:::${change.bucket}`,
          },
          object: {
            key: s3EncodeKey(change.key),
            ...(created ? { size: change.size ?? 0, eTag: change.eTag ?? '' } : {}),
            sequencer: change.sequencer,
          },
        },
      },
    ],
  });
}

/** The message S3 sends once when a notification configuration is saved. */
export function s3TestEvent(bucket: string): string {
  return JSON.stringify({
    Service: 'Amazon S3',
    Event: 's3:TestEvent',
    Time: new Date().toISOString(),
    Bucket: bucket,
    RequestId: randomUUID().slice(0, 16).toUpperCase(),
    HostId: 'local',
  });
}

/** A clock that runs with real time and can be moved forward (visibility timeouts of minutes). */
export class Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  advance(seconds: number): void {
    this.offset += seconds * 1000;
  }
}

interface QueuedMessage {
  readonly messageId: string;
  readonly body: string;
  readonly sentAt: number;
  firstReceivedAt: number | undefined;
  receiveCount: number;
  visibleAt: number;
  receiptHandle: string | undefined;
}

/**
 * An SQS standard queue: messages become invisible for the visibility timeout when received, come
 * back if not deleted, and move to the dead-letter queue when a receive would exceed maxReceiveCount
 * (SQS's redrive policy).
 */
export class LocalQueue {
  private readonly messages: QueuedMessage[] = [];
  constructor(
    readonly name: string,
    readonly arn: string,
    private readonly clock: Clock,
    private readonly visibilityTimeoutSeconds: number,
    private readonly redrive?: { readonly deadLetters: LocalQueue; readonly maxReceiveCount: number },
  ) {}

  send(body: string): string {
    const messageId = randomUUID();
    this.messages.push({
      messageId,
      body,
      sentAt: this.clock.now(),
      firstReceivedAt: undefined,
      receiveCount: 0,
      visibleAt: this.clock.now(),
      receiptHandle: undefined,
    });
    return messageId;
  }

  /**
   * Up to `max` visible messages, as the records of a Lambda SQS event; each stays invisible for
   * `visibilityTimeoutSeconds` (the queue's own by default, as ReceiveMessage lets a caller set).
   */
  receive(max: number, visibilityTimeoutSeconds = this.visibilityTimeoutSeconds): SQSRecord[] {
    const now = this.clock.now();
    const records: SQSRecord[] = [];
    for (const message of [...this.messages]) {
      if (records.length >= max) break;
      if (message.visibleAt > now) continue;
      if (this.redrive && message.receiveCount >= this.redrive.maxReceiveCount) {
        this.messages.splice(this.messages.indexOf(message), 1);
        this.redrive.deadLetters.messages.push({ ...message, visibleAt: now, receiptHandle: undefined });
        continue;
      }
      message.receiveCount += 1;
      message.firstReceivedAt ??= now;
      message.visibleAt = now + visibilityTimeoutSeconds * 1000;
      message.receiptHandle = `${message.messageId}#${message.receiveCount}`;
      records.push({
        messageId: message.messageId,
        receiptHandle: message.receiptHandle,
        body: message.body,
        attributes: {
          ApproximateReceiveCount: String(message.receiveCount),
          SentTimestamp: String(message.sentAt),
          SenderId: 'AIDALOCALS3',
          ApproximateFirstReceiveTimestamp: String(message.firstReceivedAt),
        },
        messageAttributes: {},
        md5OfBody: createHash('md5').update(message.body).digest('hex'),
        eventSource: 'aws:sqs',
        eventSourceARN: this.arn,
        awsRegion: this.arn.split(':')[3] ?? 'eu-west-1',
      });
    }
    return records;
  }

  delete(receiptHandle: string): void {
    const index = this.messages.findIndex((m) => m.receiptHandle === receiptHandle);
    if (index >= 0) this.messages.splice(index, 1);
  }

  /** ChangeMessageVisibility: false when the handle is not the message's current one. */
  changeVisibility(receiptHandle: string, seconds: number): boolean {
    const message = this.messages.find((m) => m.receiptHandle === receiptHandle);
    if (!message) return false;
    message.visibleAt = this.clock.now() + seconds * 1000;
    return true;
  }

  /**
   * A message move task, done at once: every message goes to `destination` as a new message (new id,
   * receive count 0), as SQS's redrive does. Returns how many moved.
   */
  moveAllTo(destination: LocalQueue): number {
    const moved = this.messages.splice(0, this.messages.length);
    for (const message of moved) destination.send(message.body);
    return moved.length;
  }

  /** Messages held, visible or not. */
  get depth(): number {
    return this.messages.length;
  }

  get visible(): number {
    const now = this.clock.now();
    return this.messages.filter((m) => m.visibleAt <= now).length;
  }

  /** Seconds until the next in-flight message becomes visible again (undefined: none in flight). */
  secondsToNextVisible(): number | undefined {
    const now = this.clock.now();
    const waits = this.messages.filter((m) => m.visibleAt > now).map((m) => (m.visibleAt - now) / 1000);
    return waits.length === 0 ? undefined : Math.min(...waits);
  }

  bodies(): { messageId: string; body: string; receiveCount: number }[] {
    return this.messages.map(({ messageId, body, receiveCount }) => ({ messageId, body, receiveCount }));
  }
}

export interface BatchOutcome {
  readonly records: number;
  readonly failed: readonly string[];
  /** The invocation itself failed (timeout, crash, thrown error): every record stays on the queue. */
  readonly functionError?: string;
}

/**
 * The event source mapping: polls the queue, invokes the function with up to `batchSize` records,
 * deletes what succeeded. With ReportBatchItemFailures, the identifiers in batchItemFailures stay on
 * the queue; a response naming an unknown or empty identifier fails the whole batch (as Lambda does).
 */
export class SqsEventSourceMapping {
  constructor(
    private readonly queue: LocalQueue,
    private readonly invoke: (
      event: SQSEvent,
    ) => Promise<{ payload?: unknown; error?: { errorType: string; errorMessage: string } }>,
    private readonly options: { readonly batchSize: number; readonly reportBatchItemFailures: boolean },
  ) {}

  /** One poll: undefined when nothing was visible. */
  async pollOnce(): Promise<BatchOutcome | undefined> {
    const records = this.queue.receive(this.options.batchSize);
    if (records.length === 0) return undefined;
    const result = await this.invoke({ Records: records });
    if (result.error) {
      return {
        records: records.length,
        failed: records.map((r) => r.messageId),
        functionError: `${result.error.errorType}: ${result.error.errorMessage}`,
      };
    }
    let failed = new Set<string>();
    if (this.options.reportBatchItemFailures) {
      const ids = new Set(records.map((r) => r.messageId));
      const items =
        (result.payload as { batchItemFailures?: { itemIdentifier?: unknown }[] } | null)
          ?.batchItemFailures ?? [];
      const named = items.map((item) => item.itemIdentifier);
      failed = named.every((id): id is string => typeof id === 'string' && ids.has(id))
        ? new Set(named)
        : ids;
    }
    for (const record of records) if (!failed.has(record.messageId)) this.queue.delete(record.receiptHandle);
    return { records: records.length, failed: [...failed] };
  }
}
