#!/usr/bin/env node
/**
 * `npm run soak`: the fault-injection soak of the indexing path (lib/soak/soak.ts), loopback only.
 * Exits 1 on any mismatch between the index and the bucket, 2 when the soak itself cannot run.
 */
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_PRESET, defaultModelsDir, runSoak, SHORT_PRESET } from '../lib/soak/soak';

function positive(value: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number <= 0) throw new InvalidArgumentError('a positive whole number');
  return number;
}

interface Options {
  short?: boolean;
  events?: number;
  keys?: number;
  seconds?: number;
  seed: number;
  databaseUrl?: string;
  restartCommand?: string;
  maxRestarts?: number;
  harness?: boolean;
}

const program = new Command('soak')
  .description(
    'Fault-injection soak of the indexing path: S3 changes and their notifications delivered at least once, in any order, with crashes, S3 errors, dropped connections, database restarts and poison messages; then the index must equal the bucket.',
  )
  .option('--short', `the CI preset (${SHORT_PRESET.events} events, ${SHORT_PRESET.seconds} s)`)
  .option('--events <n>', `notifications to generate (default ${DEFAULT_PRESET.events})`, positive)
  .option('--keys <n>', `distinct object keys (default ${DEFAULT_PRESET.keys})`, positive)
  .option('--seconds <n>', `stop generating after this long (default ${DEFAULT_PRESET.seconds})`, positive)
  .option('--seed <n>', 'seed of the generator (replays a run)', positive, 1)
  .option(
    '--database-url <url>',
    'PostgreSQL + pgvector to run on (a schema of its own, dropped afterwards); PGlite when unset',
  )
  .option(
    '--restart-command <cmd>',
    "restarts that server mid-batch (e.g. 'bash scripts/ci/restart-postgres.sh'; use a cluster of its own)",
  )
  .option('--max-restarts <n>', 'at most this many restarts (default 3 with --short, else 10)', positive)
  .option(
    '--harness',
    'run the deployed bundle on Node.js 24 through the Lambda runtime harness (root; needs --database-url, a superuser URL: the harness makes database `ompf` there)',
  )
  .action(async (o: Options) => {
    const preset = o.short ? SHORT_PRESET : DEFAULT_PRESET;
    if (o.harness && !o.databaseUrl) {
      throw new Error('--harness runs the bundle against PostgreSQL: give --database-url (a superuser URL).');
    }
    if (o.restartCommand && !o.databaseUrl) {
      throw new Error('--restart-command restarts a PostgreSQL server: give --database-url too.');
    }
    const options = {
      events: o.events ?? preset.events,
      keys: o.keys ?? preset.keys,
      seconds: o.seconds ?? preset.seconds,
      seed: o.seed,
      modelsDir: defaultModelsDir(),
      maxReceiveCount: 5,
      batchSize: 10,
      databaseUrl: o.databaseUrl,
      restartCommand: o.restartCommand,
      maxRestarts: o.maxRestarts ?? (o.short ? 3 : 10),
      log: (line: string) => process.stderr.write(`${line}\n`),
      target: o.harness ? ('harness' as const) : ('in-process' as const),
    };
    const shown = { ...options, log: undefined, databaseUrl: options.databaseUrl ? '(set)' : undefined };
    process.stderr.write(`soak: ${JSON.stringify(shown)}\n`);
    const report = await runSoak(options);
    const lines = [
      `runtime ${report.runtime}`,
      `engine ${report.engine}, events ${report.events}, deliveries ${report.deliveries}, batches ${report.batches}, retries ${report.retries} (${report.engine === 'postgresql' ? `${report.failedByRestart} records failed by a server restart mid-batch` : 'store reopened between batches'}), dead-lettered ${report.deadLettered}`,
      `faults: ${Object.entries(report.faults)
        .map(([kind, count]) => `${kind} ${count}`)
        .join(', ')}`,
      `bucket objects ${report.objects}, index rows ${report.rows}, failures listed ${report.failuresListed}`,
      `mismatches ${report.mismatches.length}, ${report.seconds.toFixed(1)} s`,
      ...report.mismatches.slice(0, 50).map((m) => `  mismatch: ${m}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    process.exit(report.mismatches.length === 0 ? 0 : 1);
  });

program.parseAsync().catch((error: unknown) => {
  process.stderr.write(
    `soak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(2);
});
