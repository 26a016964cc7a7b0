import { PgIndexCatalogue } from '../../lib/adapters/store/index-catalogue';
import { PgVectorStore, type StoreOptions } from '../../lib/adapters/store/pg-vector-store';
import { PgliteSqlClient, type SqlClient } from '../../lib/adapters/store/sql-client';
import type { ObjectCheck } from '../../lib/core/object-events';
import type { ImageRecord } from '../../lib/core/ports';
import { IMAGE_KEY_SUFFIXES, Reconciler, type CheckQueue, type ListedObject } from '../../lib/core/reconcile';

/**
 * Reconciliation's pass over a real store and catalogue (PGlite: the same SQL as PostgreSQL), with the
 * two AWS edges replaced: the bucket listing (pages, in key order) and the indexing queue.
 */
const options: StoreOptions = {
  modelId: 'test-model',
  dimension: 4,
  hnswMinRows: 1_000_000,
  indexBuildMemory: '64MB',
};

function record(key: string, etag: string): ImageRecord {
  return {
    source: 'bucket',
    key,
    etag,
    contentHash: `hash-${key}`,
    width: 1,
    height: 1,
    bytes: 1,
    embedding: Float32Array.from([1, 0, 0, 0]),
  };
}

function lister(objects: ListedObject[], pageSize: number) {
  return {
    async *pages() {
      const sorted = [...objects].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
      for (let i = 0; i < sorted.length; i += pageSize) yield sorted.slice(i, i + pageSize);
    },
  };
}

class RecordingQueue implements CheckQueue {
  readonly sent: ObjectCheck[] = [];
  waiting = 0;
  send(checks: readonly ObjectCheck[]) {
    this.sent.push(...checks);
    return Promise.resolve();
  }
  depth() {
    return Promise.resolve(this.waiting);
  }
}

let client: SqlClient;
let catalogue: PgIndexCatalogue;
let store: PgVectorStore;

beforeEach(async () => {
  client = await PgliteSqlClient.open(undefined);
  catalogue = new PgIndexCatalogue(client);
  await catalogue.migrate();
  await catalogue.plan(options.modelId, options.dimension);
  store = await PgVectorStore.open(client, options);
});
afterEach(() => client.close());

const reconcilerWith = (objects: ListedObject[], queue: RecordingQueue, pageSize = 2) =>
  new Reconciler(catalogue, () => Promise.resolve(store), lister(objects, pageSize), queue, {
    ignorePrefixes: ['query-uploads/'],
    suffixes: IMAGE_KEY_SUFFIXES,
  });

describe('a reconcile pass', () => {
  it.each([1, 2, 100])(
    'finds missing, changed and gone keys across page boundaries (page size %i), and lists nothing else',
    async (pageSize) => {
      // Prepare: the index holds a, b (old ETag), d, and a failure for f (this ETag) and g (an older one).
      await store.upsertMany([record('a.jpg', 'ea'), record('b.jpg', 'old'), record('d.jpg', 'ed')]);
      await store.recordFailure('bucket', 'f.jpg', 'not an image', 'ef');
      await store.recordFailure('bucket', 'g.jpg', 'not an image', 'old');
      const queue = new RecordingQueue();
      const objects = [
        { key: 'a.jpg', etag: '"ea"' },
        { key: 'b.jpg', etag: '"new"' },
        { key: 'c.jpg', etag: '"ec"' },
        { key: 'e.txt', etag: '"ee"' },
        { key: 'f.jpg', etag: '"ef"' },
        { key: 'g.jpg', etag: '"eg"' },
        { key: 'query-uploads/q.jpg', etag: '"eq"' },
      ];
      // Act
      const report = await reconcilerWith(objects, queue, pageSize).run('bucket', 'command');
      // Assess
      expect(report.counts).toEqual({
        listed: 5,
        missing: 1,
        changed: 2,
        gone: 1,
        unchanged: 2,
        enqueued: 4,
      });
      expect(queue.sent.sort((x, y) => x.key.localeCompare(y.key))).toEqual([
        { source: 'bucket', key: 'b.jpg', etag: 'new' },
        { source: 'bucket', key: 'c.jpg', etag: 'ec' },
        { source: 'bucket', key: 'd.jpg' },
        { source: 'bucket', key: 'g.jpg', etag: 'eg' },
      ]);
      const [run] = await catalogue.recentRuns(1);
      expect(run).toMatchObject({ trigger: 'command', counts: report.counts, switched: false });
      expect(run?.finishedAt).toBeInstanceOf(Date);
    },
  );

  it('switches a building index in only once a pass finds nothing to do, and waits while the queue holds checks', async () => {
    // Prepare: a second index being built (a model change), empty.
    await catalogue.plan('new-model', 4);
    const building = (await catalogue.entries()).find((e) => e.state === 'building')!;
    expect(building.modelId).toBe('new-model');
    const queue = new RecordingQueue();
    const objects = [{ key: 'a.jpg', etag: 'ea' }];
    const reconciler = new Reconciler(catalogue, () => Promise.resolve(store), lister(objects, 10), queue, {
      ignorePrefixes: [],
      suffixes: IMAGE_KEY_SUFFIXES,
    });
    // Act + Assess: the first pass enqueues the key; while it waits on the queue, no pass runs.
    expect(await reconciler.run('bucket', 'follow-up')).toMatchObject({
      index: 'building',
      switched: false,
      counts: { enqueued: 1 },
    });
    queue.waiting = 1;
    expect(await reconciler.run('bucket', 'follow-up')).toMatchObject({
      waitingForQueue: 1,
      switched: false,
    });
    queue.waiting = 0;
    await store.upsertMany([record('a.jpg', 'ea')]);
    expect(await reconciler.run('bucket', 'follow-up')).toMatchObject({
      counts: { enqueued: 0 },
      switched: true,
    });
    expect((await catalogue.entries()).map((e) => [e.modelId, e.state])).toEqual([
      ['test-model', 'retired'],
      ['new-model', 'active'],
    ]);
  });
});
