import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import type { SqlClient } from '../../lib/adapters/store/sql-client';
import { ConfigError } from '../../lib/core/errors';
import { awsParts, compareVersions, loadAwsConfig, migrateHandler } from '../../lib/runtime/aws';
import { engines, MIGRATE_CREATE_EVENT, MIGRATE_EVENT_BASE } from './fixtures';
import { MODELS_DIR } from '../helpers/shared';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const base = MIGRATE_EVENT_BASE;
const create = MIGRATE_CREATE_EVENT;
const update = {
  ...base,
  RequestType: 'Update',
  PhysicalResourceId: 'ompf-schema',
  OldResourceProperties: base.ResourceProperties,
} as CloudFormationCustomResourceEvent;
const remove = {
  ...base,
  RequestType: 'Delete',
  PhysicalResourceId: 'ompf-schema',
} as CloudFormationCustomResourceEvent;

describe.each(engines('ompf_migrate_fn'))('migrate step on $name', (engine) => {
  let client: SqlClient;
  const handlerWith = (minPgvector: string) =>
    migrateHandler(
      awsParts(
        loadAwsConfig({
          OMPF_BUCKET: 'ompf-dev-gallery',
          OMPF_DB_SECRET_ARN: 'unused',
          OMPF_MODEL: 'mobilenetv2-int8',
          OMPF_MODELS_DIR: MODELS_DIR,
          OMPF_MIN_PGVECTOR: minPgvector,
        }),
        { sql: () => Promise.resolve(client) },
      ),
    );
  beforeAll(async () => {
    client = await engine.connect();
    await client.exec(
      'DROP TABLE IF EXISTS images, index_failures, image_tombstones, ompf_store, ompf_migrations, ompf_indexes, ompf_reconcile_runs, ompf_event_errors, ompf_control_migrations',
    );
  });
  afterAll(async () => {
    await client.close();
    await engine.drop();
  });

  it('refuses a pgvector older than the stage requires, failing the deployment', async () => {
    await expect(handlerWith('99.0.0')(create)).rejects.toBeInstanceOf(ConfigError);
    await expect(handlerWith('99.0.0')(create)).rejects.toThrow(
      /pgvector 0\.8\.\d+ is older than the required 99\.0\.0/,
    );
  });

  it('applies the same SQL migrations as the local mode on create, nothing more on update, nothing on delete', async () => {
    await client.exec(
      'DROP TABLE IF EXISTS images, index_failures, image_tombstones, ompf_store, ompf_migrations, ompf_indexes, ompf_reconcile_runs, ompf_event_errors, ompf_control_migrations',
    );
    const handler = handlerWith('0.8.0');
    await expect(handler(create)).resolves.toEqual({
      PhysicalResourceId: 'ompf-schema',
      Data: {
        applied: '1,2,3,4,5,6,7',
        pgvector: expect.stringMatching(/^0\.8\.\d+$/),
        // The stage's first index: registered as active in the control schema's catalogue.
        indexModel: 'mobilenetv2-int8+whole+gem3+dba3',
        indexState: 'active',
      },
    });
    await expect(handler(update)).resolves.toMatchObject({ Data: { applied: '' } });
    await expect(handler(remove)).resolves.toEqual({ PhysicalResourceId: 'ompf-schema' });
    const [tables] = await client.query<{ count: number }>(
      "SELECT count(*)::integer AS count FROM pg_tables WHERE schemaname = current_schema() AND tablename IN ('images', 'image_tombstones', 'index_failures')",
    );
    expect(tables?.count).toBe(3);
  });

  it('runs the scheduled maintenance: search strategy chosen, old tombstones pruned', async () => {
    // The strategy is the store's own decision: exact below OMPF_HNSW_MIN_ROWS (no rows here).
    await client.query(
      "INSERT INTO image_tombstones (source, key, sequencer, deleted_at) VALUES ('b', 'old.jpg', '01', now() - interval '40 days'), ('b', 'new.jpg', '02', now())",
    );
    await expect(handlerWith('0.8.0')({ action: 'maintain' })).resolves.toEqual({
      Data: { strategy: 'exact', prunedTombstones: '1', droppedIndexes: '' },
    });
  });
});

describe('version comparison', () => {
  it.each([
    ['0.8.2', '0.8.2', 0],
    ['0.8.10', '0.8.2', 1],
    ['0.8.1', '0.8.2', -1],
    ['0.9', '0.8.2', 1],
  ])('compares %s with %s', (a, b, sign) => {
    expect(Math.sign(compareVersions(a, b))).toBe(sign);
  });
});
