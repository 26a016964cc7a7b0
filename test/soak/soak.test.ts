import { FAULT_KINDS, runSoak, SHORT_PRESET, type SoakReport } from '../../lib/soak/soak';
import { MODELS_DIR, TEST_DATABASE_URL } from '../helpers/shared';
import { requirePostgresInCi } from '../functions/fixtures';

/**
 * The short preset of `npm run soak`, in-process: the real indexing handler, s3rver on loopback and
 * PGlite, with duplicates, reordering, corrupt and truncated images, deletions before processing,
 * crashes mid-batch, transient S3 errors, slow responses and poison messages.
 */

/** PGlite always; PostgreSQL + pgvector when CI provides one (a schema of its own). */
const ENGINES = [
  { name: 'PGlite', databaseUrl: undefined },
  ...(TEST_DATABASE_URL ? [{ name: 'PostgreSQL', databaseUrl: TEST_DATABASE_URL }] : []),
];

describe.each(ENGINES)('fault-injection soak (short preset) on $name', ({ databaseUrl }) => {
  let report: SoakReport;

  beforeAll(async () => {
    report = await runSoak({
      ...SHORT_PRESET,
      seed: 1,
      modelsDir: MODELS_DIR,
      maxReceiveCount: 5,
      batchSize: 10,
      databaseUrl,
    });
  }, 120_000);

  it('injects every fault kind at least once', () => {
    // Assess
    expect(report.events).toBeGreaterThanOrEqual(SHORT_PRESET.events);
    expect(FAULT_KINDS.filter((kind) => report.faults[kind] === 0)).toEqual([]);
    expect(report.retries).toBeGreaterThan(0);
  });

  it('matches the index to the bucket exactly and dead-letters only the poison messages', () => {
    // Assess: a corrupt overwrite removes the previous content's row (it once stayed searchable).
    expect(report.mismatches).toEqual([]);
    expect(report.deadLettered).toBe(report.faults.poison);
  });
});

requirePostgresInCi('fault-injection soak');
