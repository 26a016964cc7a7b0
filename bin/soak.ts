#!/usr/bin/env node
/**
 * `npm run soak`: the fault-injection soak of the indexing path (lib/soak/soak.ts), loopback only.
 * Options: --events N --keys N --seconds N --seed N, or --short (the CI preset); --database-url URL
 * to run on PostgreSQL + pgvector (a schema of its own, dropped afterwards); --restart-command CMD to
 * restart that server mid-batch (e.g. 'bash scripts/ci/restart-postgres.sh': pg_ctl restart -m fast;
 * use a cluster of its own, every other client of it sees the restarts too); --harness to run the
 * deployed bundle on Node.js 24 through the Lambda runtime harness (root; needs --database-url, a
 * superuser URL: the harness makes database `ompf` there). Exits 1 on any mismatch
 * between the index and the bucket.
 */
import { DEFAULT_PRESET, defaultModelsDir, runSoak, SHORT_PRESET } from '../lib/soak/soak';

function option(args: readonly string[], name: string): number | undefined {
  const index = args.indexOf(`--${name}`);
  if (index < 0) return undefined;
  const value = Number(args[index + 1]);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`--${name} needs a positive integer, not '${args[index + 1] ?? ''}'.`);
  }
  return value;
}

function text(args: readonly string[], name: string): string | undefined {
  const index = args.indexOf(`--${name}`);
  return index < 0 ? undefined : args[index + 1];
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const preset = args.includes('--short') ? SHORT_PRESET : DEFAULT_PRESET;
  const options = {
    events: option(args, 'events') ?? preset.events,
    keys: option(args, 'keys') ?? preset.keys,
    seconds: option(args, 'seconds') ?? preset.seconds,
    seed: option(args, 'seed') ?? 1,
    modelsDir: defaultModelsDir(),
    maxReceiveCount: 5,
    batchSize: 10,
    databaseUrl: text(args, 'database-url'),
    restartCommand: text(args, 'restart-command'),
    maxRestarts: option(args, 'max-restarts') ?? (preset === SHORT_PRESET ? 3 : 10),
    log: (line: string) => process.stderr.write(`${line}\n`),
    target: args.includes('--harness') ? ('harness' as const) : ('in-process' as const),
  };
  const shown = { ...options, log: undefined, databaseUrl: options.databaseUrl ? '(set)' : undefined };
  if (options.target === 'harness' && !options.databaseUrl) {
    throw new Error('--harness runs the bundle against PostgreSQL: give --database-url (a superuser URL).');
  }
  if (options.restartCommand && !options.databaseUrl) {
    throw new Error('--restart-command restarts a PostgreSQL server: give --database-url too.');
  }
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
  return report.mismatches.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `soak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(2);
  },
);
