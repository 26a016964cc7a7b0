import { PgVectorStore, type StoreOptions } from '../../lib/adapters/store/pg-vector-store';
import { PgliteSqlClient, PostgresSqlClient, type SqlClient } from '../../lib/adapters/store/sql-client';
import { DuplicateFinder } from '../../lib/core/duplicates';
import { InvalidInputError, NotFoundError } from '../../lib/core/errors';
import type { ImageRecord } from '../../lib/core/ports';
import { l2Normalise } from '../../lib/core/vectors';
import { testDatabaseUrl } from '../helpers/shared';

/**
 * Near-duplicate groups over a real store on both engines: edges from the DBA neighbour lists the
 * store keeps with every write (by distance, or by perceptual hash within the ceiling), and from equal
 * content hashes; groups as connected components.
 */
const DIM = 8;
const runId = `ompf_dupes_${process.pid}_${Date.now()}`;
const engines = [
  { name: 'PGlite', connect: (): Promise<SqlClient> => PgliteSqlClient.open(undefined) },
  {
    name: 'PostgreSQL',
    connect: async (): Promise<SqlClient> => {
      const admin = PostgresSqlClient.connect(testDatabaseUrl());
      await admin.exec(`CREATE SCHEMA IF NOT EXISTS ${runId}`);
      await admin.close();
      return PostgresSqlClient.connect(testDatabaseUrl(), { schema: runId });
    },
  },
];
const options: StoreOptions = {
  modelId: 'test-model',
  dimension: DIM,
  hnswMinRows: 1_000_000,
  indexBuildMemory: '64MB',
  dba: 3,
};

function near(axis: number, tilt: number): Float32Array {
  const v = new Float32Array(DIM);
  v[axis] = 1;
  v[(axis + 1) % DIM] = tilt;
  return l2Normalise(v);
}

function image(key: string, embedding: Float32Array, extra: Partial<ImageRecord> = {}): ImageRecord {
  return {
    source: 'g',
    key,
    contentHash: `h-${key}`,
    width: 100,
    height: 100,
    bytes: 1000,
    embedding,
    ...extra,
  };
}

