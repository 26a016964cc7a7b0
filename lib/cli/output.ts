import cliProgress from 'cli-progress';
import { describeError } from '../core/errors';

/** Progress on stderr, only for humans: silent when stderr is not a terminal (CI, pipes, --json). */
export function progressBar(
  label: string,
  enabled: boolean,
): {
  start(total: number): void;
  update(done: number): void;
  stop(): void;
} {
  if (!enabled || !process.stderr.isTTY)
    return { start: () => undefined, update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  return {
    start: (total) => bar.start(total, 0, { rate: '0.0' }),
    update: (done) =>
      bar.update(done, { rate: (done / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1) }),
    stop: () => bar.stop(),
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Render rows as an aligned plain-text table. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows.map((row) => row.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((row) => (row[c] ?? '').length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, c) => cell.padEnd(widths[c] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

/** Report any error the way a CLI user should see it, and return the exit code. */
export function reportError(error: unknown, json: boolean): number {
  const { exitCode, body } = describeError(error);
  if (json) printJson({ error: body });
  else {
    process.stderr.write(`error: ${body.message}\n`);
    if (body.hint) process.stderr.write(`  ${body.hint}\n`);
  }
  if (process.env.OMPF_DEBUG && error instanceof Error) process.stderr.write(`${error.stack ?? ''}\n`);
  return exitCode;
}
