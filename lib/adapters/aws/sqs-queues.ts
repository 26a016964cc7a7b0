import {
  ChangeMessageVisibilityBatchCommand,
  GetQueueAttributesCommand,
  ListMessageMoveTasksCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  StartMessageMoveTaskCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { DependencyUnavailableError } from '../../core/errors';
import type { ObjectCheck } from '../../core/object-events';
import type { CheckQueue } from '../../core/reconcile';
import { checkMessageBody, describeMessage } from './s3-events';

/**
 * The stage's two queues as the operations function uses them: reconciliation's checks go onto the
 * indexing queue (SendMessageBatch, one check per message); the dead-letter queue is listed (received
 * with a short visibility timeout, then made visible again at once) and redriven with SQS's message
 * move task, which moves the messages back to the queue they came from.
 */
export class SqsCheckQueue implements CheckQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async send(checks: readonly ObjectCheck[]): Promise<void> {
    for (let i = 0; i < checks.length; i += 10) {
      const entries = checks.slice(i, i + 10).map((check, n) => ({
        Id: String(n),
        MessageBody: checkMessageBody(check),
      }));
      const result = await sqsCall(() =>
        this.sqs.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries })),
      );
      if (result.Failed && result.Failed.length > 0) {
        const first = result.Failed[0]!;
        throw new DependencyUnavailableError(
          `SQS refused ${result.Failed.length} of ${entries.length} checks (${first.Code ?? '?'}: ${first.Message ?? ''}).`,
          { hint: 'Run the reconcile again: it only enqueues what is still missing.' },
        );
      }
    }
  }

  depth(): Promise<number> {
    return queueDepth(this.sqs, this.queueUrl);
  }
}

export async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const result = await sqsCall(() =>
    sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    ),
  );
  const attributes = result.Attributes ?? {};
  return (
    Number(attributes.ApproximateNumberOfMessages ?? 0) +
    Number(attributes.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}

export interface DeadLetter {
  readonly messageId: string;
  /** What the message was about ('s3:ObjectCreated:Put bucket/key', 'check bucket/key'). */
  readonly keys: readonly string[];
  readonly description: string;
  readonly receiveCount: number;
  readonly sentAt: Date | undefined;
}

export class DeadLetterQueue {
  constructor(
    private readonly sqs: SQSClient,
    readonly queueUrl: string,
    readonly queueArn: string,
  ) {}

  /**
   * Up to `limit` messages, read and made visible again at once, so listing moves nothing. SQS
   * returns a sample per receive: a queue with messages in flight (another listing, a redrive) may
   * list fewer than it holds; `total` is SQS's approximate count.
   */
  async list(limit: number): Promise<{ total: number; messages: DeadLetter[] }> {
    const total = await queueDepth(this.sqs, this.queueUrl);
    const seen = new Map<string, DeadLetter>();
    const handles: { Id: string; ReceiptHandle: string }[] = [];
    for (let empty = 0; seen.size < limit && empty < 2;) {
      const result = await sqsCall(() =>
        this.sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: this.queueUrl,
            MaxNumberOfMessages: Math.min(10, limit - seen.size),
            VisibilityTimeout: 30,
            WaitTimeSeconds: 0,
            MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
          }),
        ),
      );
      const messages = result.Messages ?? [];
      if (messages.length === 0) empty += 1;
      for (const message of messages) {
        if (!message.MessageId || seen.has(message.MessageId)) continue;
        const described = describeMessage(message.Body ?? '');
        const sent = message.Attributes?.SentTimestamp;
        seen.set(message.MessageId, {
          messageId: message.MessageId,
          keys: described.keys,
          description: described.description,
          receiveCount: Number(message.Attributes?.ApproximateReceiveCount ?? 0),
          sentAt: sent ? new Date(Number(sent)) : undefined,
        });
        if (message.ReceiptHandle)
          handles.push({ Id: String(handles.length), ReceiptHandle: message.ReceiptHandle });
      }
    }
    for (let i = 0; i < handles.length; i += 10) {
      const batch = handles.slice(i, i + 10).map((h, n) => ({ ...h, Id: String(n), VisibilityTimeout: 0 }));
      await sqsCall(() =>
        this.sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: this.queueUrl, Entries: batch })),
      );
    }
    return { total, messages: [...seen.values()] };
  }

  /** Move every message to `destinationArn` (the indexing queue it came from): new message ids. */
  async redrive(destinationArn: string): Promise<{ taskHandle: string; messages: number }> {
    const messages = await queueDepth(this.sqs, this.queueUrl);
    const result = await sqsCall(() =>
      this.sqs.send(
        new StartMessageMoveTaskCommand({ SourceArn: this.queueArn, DestinationArn: destinationArn }),
      ),
    );
    return { taskHandle: result.TaskHandle ?? '', messages };
  }

  async moveTasks(): Promise<
    { status: string; moved: number; toMove: number | undefined; failureReason?: string }[]
  > {
    const result = await sqsCall(() =>
      this.sqs.send(new ListMessageMoveTasksCommand({ SourceArn: this.queueArn, MaxResults: 10 })),
    );
    return (result.Results ?? []).map((task) => ({
      status: task.Status ?? 'UNKNOWN',
      moved: task.ApproximateNumberOfMessagesMoved ?? 0,
      toMove: task.ApproximateNumberOfMessagesToMove,
      ...(task.FailureReason ? { failureReason: task.FailureReason } : {}),
    }));
  }
}

async function sqsCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === undefined || status >= 500) {
      throw new DependencyUnavailableError('SQS could not be reached.', {
        cause: error,
        hint: 'Retry later.',
      });
    }
    throw error;
  }
}