describe.each(engines)('duplicate groups on $name', (engine) => {
  let client: SqlClient;
  let store: PgVectorStore;
  let finder: DuplicateFinder;
  beforeAll(async () => {
    client = await engine.connect();
  });
  beforeEach(async () => {
    store = await PgVectorStore.recreate(client, options);
    finder = new DuplicateFinder(store);
    await store.upsertMany([
      // A photo and two close copies (the largest first in the group).
      image('cat.jpg', near(0, 0), { width: 400, height: 300 }),
      image('cat-small.jpg', near(0, 0.05), { width: 100, height: 75 }),
      image('cat-crop.jpg', near(0, 0.1)),
      // A byte-identical pair far from everything else.
      image('dog.jpg', near(3, 0), { contentHash: 'same' }),
      image('dog copy.jpg', near(3, 0), { contentHash: 'same' }),
      // Unrelated images.
      image('car.jpg', near(5, 0)),
      image('tree.jpg', near(6, 0.9)),
    ]);
  });
  afterAll(async () => {
    if (client.engine === 'postgresql') await client.exec(`DROP SCHEMA IF EXISTS ${runId} CASCADE`);
    await client.close();
  });

  it('finds each group once, largest first, its largest image first, exact copies marked', async () => {
    const page = await finder.groups({ threshold: 0.05 });
    expect(page).toMatchObject({
      total: 2,
      hashBits: 12,
      basis: 'neighbour lists, perceptual hashes and content hashes',
    });
    expect(page.groups.map((g) => g.members.map((m) => m.key))).toEqual([
      ['cat.jpg', 'cat-crop.jpg', 'cat-small.jpg'],
      ['dog copy.jpg', 'dog.jpg'],
    ]);
    const [cats, dogs] = page.groups;
    expect(cats!.members[0]).toMatchObject({ distance: 0, exact: false, width: 400 });
    expect(cats!.members.slice(1).every((m) => m.distance > 0 && m.distance < 0.05)).toBe(true);
    expect(dogs!.members.every((m) => m.exact && m.distance < 1e-3)).toBe(true);
  });

  it('joins a pair the vectors place apart when their perceptual hashes agree, within the ceiling', async () => {
    const hash = '0110'.repeat(16);
    const flipped = (bits: number) =>
      [...hash].map((c, i) => (i < bits ? (c === '0' ? '1' : '0') : c)).join('');
    await store.upsertMany([
      // tree.jpg is near(6, 0.9): 0.257 from this heavily re-encoded copy, hashes 5 bits apart.
      image('tree.jpg', near(6, 0.9), { perceptualHash: hash }),
      image('tree-q3.jpg', near(6, 0), { perceptualHash: flipped(5) }),
      // Equal hashes, but 0.68 apart: beyond HASH_CONFIRMED_CEILING, two different pictures.
      image('car.jpg', near(5, 0), { perceptualHash: flipped(0) }),
      image(
        'car-lookalike.jpg',
        l2Normalise(Float32Array.from({ length: DIM }, (_, i) => [0, 0, 3, 0, 0, 1][i] ?? 0)),
        {
          perceptualHash: flipped(0),
        },
      ),
    ]);
    const keys = async (hashBits?: number) =>
      (await finder.groups({ threshold: 0.05, hashBits })).groups.map((g) => g.members.map((m) => m.key));
    expect(await keys()).toContainEqual(['tree-q3.jpg', 'tree.jpg']);
    const trees = await finder.groupOf('g', 'tree.jpg', { threshold: 0.05 });
    expect(trees.members.map((m) => [m.key, m.hashBits])).toEqual([
      ['tree-q3.jpg', 0],
      ['tree.jpg', 5],
    ]);
    expect(trees.members[1]!.distance).toBeCloseTo(0.257, 2);
    expect(await keys(4)).not.toContainEqual(['tree-q3.jpg', 'tree.jpg']);
    expect((await keys()).flat()).not.toContain('car.jpg');
    // Without hashes (images indexed before schema v7) only the distance counts.
    await store.upsertMany([image('tree.jpg', near(6, 0.9))]);
    expect((await keys()).flat()).not.toContain('tree.jpg');
    await expect(finder.groups({ hashBits: 25 })).rejects.toThrow(InvalidInputError);
    await expect(finder.groups({ hashBits: 1.5 })).rejects.toThrow(/whole number of bits/);
  });

  it('follows the threshold: 0 keeps exact copies only', async () => {
    const page = await finder.groups({ threshold: 0 });
    expect(page.groups.map((g) => g.members.map((m) => m.key))).toEqual([['dog copy.jpg', 'dog.jpg']]);
  });

  it('keeps groups as images arrive and leave', async () => {
    await store.upsertMany([image('cat-again.jpg', near(0, 0.02))]);
    expect((await finder.groupOf('g', 'cat-again.jpg', { threshold: 0.05 })).members).toHaveLength(4);
    await store.remove('g', ['cat.jpg', 'cat-crop.jpg']);
    expect(
      (await finder.groupOf('g', 'cat-small.jpg', { threshold: 0.05 })).members.map((m) => m.key).sort(),
    ).toEqual(['cat-again.jpg', 'cat-small.jpg']);
    await store.remove('g', ['dog copy.jpg']);
    expect((await finder.groupOf('g', 'dog.jpg', { threshold: 0.05 })).members).toEqual([]);
  });

  it('pages through groups with a cursor, and refuses bad input', async () => {
    const first = await finder.groups({ threshold: 0.05, limit: 1 });
    expect(first.groups).toHaveLength(1);
    const second = await finder.groups({ threshold: 0.05, limit: 1, cursor: first.nextCursor });
    expect(second.groups[0]!.members[0]!.key).toBe('dog copy.jpg');
    expect(second.nextCursor).toBeUndefined();
    await expect(finder.groups({ threshold: -1 })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(finder.groups({ cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(finder.groupOf('g', 'missing.jpg')).rejects.toBeInstanceOf(NotFoundError);
  });
});
