import type { SqlClient } from '../../lib/adapters/store/sql-client';
import { PgVectorStore } from '../../lib/adapters/store/pg-vector-store';
import { resolveModelSpec } from '../../lib/adapters/models/model-registry';
import { awsParts, closeAwsResources, indexImagesHandler, loadAwsConfig } from '../../lib/runtime/aws';
import { storeOptions } from '../../lib/runtime/product';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { jpeg, png } from '../helpers/images';
import {
  engines,
  lambdaContext,
  lambdaEnv,
  s3Notification,
  sqsEvent,
  sqsRecord,
  startS3,
  TEST_EVENT,
  setLambdaRuntimeEnvironment,
  type S3Server,
} from './fixtures';

setLambdaRuntimeEnvironment();

/** Keys that break naive decoding: space (sent as '+'), a real '+', '%', unicode, nested folders. */
const ODD_KEYS = ['holiday/beach day.jpg', 'a+b.jpg', '100% cat.png', 'ökapi/東京 タワー.jpeg', 'x%2By.jpg'];

type Handler = (event: SQSEvent) => Promise<SQSBatchResponse>;

describe.each(engines('ompf_index_fn'))('indexing Lambda on $name', (engine) => {
  let s3: S3Server;
  let client: SqlClient;
  let handler: Handler;
  let store: PgVectorStore;
  const saved = { ...process.env };

  beforeAll(async () => {
    s3 = await startS3();
    client = await engine.connect();
    if (engine.url) {
      // PostgreSQL: the real functions/ module, configured by its environment at import (cold start).
      Object.assign(process.env, lambdaEnv(s3, { DATABASE_URL: engine.url }));
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require('../../functions/index-images') as {
        handler: Handler & ((e: SQSEvent, c: unknown) => Promise<SQSBatchResponse>);
      };
      handler = (event) => mod.handler(event, lambdaContext());
    } else {
      const parts = awsParts(loadAwsConfig(lambdaEnv(s3, { OMPF_DB_SECRET_ARN: 'unused' })), {
        sql: () => Promise.resolve(client),
      });
      const indexer = indexImagesHandler(parts);
      handler = (event) => indexer(event, lambdaContext());
    }
    const spec = resolveModelSpec('mobilenetv2-int8');
    store = await PgVectorStore.recreate(
      client,
      storeOptions(spec, loadAwsConfig(lambdaEnv(s3, { OMPF_DB_SECRET_ARN: 'x' })).base),
    );
  });
  afterAll(async () => {
    process.env = saved;
    await closeAwsResources();
    await s3.close();
    await client.close();
    await engine.drop();
  });

  const created = (key: string, sequencer: string, etag?: string) =>
    sqsRecord(s3Notification({ eventName: 'ObjectCreated:Put', key, sequencer, ...(etag ? { etag } : {}) }));
  const removed = (key: string, sequencer: string) =>
    sqsRecord(s3Notification({ eventName: 'ObjectRemoved:Delete', key, sequencer }));

  it('indexes ObjectCreated events with URL-encoded keys and ignores the s3:TestEvent', async () => {
    // Prepare
    const etags = await Promise.all(
      ODD_KEYS.map(
        async (key, i) =>
          (await s3.put(key, await jpeg(200 + i * 10, 150, { r: 40 * i, g: 90, b: 200 - 30 * i }))).etag,
      ),
    );
    const event = sqsEvent(
      sqsRecord(TEST_EVENT),
      ...ODD_KEYS.map((key, i) => created(key, `0065A1B2C3D4E5F6${i}0`, etags[i])),
    );
    // Act
    const response = await handler(event);
    // Assess
    expect(response.batchItemFailures).toEqual([]);
    expect(await store.listKeys('ompf-gallery-test')).toEqual([...ODD_KEYS].sort());
    const [row] = await client.query<{ etag: string; sequencer: string }>(
      'SELECT etag, sequencer FROM images WHERE key = $1',
      ['a+b.jpg'],
    );
    expect(row).toEqual({ etag: etags[1], sequencer: '0065A1B2C3D4E5F610' });
  });

  it('treats a duplicate delivery as already applied: one row, not rewritten', async () => {
    // Prepare
    const { etag } = await s3.put('dup.jpg', await jpeg(120, 90));
    const message = s3Notification({
      eventName: 'ObjectCreated:Put',
      key: 'dup.jpg',
      sequencer: '0070',
      etag,
    });
    await handler(sqsEvent(sqsRecord(message)));
    const [first] = await client.query<{ updated_at: Date }>('SELECT updated_at FROM images WHERE key = $1', [
      'dup.jpg',
    ]);
    // Act: the same S3 message delivered twice more, once in the same batch.
    const response = await handler(sqsEvent(sqsRecord(message), sqsRecord(message)));
    // Assess
    expect(response.batchItemFailures).toEqual([]);
    const rows = await client.query<{ updated_at: Date }>('SELECT updated_at FROM images WHERE key = $1', [
      'dup.jpg',
    ]);
    expect(rows).toEqual([first]);
  });

  it('applies out-of-order create/delete by sequencer: a late create never resurrects a deleted key', async () => {
    // Prepare
    const { etag } = await s3.put('late.jpg', await jpeg(100, 100));
    // Act: the delete (seq 0090) arrives before the create it follows (seq 0080).
    const response = await handler(sqsEvent(removed('late.jpg', '0090'), created('late.jpg', '0080', etag)));
    // Assess
    expect(response.batchItemFailures).toEqual([]);
    expect(await store.listKeys('ompf-gallery-test')).not.toContain('late.jpg');
    // A newer create (re-upload) indexes it again, and a late delete of the older version keeps it.
    await handler(sqsEvent(created('late.jpg', '00A0', etag), removed('late.jpg', '0095')));
    expect(await store.latestSequencer('ompf-gallery-test', 'late.jpg')).toBe('00A0');
    expect(await store.listKeys('ompf-gallery-test')).toContain('late.jpg');
  });

  it('removes on ObjectRemoved (delete and delete marker), keys decoded', async () => {
    const response = await handler(
      sqsEvent(
        removed('holiday/beach day.jpg', 'FF00'),
        sqsRecord(
          s3Notification({
            eventName: 'ObjectRemoved:DeleteMarkerCreated',
            key: '100% cat.png',
            sequencer: 'FF00',
          }),
        ),
      ),
    );
    expect(response.batchItemFailures).toEqual([]);
    const keys = await store.listKeys('ompf-gallery-test');
    expect(keys).not.toContain('holiday/beach day.jpg');
    expect(keys).not.toContain('100% cat.png');
    expect(keys).toContain('a+b.jpg');
  });

  it('records an undecodable image with its reason and does not retry it', async () => {
    // Prepare
    const { etag } = await s3.put('corrupt.jpg', 'this is not a JPEG', 'image/jpeg');
    const truncated = (await png(300, 200)).subarray(0, 200);
    const second = await s3.put('truncated.png', truncated, 'image/png');
    // Act
    const response = await handler(
      sqsEvent(created('corrupt.jpg', '0100', etag), created('truncated.png', '0100', second.etag)),
    );
    // Assess
    expect(response.batchItemFailures).toEqual([]);
    const failures = await store.listFailures('ompf-gallery-test');
    expect(failures.map((f) => f.key)).toEqual(['corrupt.jpg', 'truncated.png']);
    expect(failures.every((f) => f.reason.length > 10)).toBe(true);
    expect(await store.listKeys('ompf-gallery-test')).not.toContain('corrupt.jpg');
  });

  it('settles a missing object, an overwritten object and a query upload without indexing or retrying', async () => {
    // Prepare: 'overwritten.jpg' now holds newer content than the event describes.
    await s3.put('overwritten.jpg', await jpeg(90, 90));
    const upload = await s3.put('query-uploads/0b6f0a52-9a52-4c39-9a1e-1d2b1f7d0a11.jpg', await jpeg(80, 80));
    // Act
    const response = await handler(
      sqsEvent(
        created('never-uploaded.jpg', '0200', 'd41d8cd98f00b204e9800998ecf8427e'),
        created('overwritten.jpg', '0200', 'an-older-etag'),
        created('query-uploads/0b6f0a52-9a52-4c39-9a1e-1d2b1f7d0a11.jpg', '0200', upload.etag),
      ),
    );
    // Assess
    expect(response.batchItemFailures).toEqual([]);
    const keys = await store.listKeys('ompf-gallery-test');
    expect(keys.filter((k) => /never-uploaded|overwritten|query-uploads/.test(k))).toEqual([]);
    expect((await store.listFailures()).map((f) => f.key)).not.toContain('never-uploaded.jpg');
  });

  it('settles events for keys longer than S3 allows (1,024 bytes) without a row, a failure entry or a retry', async () => {
    // Prepare: S3 refuses such keys, so only a forged or corrupted message can carry one; a good
    // record shares the batch. 'é' is two bytes in UTF-8: 5 + 2 x 520 = 1,045 bytes.
    const long = `long/${'é'.repeat(520)}.jpg`;
    expect(Buffer.byteLength(long)).toBeGreaterThan(1024);
    const { etag } = await s3.put('beside-long.jpg', await jpeg(70, 70));
    // Act
    const response = await handler(
      sqsEvent(
        created(long, '0250', 'd41d8cd98f00b204e9800998ecf8427e'),
        removed(long, '0251'),
        created('beside-long.jpg', '0250', etag),
      ),
    );
    // Assess: the loopback S3 answers 404 for the key, so the create settles as "object gone" (real S3
    // answers 400 KeyTooLongError: that record fails and ends in the dead-letter queue). Either way the
    // good record is indexed and the long key never gets a row or a failure entry.
    expect(response.batchItemFailures).toEqual([]);
    expect((await store.listFailures()).filter((f) => f.key.startsWith('long/'))).toEqual([]);
    const keys = await store.listKeys('ompf-gallery-test');
    expect(keys).toContain('beside-long.jpg');
    expect(keys.filter((k) => k.startsWith('long/'))).toEqual([]);
  });

  it('fails only the malformed records of a batch (they end in the dead-letter queue)', async () => {
    // Prepare
    const { etag } = await s3.put('good.jpg', await jpeg(64, 64));
    const notJson = sqsRecord('{"Records": [');
    const notS3 = sqsRecord(JSON.stringify({ Records: [{ eventSource: 'aws:sqs', body: 'x' }] }));
    const badEncoding = sqsRecord(
      s3Notification({ eventName: 'ObjectCreated:Put', key: 'x', sequencer: '0300' }).replace(
        '"key":"x"',
        '"key":"bad%E0%A4%A.jpg"',
      ),
    );
    const badSequencer = sqsRecord(
      s3Notification({ eventName: 'ObjectCreated:Put', key: 'good.jpg', sequencer: 'zz' }),
    );
    // Act
    const response = await handler(
      sqsEvent(notJson, created('good.jpg', '0300', etag), notS3, badEncoding, badSequencer),
    );
    // Assess
    expect(response.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(
      [notJson, notS3, badEncoding, badSequencer].map((r) => r.messageId).sort(),
    );
    expect(await store.listKeys('ompf-gallery-test')).toContain('good.jpg');
  });
});

describe('indexing Lambda when a dependency is down', () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(() => s3.close());

  it('fails the S3 records of the batch for retry when the database is unreachable', async () => {
    // Prepare: nothing listens on port 1.
    const parts = awsParts(
      loadAwsConfig(lambdaEnv(s3, { DATABASE_URL: 'postgres://ompf@127.0.0.1:1/ompf' })),
    );
    const handler = indexImagesHandler(parts);
    const { etag } = await s3.put('a.jpg', await jpeg(64, 64));
    const create = sqsRecord(
      s3Notification({ eventName: 'ObjectCreated:Put', key: 'a.jpg', sequencer: '01', etag }),
    );
    const remove = sqsRecord(
      s3Notification({ eventName: 'ObjectRemoved:Delete', key: 'b.jpg', sequencer: '01' }),
    );
    // Act
    const response = await handler(sqsEvent(sqsRecord(TEST_EVENT), create, remove), lambdaContext());
    // Assess: the test event needs no database and succeeds; the two object events are retried.
    expect(response.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([
      create.messageId,
      remove.messageId,
    ]);
    await closeAwsResources();
  });

  it('fails the whole batch for retry when S3 is unreachable', async () => {
    // Prepare: a store on PGlite, S3 on a port where nothing listens.
    const { PgliteSqlClient } = await import('../../lib/adapters/store/sql-client');
    const client = await PgliteSqlClient.open(undefined);
    const parts = awsParts(
      loadAwsConfig(lambdaEnv(s3, { OMPF_DB_SECRET_ARN: 'unused', OMPF_S3_ENDPOINT: 'http://127.0.0.1:1' })),
      { sql: () => Promise.resolve(client) },
    );
    const create = sqsRecord(
      s3Notification({ eventName: 'ObjectCreated:Put', key: 'a.jpg', sequencer: '01' }),
    );
    // Act + Assess: every record failed, so Powertools throws and Lambda returns the batch to the queue.
    await expect(indexImagesHandler(parts)(sqsEvent(create), lambdaContext())).rejects.toThrow(
      /All records failed/,
    );
    await client.close();
  });
});
