import { z } from 'zod';
import { InvalidInputError } from '../../core/errors';
import type { ObjectCheck, ObjectEvent } from '../../core/object-events';

/**
 * S3 event notifications as they arrive in an SQS message body. Only the fields the indexer needs
 * are checked; everything else S3 sends is tolerated (S3 adds fields over time).
 */
const s3RecordSchema = z.object({
  eventSource: z.literal('aws:s3'),
  eventName: z.string().min(1),
  s3: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: z.object({
      key: z.string().min(1),
      size: z.number().int().nonnegative().optional(),
      eTag: z.string().optional(),
      versionId: z.string().optional(),
      sequencer: z.string().regex(/^[0-9A-Fa-f]{1,64}$/, 'must be hex'),
    }),
  }),
});

/** A reconciliation check (lib/core/reconcile.ts), written by the operations function. */
const checkSchema = z.strictObject({
  ompfCheck: z.strictObject({
    source: z.string().min(1),
    key: z.string().min(1),
    etag: z.string().min(1).optional(),
  }),
});

const notificationSchema = z.union([
  z.object({ Event: z.literal('s3:TestEvent') }),
  z.object({ Records: z.array(s3RecordSchema) }),
  checkSchema,
]);

export type S3Message =
  | { readonly kind: 'test' }
  | { readonly kind: 'events'; readonly events: ObjectEvent[] }
  | { readonly kind: 'check'; readonly check: ObjectCheck };

/** The SQS body of one reconciliation check. */
export function checkMessageBody(check: ObjectCheck): string {
  return JSON.stringify({
    ompfCheck: { source: check.source, key: check.key, ...(check.etag ? { etag: check.etag } : {}) },
  });
}

/** What a queued message is about, for the dead-letter listing; never throws. */
export function describeMessage(body: string): { keys: string[]; description: string } {
  try {
    const message = parseS3Message(body);
    if (message.kind === 'test') return { keys: [], description: 's3:TestEvent' };
    if (message.kind === 'check') {
      return { keys: [message.check.key], description: `reconcile check of ${message.check.key}` };
    }
    return {
      keys: message.events.map((e) => e.key),
      description: message.events.map((e) => `${e.kind} ${e.key}`).join(', ') || 'no object events',
    };
  } catch (error) {
    return { keys: [], description: `not an object event: ${(error as Error).message}` };
  }
}

/**
 * S3 sends object keys URL-encoded, with '+' for a space (form encoding): '+' becomes a space first,
 * then percent-escapes are decoded, so 'a+b%2Bc.jpg' is 'a b+c.jpg'.
 */
export function decodeS3Key(encoded: string): string {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, ' '));
  } catch {
    throw new InvalidInputError(`The S3 event holds a key with an invalid percent-encoding: '${encoded}'.`);
  }
}

/**
 * Parse one SQS message body written by S3. Returns the s3:TestEvent S3 sends when notifications are
 * configured, or the object events (keys decoded). Event types the indexer does not handle (restore,
 * tagging, ACL) are left out. A body that is not an S3 notification throws InvalidInputError: the
 * message is retried and ends in the dead-letter queue, where someone can look at it.
 */
export function parseS3Message(body: string): S3Message {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new InvalidInputError('The SQS message body is not JSON, so not an S3 event notification.');
  }
  const parsed = notificationSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new InvalidInputError(`The SQS message is not an S3 event notification: ${problems.join('; ')}.`);
  }
  if ('Event' in parsed.data) return { kind: 'test' };
  if ('ompfCheck' in parsed.data) {
    const { source, key, etag } = parsed.data.ompfCheck;
    return { kind: 'check', check: { source, key, etag } };
  }
  const events: ObjectEvent[] = [];
  for (const record of parsed.data.Records) {
    const kind = eventKind(record.eventName);
    if (!kind) continue;
    const object = record.s3.object;
    events.push({
      kind,
      source: record.s3.bucket.name,
      key: decodeS3Key(object.key),
      sequencer: object.sequencer,
      etag: object.eTag,
      versionId: object.versionId,
      size: object.size,
    });
  }
  return { kind: 'events', events };
}

/** ObjectCreated:* indexes; ObjectRemoved:* (deletes and delete markers) and lifecycle expiry remove. */
function eventKind(eventName: string): ObjectEvent['kind'] | undefined {
  if (eventName.startsWith('ObjectCreated:')) return 'created';
  if (eventName.startsWith('ObjectRemoved:') || eventName.startsWith('LifecycleExpiration:'))
    return 'removed';
  return undefined;
}
