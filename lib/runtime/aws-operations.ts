import { z } from 'zod';
import { METRIC_NAMES, powertoolsMetrics } from '../adapters/aws/metrics';
import { DeadLetterQueue, SqsCheckQueue } from '../adapters/aws/sqs-queues';
import { S3Objects } from '../adapters/aws/s3-objects';
import { PgIndexCatalogue } from '../adapters/store/index-catalogue';
import { PgVectorStore } from '../adapters/store/pg-vector-store';
import { ConfigError, InvalidInputError } from '../core/errors';
import type { EventErrorRecord } from '../core/ports';
import { IMAGE_KEY_SUFFIXES, Reconciler, type ReconcileReport } from '../core/reconcile';
import { awsParts, loadAwsConfig, logger, readCatalogue, readerOptions, type AwsParts } from './aws-base';
import { stageStatus } from './aws-status';

/**
 * The composition root of the operations function (functions/operations.ts): reconcile the bucket
 * with the index (scheduled daily, every few minutes while a new index is built, or started by
 * `ompf cloud reconcile`), list and redrive the dead-letter queue, and the stage's status. Loads no
 * model (no native layer): reconciliation sends checks to the indexing queue, whose indexer embeds.
 */
const operationSchema = z.discriminatedUnion('action', [
  z.strictObject({
    action: z.literal('reconcile'),
    trigger: z.enum(['schedule', 'command', 'deploy', 'follow-up']).default('command'),
    /** Run a pass for a building index even while the queue still holds checks. */
    force: z.boolean().default(false),
  }),
  z.strictObject({
    action: z.literal('dead-letters'),
    limit: z.number().int().min(1).max(1000).default(100),
  }),
  z.strictObject({ action: z.literal('redrive') }),
  z.strictObject({ action: z.literal('status') }),
]);

export type Operation = z.input<typeof operationSchema>;

export function parseOperation(event: unknown): z.output<typeof operationSchema> {
  const parsed = operationSchema.safeParse(event);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`);
    throw new InvalidInputError(`Not an operation: ${problems.join('; ')}.`, {
      hint: 'Send {"action": "reconcile" | "dead-letters" | "redrive" | "status"}; `ompf cloud --help` lists them.',
    });
  }
  return parsed.data;
}

function queues(parts: AwsParts) {
  const { queueUrl, deadLetters } = parts.config;
  if (!queueUrl || !deadLetters) {
    throw new ConfigError('The operations function needs OMPF_QUEUE_URL and the dead-letter queue.', {
      hint: 'The stack sets them; deploy the stage again.',
    });
  }
  return {
    checks: new SqsCheckQueue(parts.clients.sqs, queueUrl),
    deadLetters: new DeadLetterQueue(parts.clients.sqs, deadLetters.url, deadLetters.arn),
  };
}

const metrics = powertoolsMetrics();

export async function reconcile(
  parts: AwsParts,
  trigger: 'schedule' | 'command' | 'deploy' | 'follow-up',
  force: boolean,
): Promise<ReconcileReport | { skipped: string }> {
  const entries = await readCatalogue(parts);
  if (!entries) throw new ConfigError('This database has no index catalogue: deploy the stage first.');
  // The frequent follow-up schedule only works while a new index is being built.
  if (trigger === 'follow-up' && !entries.some((e) => e.state === 'building')) {
    return { skipped: 'no index is being built' };
  }
  const catalogue = new PgIndexCatalogue(await parts.sql());
  const reconciler = new Reconciler(
    catalogue,
    async (entry) =>
      PgVectorStore.open(await parts.sqlFor(entry.schema), readerOptions(entry, parts.config.base)),
    new S3Objects(parts.clients.s3, { maxBytes: parts.config.base.maxImageBytes }),
    queues(parts).checks,
    { ignorePrefixes: [parts.config.uploadsPrefix], suffixes: IMAGE_KEY_SUFFIXES },
  );
  const report = await reconciler.run(parts.config.bucket, trigger, force);
  logger.info('reconcile', { ...report });
  metrics.count(METRIC_NAMES.reconcileEnqueued, report.counts.enqueued);
  metrics.flush();
  return report;
}

export async function listDeadLetters(parts: AwsParts, limit: number) {
  const { deadLetters } = queues(parts);
  const { total, messages } = await deadLetters.list(limit);
  const errors = (await readCatalogue(parts))
    ? await new PgIndexCatalogue(await parts.sql()).eventErrors(messages.map((m) => m.messageId))
    : new Map<string, EventErrorRecord>();
  return {
    total,
    listed: messages.length,
    messages: messages.map((m) => {
      const error = errors.get(m.messageId);
      return {
        messageId: m.messageId,
        keys: m.keys,
        description: m.description,
        receiveCount: m.receiveCount,
        sentAt: m.sentAt?.toISOString() ?? null,
        lastError: error?.error ?? null,
        lastFailedAt: error?.lastFailedAt?.toISOString() ?? null,
        ...(error
          ? {}
          : {
              note: 'no error recorded: the database was unreachable, or the function timed out or ran out of memory; search the indexer logs for the messageId',
            }),
      };
    }),
  };
}

export async function redrive(parts: AwsParts) {
  const { deadLetters } = queues(parts);
  if (!parts.config.queueArn) {
    throw new ConfigError('The operations function needs OMPF_QUEUE_ARN to redrive.', {
      hint: 'The stack sets it; deploy the stage again.',
    });
  }
  const started = await deadLetters.redrive(parts.config.queueArn);
  return { ...started, tasks: await deadLetters.moveTasks() };
}

export function operationsHandler(parts: AwsParts = awsParts(loadAwsConfig())) {
  return async (event: unknown): Promise<unknown> => {
    const operation = parseOperation(event);
    switch (operation.action) {
      case 'reconcile':
        return reconcile(parts, operation.trigger, operation.force);
      case 'dead-letters':
        return listDeadLetters(parts, operation.limit);
      case 'redrive':
        return redrive(parts);
      case 'status':
        return stageStatus(parts);
    }
  };
}
