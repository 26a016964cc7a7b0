import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import vm from 'node:vm';
import { assertDatabaseListening, CHROMIUM, DATASET_DIR, MODELS_DIR } from '../helpers/shared';

/**
 * What the suites need from the machine, brought up by jest's globalSetup (`npm test`, or `npm test --
 * <file>`): the model files and data set beside the checkout, Debian's Chromium, and a private
 * PostgreSQL 15 + pgvector cluster (scripts/ci/start-postgres.sh). Fast when everything is already
 * there; slow provisioning prints one line per step on stderr. Whatever cannot be provided fails the
 * run at once with one line saying what to run or set (SetupError: its stack is its message, so jest
 * prints that line and nothing else).
 */

const REPO = resolve(__dirname, '..', '..');
const SCRIPTS = join(REPO, 'scripts', 'ci');
const PG_HOST = '127.0.0.1';
const PG_PORT = Number(process.env.OMPF_PG_PORT || 54329);
/** Runs of jest using the cluster: one file per process id, and `started` when a run started it. */
const LEASES = join(tmpdir(), `ompf-pg-${PG_PORT}.jest`);
const STARTED = join(LEASES, 'started');
const LOCK = join(tmpdir(), `ompf-pg-${PG_PORT}.jest.lock`);
const START_PG_HINT =
  'run `sudo bash scripts/ci/start-postgres.sh` to see why, or set OMPF_TEST_DATABASE_URL to a PostgreSQL 15+ with pgvector >= 0.7';

export class SetupError extends Error {
  constructor(message: string) {
    super(`ompf tests: ${message}`);
    this.name = 'SetupError';
    this.stack = this.message;
  }
}

export function step(message: string): void {
  process.stderr.write(`[ompf test setup] ${message}\n`);
}

const isRoot = () => process.getuid?.() === 0;

interface RunResult {
  readonly code: number;
  readonly stdout: string;
  /** The last line the command wrote on stderr, for the one-line failure. */
  readonly lastLine: string;
}

/**
 * Runs a command with its stderr appended to `log`; lines matching `progress` are passed on to our
 * stderr as steps (live once the command has run for a second; a fast, warm run stays quiet).
 */
function run(command: string, args: string[], log: string, progress?: RegExp): Promise<RunResult> {
  appendFileSync(log, `\n$ ${command} ${args.join(' ')}\n`);
  return new Promise((done) => {
    const child = spawn(command, args, {
      cwd: REPO,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let partial = '';
    let lastLine = '';
    const held: string[] = [];
    let live = false;
    const timer = setTimeout(() => {
      live = true;
      held.splice(0).forEach(step);
    }, 1_000);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      appendFileSync(log, chunk);
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim()) lastLine = line.trim();
        const match = progress?.exec(line);
        if (match) {
          if (live) step(match[1]!);
          else held.push(match[1]!);
        }
      }
    });
    const finish = (code: number, error?: string) => {
      clearTimeout(timer);
      if (partial.trim()) lastLine = partial.trim();
      done({ code, stdout, lastLine: error ?? lastLine });
    };
    child.on('error', (error) => finish(127, error.message));
    child.on('close', (code) => finish(code ?? 1));
  });
}

function newLog(name: string): string {
  const log = join(tmpdir(), `ompf-test-setup-${name}.log`);
  writeFileSync(log, `${new Date().toISOString()} ompf test setup: ${name}\n`);
  return log;
}

/**
 * PGlite loads its extensions by dynamic import, which jest's VM contexts only allow under node's
 * --experimental-vm-modules (`npm test` sets it): without it the PGlite suites crash mid-run.
 */
export function checkVmModules(): void {
  if (typeof (vm as { SourceTextModule?: unknown }).SourceTextModule === 'function') return;
  throw new SetupError(
    'node runs without --experimental-vm-modules (PGlite needs it): run `npm test` (one file: `npm test -- <file>`) or `NODE_OPTIONS=--experimental-vm-modules npx jest <file>`.',
  );
}

/** The model files and labelled images live outside the repository (../shared by default). */
export function checkSharedData(): void {
  for (const [dir, variable, what] of [
    [MODELS_DIR, 'OMPF_MODELS_DIR', 'model files'],
    [DATASET_DIR, 'OMPF_DATASET_DIR', 'data set'],
  ] as const) {
    if (!existsSync(dir)) {
      throw new SetupError(
        `${what} not found at ${dir}: put the shared folder beside the checkout (../shared/models, ../shared/data) or set ${variable} to where they are.`,
      );
    }
  }
}

