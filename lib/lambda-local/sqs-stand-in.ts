import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LocalQueue } from './event-sources';

/**
 * SQS's API (AWS JSON 1.0, as @aws-sdk/client-sqs speaks it) on loopback, over the harness's own
 * queues (event-sources.ts), for what the functions and the operations call: SendMessage(Batch),
 * ReceiveMessage, DeleteMessage, ChangeMessageVisibility(Batch), GetQueueAttributes,
 * StartMessageMoveTask (done at once) and ListMessageMoveTasks. Queue URLs are
 * <endpoint>/<account>/<name>. The SDK checks the MD5 of every body it sends and receives, so they
 * are real MD5s. Nothing checks signatures or IAM.
 */
export interface SqsStandIn {
  readonly endpoint: string;
  urlOf(queue: LocalQueue): string;
  /** Every operation called, in order ('SendMessageBatch', ...). */
  readonly calls: string[];
  close(): Promise<void>;
}

interface MoveTask {
  readonly handle: string;
  readonly moved: number;
  readonly startedAt: number;
}

const md5 = (text: string) => createHash('md5').update(text).digest('hex');

export async function startSqs(queues: readonly LocalQueue[], account: string): Promise<SqsStandIn> {
  const calls: string[] = [];
  const tasks = new Map<string, MoveTask[]>();
  let endpoint = '';
  const byUrl = () => new Map(queues.map((q) => [`${endpoint}/${account}/${q.name}`, q]));
  const byArn = () => new Map(queues.map((q) => [q.arn, q]));
  type Body = Record<string, unknown>;
  const fail = (type: string, message: string) => ({
    status: 400,
    body: { __type: `com.amazonaws.sqs#${type}`, message },
  });
  const handle = (operation: string, input: Body): { status: number; body: unknown } => {
    const queue = typeof input.QueueUrl === 'string' ? byUrl().get(input.QueueUrl) : undefined;
    const needQueue = !['StartMessageMoveTask', 'ListMessageMoveTasks'].includes(operation);
    if (needQueue && !queue)
      return fail('QueueDoesNotExist', `The queue ${String(input.QueueUrl)} does not exist.`);
    const q = queue!;
    switch (operation) {
      case 'SendMessage': {
        const body = String(input.MessageBody);
        return { status: 200, body: { MessageId: q.send(body), MD5OfMessageBody: md5(body) } };
      }
      case 'SendMessageBatch': {
        const entries = (input.Entries ?? []) as { Id: string; MessageBody: string }[];
        if (entries.length === 0 || entries.length > 10)
          return fail('TooManyEntriesInBatchRequest', '1 to 10 entries.');
        return {
          status: 200,
          body: {
            Successful: entries.map((e) => ({
              Id: e.Id,
              MessageId: q.send(e.MessageBody),
              MD5OfMessageBody: md5(e.MessageBody),
            })),
            Failed: [],
          },
        };
      }
      case 'ReceiveMessage': {
        const max = Number(input.MaxNumberOfMessages ?? 1);
        const records = q.receive(
          max,
          input.VisibilityTimeout === undefined ? undefined : Number(input.VisibilityTimeout),
        );
        return {
          status: 200,
          body: {
            Messages: records.map((r) => ({
              MessageId: r.messageId,
              ReceiptHandle: r.receiptHandle,
              MD5OfBody: md5(r.body),
              Body: r.body,
              Attributes: {
                ApproximateReceiveCount: r.attributes.ApproximateReceiveCount,
                SentTimestamp: r.attributes.SentTimestamp,
              },
            })),
          },
        };
      }
      case 'DeleteMessage':
        q.delete(String(input.ReceiptHandle));
        return { status: 200, body: {} };
      case 'ChangeMessageVisibility':
        if (!q.changeVisibility(String(input.ReceiptHandle), Number(input.VisibilityTimeout))) {
          return fail('ReceiptHandleIsInvalid', 'The receipt handle is not valid.');
        }
        return { status: 200, body: {} };
      case 'ChangeMessageVisibilityBatch': {
        const entries = (input.Entries ?? []) as {
          Id: string;
          ReceiptHandle: string;
          VisibilityTimeout: number;
        }[];
        const ok = entries.filter((e) => q.changeVisibility(e.ReceiptHandle, Number(e.VisibilityTimeout)));
        return {
          status: 200,
          body: {
            Successful: ok.map((e) => ({ Id: e.Id })),
            Failed: entries
              .filter((e) => !ok.includes(e))
              .map((e) => ({ Id: e.Id, Code: 'ReceiptHandleIsInvalid', SenderFault: true })),
          },
        };
      }
      case 'GetQueueAttributes':
        return {
          status: 200,
          body: {
            Attributes: {
              ApproximateNumberOfMessages: String(q.visible),
              ApproximateNumberOfMessagesNotVisible: String(q.depth - q.visible),
              QueueArn: q.arn,
            },
          },
        };
      case 'StartMessageMoveTask': {
        const source = byArn().get(String(input.SourceArn));
        const destination =
          input.DestinationArn === undefined ? undefined : byArn().get(input.DestinationArn as string);
        if (!source) return fail('ResourceNotFoundException', `No queue ${String(input.SourceArn)}.`);
        if (!destination) return fail('UnsupportedOperation', 'Name the destination queue (DestinationArn).');
        const task = { handle: randomUUID(), moved: source.moveAllTo(destination), startedAt: Date.now() };
        tasks.set(source.arn, [task, ...(tasks.get(source.arn) ?? [])]);
        return { status: 200, body: { TaskHandle: task.handle } };
      }
      case 'ListMessageMoveTasks': {
        const list = tasks.get(String(input.SourceArn)) ?? [];
        return {
          status: 200,
          body: {
            Results: list.slice(0, Number(input.MaxResults ?? 1)).map((t) => ({
              TaskHandle: t.handle,
              Status: 'COMPLETED',
              SourceArn: input.SourceArn,
              ApproximateNumberOfMessagesMoved: t.moved,
              ApproximateNumberOfMessagesToMove: t.moved,
              StartedTimestamp: t.startedAt,
            })),
          },
        };
      }
      default:
        return {
          status: 400,
          body: {
            __type: 'com.amazonaws.sqs#UnsupportedOperation',
            message: `${operation} is not served here.`,
          },
        };
    }
  };
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const operation = String(request.headers['x-amz-target'] ?? '').replace(/^AmazonSQS\./, '');
      calls.push(operation);
      let result: { status: number; body: unknown };
      try {
        result = handle(operation, JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Body);
      } catch (error) {
        result = { status: 500, body: { __type: 'InternalError', message: (error as Error).message } };
      }
      response.writeHead(result.status, {
        'content-type': 'application/x-amz-json-1.0',
        'x-amzn-requestid': randomUUID(),
      });
      response.end(JSON.stringify(result.body));
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    urlOf: (queue) => `${endpoint}/${account}/${queue.name}`,
    calls,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
