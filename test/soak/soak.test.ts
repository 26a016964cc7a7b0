import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { FAULT_KINDS, runSoak, SHORT_PRESET, type SoakReport } from '../../lib/soak/soak';
import { MODELS_DIR, testDatabaseUrl } from '../helpers/shared';

/**
 * The short preset of `npm run soak`, in-process (the real indexing handler, s3rver on loopback and
 * PGlite or PostgreSQL) and through the Lambda runtime harness (the synthesized bundle and layers on
 * Node.js 24, a TLS PostgreSQL), with duplicates, reordering, corrupt and truncated images, deletions before processing,
 * crashes mid-batch, transient S3 errors, slow responses, dropped connections, database restarts and
 * poison messages.
 */

const SCRIPTS = join(__dirname, '..', '..', 'scripts', 'ci');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A PostgreSQL cluster of the soak's own (scripts/ci/start-postgres.sh on a free port), because the
 * soak restarts it: the shared test server must not go down under other suites or other users.
 */
async function privateCluster(): Promise<{ url: string; restartCommand: string; stop: () => void }> {
  const port = await freePort();
  const env = { ...process.env, OMPF_PG_PORT: String(port) };
  const output = execFileSync('bash', [join(SCRIPTS, 'start-postgres.sh')], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    timeout: 60_000,
  });
  const url = output.trim().split('\n').pop()!;
  return {
    url,
    restartCommand: `OMPF_PG_PORT=${port} bash '${join(SCRIPTS, 'restart-postgres.sh')}'`,
    stop: () =>
      execFileSync('bash', [join(SCRIPTS, 'stop-postgres.sh')], {
        env: { ...env, OMPF_PG_CLEAN: '1' },
        stdio: 'ignore',
        timeout: 60_000,
      }),
  };
}

/**
 * PGlite (on disk, closed and opened again) and PostgreSQL + pgvector: a private cluster of the soak's
 * own, on PostgreSQL 15 + pgvector as globalSetup installed them (checked here: a run without
 * globalSetup fails at once, saying what to do, instead of provisioning inside a 60 s timeout).
 */
testDatabaseUrl();
const ENGINES = [
  { name: 'PGlite', postgres: false, target: 'in-process' },
  { name: 'PostgreSQL', postgres: true, target: 'in-process' },
  // The deployed bundle on Node.js 24 through the Lambda runtime harness (lib/lambda-local).
  { name: 'PostgreSQL, through the Lambda harness', postgres: true, target: 'harness' },
] as const;

describe.each(ENGINES)('fault-injection soak (short preset) on $name', ({ postgres, target }) => {
  let report: SoakReport;

  beforeAll(async () => {
    const cluster = postgres ? await privateCluster() : undefined;
    try {
      report = await runSoak({
        ...SHORT_PRESET,
        seed: 1,
        modelsDir: MODELS_DIR,
        maxReceiveCount: 5,
        batchSize: 10,
        databaseUrl: cluster?.url,
        restartCommand: cluster?.restartCommand,
        maxRestarts: 3,
        target,
      });
    } finally {
      cluster?.stop();
    }
  }, 300_000);

  it('injects every fault kind at least once', () => {
    // Assess
    expect(report.events).toBeGreaterThanOrEqual(SHORT_PRESET.events);
    expect(FAULT_KINDS.filter((kind) => report.faults[kind] === 0)).toEqual([]);
    expect(report.retries).toBeGreaterThan(0);
  });

  it('restarts the database (PostgreSQL: a real pg_ctl restart mid-batch; PGlite: reopened from disk)', () => {
    // Assess: each PostgreSQL restart is checked by the server's start time changing (runSoak throws).
    expect(report.faults.databaseRestart).toBeGreaterThanOrEqual(1);
    // A server restart terminates the batch's sessions: those records fail, are retried, and succeed.
    if (postgres) expect(report.failedByRestart).toBeGreaterThan(0);
  });

  it('matches the index to the bucket exactly and dead-letters only the poison messages', () => {
    // Assess: a corrupt overwrite removes the previous content's row (it once stayed searchable).
    expect(report.mismatches).toEqual([]);
    expect(report.deadLettered).toBe(report.faults.poison);
  });
});