/** Debian's chromium for the search page's end-to-end test (never a downloaded browser). */
export async function ensureChromium(): Promise<void> {
  if (existsSync(CHROMIUM)) return;
  const install = 'apt-get install -y --no-install-recommends chromium';
  if (!isRoot()) {
    throw new SetupError(`${CHROMIUM} is missing and installing it needs root: run \`sudo ${install}\`.`);
  }
  const log = newLog('chromium');
  const started = Date.now();
  const apt = ['-o', 'DPkg::Lock::Timeout=300'];
  step(`${CHROMIUM} missing: apt-get update (log: ${log})`);
  let result = await run('apt-get', [...apt, 'update', '-qq'], log);
  if (result.code === 0) {
    step("apt-get install chromium (Debian's package; once)");
    result = await run(
      'apt-get',
      [...apt, 'install', '-y', '-qq', '--no-install-recommends', 'chromium'],
      log,
    );
  }
  if (result.code !== 0 || !existsSync(CHROMIUM)) {
    throw new SetupError(
      `could not install ${CHROMIUM} (${result.lastLine || `apt-get exited ${result.code}`}; log: ${log}): fix apt's network or sources and run \`${install}\`.`,
    );
  }
  step(`${CHROMIUM} installed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

function answers(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, host);
    const end = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => end(false));
    socket.on('connect', () => end(true));
    socket.on('error', () => end(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Other live jest runs that use the cluster (their lease files), stale ones removed. */
function otherUsers(): number[] {
  if (!existsSync(LEASES)) return [];
  return readdirSync(LEASES)
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => {
      if (pid === process.pid) return false;
      if (alive(pid)) return true;
      rmSync(join(LEASES, String(pid)), { force: true });
      return false;
    });
}

/**
 * Sets OMPF_TEST_DATABASE_URL for the test files: the one given, if any (it must answer), else the
 * private cluster of scripts/ci/start-postgres.sh (installs PostgreSQL 15 and builds pgvector the
 * first time; reuses a cluster already answering on its port).
 */
export async function ensurePostgres(): Promise<void> {
  const given = process.env.OMPF_TEST_DATABASE_URL;
  if (given) {
    try {
      assertDatabaseListening(given);
    } catch (error) {
      throw new SetupError((error as Error).message);
    }
    return;
  }
  const wasUp = await answers(PG_HOST, PG_PORT);
  const log = newLog('postgres');
  const started = Date.now();
  // flock: two jest runs starting at once must not both initdb the same data dir.
  const result = await run(
    'flock',
    ['-w', '1200', LOCK, 'bash', join(SCRIPTS, 'start-postgres.sh')],
    log,
    /^\[start-postgres\] (.*)$/,
  );
  const url = result.stdout.trim().split('\n').pop() ?? '';
  if (result.code !== 0 || !url.startsWith('postgres://')) {
    const reason = result.lastLine.replace(/^\[start-postgres\] (ERROR: )?/, '') || `exit ${result.code}`;
    throw new SetupError(
      `could not start PostgreSQL 15 + pgvector (${reason}; log: ${log}): ${START_PG_HINT}.`,
    );
  }
  process.env.OMPF_TEST_DATABASE_URL = url;
  mkdirSync(LEASES, { recursive: true });
  writeFileSync(join(LEASES, String(process.pid)), '');
  if (!wasUp) writeFileSync(STARTED, String(process.pid));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  step(`PostgreSQL 15 + pgvector: ${url} (${wasUp ? 'already running' : 'started'}, ${seconds} s)`);
}

/**
 * globalTeardown: gives up this run's lease; the last run out stops the cluster if a jest run started
 * it (one started by hand, or answering before, is left alone).
 */
export async function releasePostgres(): Promise<void> {
  const lease = join(LEASES, String(process.pid));
  if (!existsSync(lease)) return;
  rmSync(lease, { force: true });
  if (otherUsers().length > 0 || !existsSync(STARTED)) return;
  rmSync(STARTED, { force: true });
  const log = join(tmpdir(), 'ompf-test-setup-postgres.log');
  const result = await run('bash', [join(SCRIPTS, 'stop-postgres.sh')], log);
  step(
    result.code === 0
      ? `PostgreSQL on ${PG_HOST}:${PG_PORT} stopped`
      : `could not stop PostgreSQL on ${PG_HOST}:${PG_PORT} (${result.lastLine}); run \`bash scripts/ci/stop-postgres.sh\``,
  );
}
