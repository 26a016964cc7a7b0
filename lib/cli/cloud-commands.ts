import { InvalidArgumentError, type Command } from 'commander';
import { invokeOperation, stageFunctionName } from '../adapters/aws/stage-operations';
import type { ReconcileRunCounts } from '../core/ports';
import { printJson, table } from './output';

/**
 * `ompf cloud ...`: operations on a deployed stage, run by its operations function in the stage's VPC
 * (lib/runtime/aws-operations.ts). Thin: find the function, invoke it, print the result.
 */
export interface CloudCommandContext {
  readonly json: () => boolean;
  readonly say: (text: string) => void;
  readonly run: <Args extends unknown[]>(
    action: (...args: Args) => Promise<void>,
  ) => (...args: Args) => Promise<void>;
}

const STAGE = /^[A-Za-z][A-Za-z0-9-]{0,63}$/;

function stageName(value: string): string {
  if (!STAGE.test(value)) throw new InvalidArgumentError('a stage name from cdk.json, such as dev');
  return value;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError('an integer from 1 to 1000');
  return n;
}

export function addCloudCommands(program: Command, { json, say, run }: CloudCommandContext): void {
  const cloud = program
    .command('cloud')
    .description(
      "Operate a deployed stage: reconcile the index with the bucket, list and redrive dead letters, status. Uses your AWS credentials (cloudformation:DescribeStacks, lambda:InvokeFunction on the stage's operations function).",
    );
  const operate = async (stage: string, operation: Record<string, unknown>) =>
    invokeOperation(await stageFunctionName(stage), operation);

  cloud
    .command('reconcile')
    .description(
      'List the bucket, compare it with the index by key and ETag, send what is missing or changed to the indexing queue, remove what is gone. While a new index is being built (after a model change), it fills that one and switches queries to it once it has caught up.',
    )
    .requiredOption('--stage <name>', 'stage (cdk.json)', stageName)
    .option('--force', 'run a pass for a building index even while the queue still holds checks')
    .action(
      run(async (options: { stage: string; force?: boolean }) => {
        const report = (await operate(options.stage, {
          action: 'reconcile',
          trigger: 'command',
          force: options.force === true,
        })) as {
          counts: ReconcileRunCounts;
          modelId: string;
          index: string;
          switched: boolean;
          waitingForQueue?: number;
        };
        if (json()) return printJson(report);
        if (report.waitingForQueue !== undefined) {
          say(
            `The ${report.index} index (${report.modelId}) waits for the queue to drain (${report.waitingForQueue} messages); run again later, or with --force.`,
          );
          return;
        }
        const c = report.counts;
        say(
          `${report.index} index ${report.modelId}: ${c.listed} listed, ${c.unchanged} unchanged; enqueued ${c.enqueued} checks (${c.missing} missing, ${c.changed} changed, ${c.gone} gone).`,
        );
        if (report.switched) say(`The new index has caught up and now answers queries (${report.modelId}).`);
      }),
    );

  cloud
    .command('dead-letters')
    .description("List the dead-letter queue: each message's keys and its last error. Moves nothing.")
    .requiredOption('--stage <name>', 'stage (cdk.json)', stageName)
    .option('--limit <n>', 'list at most this many messages', positive, 100)
    .action(
      run(async (options: { stage: string; limit: number }) => {
        const result = (await operate(options.stage, { action: 'dead-letters', limit: options.limit })) as {
          total: number;
          listed: number;
          messages: { messageId: string; keys: string[]; receiveCount: number; lastError: string | null }[];
        };
        if (json()) return printJson(result);
        say(`${result.total} messages in the dead-letter queue; ${result.listed} listed.`);
        if (result.messages.length > 0) {
          say(
            table(
              ['message', 'keys', 'receives', 'last error'],
              result.messages.map((m) => [
                m.messageId,
                m.keys.join(', ') || '-',
                m.receiveCount,
                m.lastError ?? '(not recorded: see the indexer logs)',
              ]),
            ),
          );
          say(`Fix the cause, then: ompf cloud redrive --stage ${options.stage}`);
        }
      }),
    );

  cloud
    .command('redrive')
    .description('Move every dead letter back to the indexing queue (an SQS message move task).')
    .requiredOption('--stage <name>', 'stage (cdk.json)', stageName)
    .action(
      run(async (options: { stage: string }) => {
        const result = (await operate(options.stage, { action: 'redrive' })) as {
          taskHandle: string;
          messages: number;
        };
        if (json()) return printJson(result);
        say(`Moving ${result.messages} messages back to the indexing queue (task ${result.taskHandle}).`);
      }),
    );

  cloud
    .command('status')
    .description(
      'The stage: the index answering queries and any being built, counts, reconcile runs, queues.',
    )
    .requiredOption('--stage <name>', 'stage (cdk.json)', stageName)
    .action(
      run(async (options: { stage: string }) => {
        const status = (await operate(options.stage, { action: 'status' })) as {
          model: string | null;
          images: number;
          indexes: { model: string; state: string; images: number; failures: number }[];
          reindex: { state: string; to?: string; indexed?: number; of?: number | null };
          queues: { indexing: unknown; deadLetters: unknown };
        };
        if (json()) return printJson(status);
        say(`answering queries: ${status.model ?? '(no index yet)'} (${status.images} images)`);
        if (status.reindex.state === 'building') {
          say(
            `re-indexing to ${status.reindex.to}: ${status.reindex.indexed} of about ${status.reindex.of ?? '?'} done`,
          );
        }
        say(
          table(
            ['index', 'state', 'images', 'failures'],
            status.indexes.map((i) => [i.model, i.state, i.images, i.failures]),
          ),
        );
        say(
          `queue: ${String(status.queues.indexing)} messages; dead letters: ${String(status.queues.deadLetters)}`,
        );
      }),
    );
}
