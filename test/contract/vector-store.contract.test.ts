import { PgVectorStore, type StoreOptions } from '../../lib/adapters/store/pg-vector-store';
import { migrate } from '../../lib/adapters/store/migrator';
import { PgliteSqlClient, PostgresSqlClient, type SqlClient } from '../../lib/adapters/store/sql-client';
import { DependencyUnavailableError, InvalidInputError, ModelMismatchError } from '../../lib/core/errors';
import type { ImageRecord } from '../../lib/core/ports';
import { databaseAugment } from '../../lib/core/retrieval';
import { l2Normalise } from '../../lib/core/vectors';
import { clusteredVectors } from '../../lib/bench/measure';
import { testDatabaseUrl } from '../helpers/shared';

/**
 * One contract, every engine: the same scenarios run on the embedded PGlite (always) and on a real
 * PostgreSQL + pgvector server (always: jest's globalSetup starts one and sets OMPF_TEST_DATABASE_URL).
 */
interface Engine {
  readonly name: string;
  connect(): Promise<SqlClient>;
}

const runId = `ompf_contract_${process.pid}_${Date.now()}`;
const databaseUrl = testDatabaseUrl();
const engines: Engine[] = [
  { name: 'PGlite', connect: () => PgliteSqlClient.open(undefined) },
  {
    name: 'PostgreSQL',
    connect: async () => {
      // A schema of our own per run, so parallel or earlier runs never see each other's tables.
      const admin = PostgresSqlClient.connect(databaseUrl);
      await admin.exec(`CREATE SCHEMA IF NOT EXISTS ${runId}`);
      await admin.close();
      const url = new URL(databaseUrl);
      url.searchParams.set('options', `-c search_path=${runId},public`);
      return PostgresSqlClient.connect(url.toString());
    },
  },
];

const DIM = 8;
const options: StoreOptions = {
  modelId: 'test-model',
  dimension: DIM,
  hnswMinRows: 1_000_000,
  indexBuildMemory: '64MB',
};

/** A unit vector pointing mostly along axis `axis`, tilted by `tilt` towards axis+1. */
function direction(axis: number, tilt = 0): Float32Array {
  const v = new Float32Array(DIM);
  v[axis % DIM] = 1;
  v[(axis + 1) % DIM] = tilt;
  return l2Normalise(v);
}

function record(key: string, embedding: Float32Array, overrides: Partial<ImageRecord> = {}): ImageRecord {
  return {
    source: 'gallery',
    key,
    contentHash: `hash-${key}`,
    width: 10,
    height: 10,
    bytes: 100,
    embedding,
    ...overrides,
  };
}

describe.each(engines)('vector store contract on $name', (engine) => {
  let client: SqlClient;
  let store: PgVectorStore;

  beforeAll(async () => {
    client = await engine.connect();
  });
  beforeEach(async () => {
    store = await PgVectorStore.recreate(client, options);
  });
  afterAll(async () => {
    if (client.engine === 'postgresql') await client.exec(`DROP SCHEMA IF EXISTS ${runId} CASCADE`);
    await client.close();
  });

  it('applies the migrations once and records them; opening again applies nothing', async () => {
    const versions = await client.query<{ version: number }>(
      'SELECT version FROM ompf_migrations ORDER BY version',
    );
    expect(versions.map((v) => v.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    await expect(migrate(client, { modelId: options.modelId, dimension: DIM })).resolves.toEqual([]);
    await expect(PgVectorStore.open(client, options)).resolves.toBeInstanceOf(PgVectorStore);
  });

  it('stores embeddings as halfvec(D) with the model id, unique per (source, key)', async () => {
    const [column] = await client.query<{ type: string }>(
      "SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'images'::regclass AND attname = 'embedding'",
    );
    expect(column?.type).toBe(`halfvec(${DIM})`);
    await store.upsertMany([record('a.jpg', direction(0))]);
    const [row] = await client.query<{ model_id: string }>('SELECT model_id FROM images');
    expect(row?.model_id).toBe('test-model');
  });

  it('returns the N nearest by cosine distance, nearest first, with distances', async () => {
    // Prepare
    await store.upsertMany([
      record('far.jpg', direction(4)),
      record('near.jpg', direction(0, 0.1)),
      record('middle.jpg', direction(0, 0.8)),
    ]);
    // Act
    const hits = await store.nearest({ vector: direction(0), limit: 2, metric: 'cosine' });
    // Assess
    expect(hits.map((h) => h.key)).toEqual(['near.jpg', 'middle.jpg']);
    expect(hits[0]!.distance).toBeCloseTo(1 - 1 / Math.sqrt(1.01), 3);
    expect(hits[0]!.distance).toBeLessThan(hits[1]!.distance);
  });

  it('reports Euclidean distance on request, ranking as cosine does on unit vectors', async () => {
    await store.upsertMany([record('near.jpg', direction(0, 0.1)), record('far.jpg', direction(3))]);
    const hits = await store.nearest({ vector: direction(0), limit: 2, metric: 'euclidean' });
    expect(hits.map((h) => h.key)).toEqual(['near.jpg', 'far.jpg']);
    expect(hits[1]!.distance).toBeCloseTo(Math.SQRT2, 2); // orthogonal unit vectors
  });

  it('orders ties deterministically by source then key', async () => {
    const same = direction(2);
    await store.upsertMany([
      record('c.jpg', same),
      record('a.jpg', same),
      record('b.jpg', same, { source: 'another' }),
    ]);
    const hits = await store.nearest({ vector: same, limit: 3, metric: 'cosine' });
    expect(hits.map((h) => `${h.source}/${h.key}`)).toEqual([
      'another/b.jpg',
      'gallery/a.jpg',
      'gallery/c.jpg',
    ]);
  });

  it('filters by key prefix and still returns N rows when N exist', async () => {
    // Prepare: 40 cats close to the query, 5 dogs far from it.
    const cats = Array.from({ length: 40 }, (_, i) => record(`cats/${i}.jpg`, direction(0, i / 100)));
    const dogs = Array.from({ length: 5 }, (_, i) => record(`dogs/${i}.jpg`, direction(5, i / 10)));
    await store.upsertMany([...cats, ...dogs]);
    // Act
    const hits = await store.nearest({
      vector: direction(0),
      limit: 5,
      metric: 'cosine',
      keyPrefix: 'dogs/',
    });
    // Assess
    expect(hits).toHaveLength(5);
    expect(hits.every((h) => h.key.startsWith('dogs/'))).toBe(true);
  });

  it('treats LIKE wildcards and quotes in a prefix literally (SQL-injection-looking input is data)', async () => {
    await store.upsertMany([
      record("100%_off/it's.jpg", direction(0)),
      record('100xxoff/other.jpg', direction(0)),
      record("x'; DROP TABLE images; --", direction(1)),
    ]);
    const hits = await store.nearest({
      vector: direction(0),
      limit: 10,
      metric: 'cosine',
      keyPrefix: '100%_',
    });
    expect(hits.map((h) => h.key)).toEqual(["100%_off/it's.jpg"]);
    expect(await store.listKeys('gallery')).toContain("x'; DROP TABLE images; --");
  });

  it('leaves out the excluded image (query by an indexed image)', async () => {
    await store.upsertMany([record('self.jpg', direction(0)), record('other.jpg', direction(0, 0.5))]);
    const hits = await store.nearest({
      vector: direction(0),
      limit: 10,
      metric: 'cosine',
      exclude: { source: 'gallery', key: 'self.jpg' },
    });
    expect(hits.map((h) => h.key)).toEqual(['other.jpg']);
  });

  it('upserts idempotently: a repeated or changed key replaces its row, never duplicates it', async () => {
    await store.upsertMany([record('a.jpg', direction(0))]);
    await store.upsertMany([record('a.jpg', direction(0))]);
    await store.upsertMany([
      record('a.jpg', direction(3), { contentHash: 'v2' }),
      record('a.jpg', direction(4), { contentHash: 'v3' }),
    ]);
    expect(await store.listKeys('gallery')).toEqual(['a.jpg']);
    expect(await store.contentHashes('gallery', ['a.jpg', 'missing.jpg'])).toEqual(
      new Map([['a.jpg', 'v3']]),
    );
    const [hit] = await store.nearest({ vector: direction(4), limit: 1, metric: 'cosine' });
    expect(hit?.distance).toBeCloseTo(0, 3);
  });

  it('round-trips an embedding at half precision', async () => {
    const vector = l2Normalise(Float32Array.from({ length: DIM }, (_, i) => Math.sin(i + 1)));
    await store.upsertMany([record('a.jpg', vector)]);
    const stored = await store.getEmbedding('gallery', 'a.jpg');
    stored!.forEach((value, i) => expect(value).toBeCloseTo(vector[i]!, 3));
    expect(await store.getEmbedding('gallery', 'missing.jpg')).toBeUndefined();
    expect(await store.findSources('a.jpg')).toEqual(['gallery']);
  });

  it('removes keys and reports how many were removed', async () => {
    await store.upsertMany([record('a.jpg', direction(0)), record('b.jpg', direction(1))]);
    await expect(store.remove('gallery', ['a.jpg', 'never-indexed.jpg'])).resolves.toBe(1);
    expect(await store.listKeys('gallery')).toEqual(['b.jpg']);
  });

  it('records failures with their reason, and clears them once the key indexes', async () => {
    await store.recordFailure('gallery', 'bad.jpg', 'The image could not be decoded');
    await store.recordFailure('gallery', 'bad.jpg', 'still broken');
    expect((await store.listFailures()).map((f) => [f.key, f.reason])).toEqual([['bad.jpg', 'still broken']]);
    expect((await store.stats()).failures).toBe(1);
    await store.upsertMany([record('bad.jpg', direction(0))]);
    expect(await store.listFailures()).toEqual([]);
  });

  describe('event-ordered writes (S3 sequencers: at-least-once, unordered delivery)', () => {
    const sequenced = (key: string, sequencer: string, axis = 0) => ({
      ...record(key, direction(axis), { contentHash: `hash-${sequencer}` }),
      sequencer,
    });

    it('applies a newer create, and refuses a duplicate or older one without touching the row', async () => {
      // Prepare
      await expect(store.upsertIfNewer(sequenced('a.jpg', '0055B2A1C0E0D10A00'))).resolves.toEqual({
        applied: true,
        existed: false,
      });
      // Act
      const duplicate = await store.upsertIfNewer(sequenced('a.jpg', '0055B2A1C0E0D10A00', 3));
      const older = await store.upsertIfNewer(sequenced('a.jpg', '0055B2A1C0E0D109FF', 4));
      const newer = await store.upsertIfNewer(sequenced('a.jpg', '0055B2A1C0E0D10A01', 5));
      // Assess
      expect(duplicate).toEqual({ applied: false, current: '0055B2A1C0E0D10A00' });
      expect(older).toEqual({ applied: false, current: '0055B2A1C0E0D10A00' });
      expect(newer).toEqual({ applied: true, existed: true });
      expect(await store.contentHashes('gallery', ['a.jpg'])).toEqual(
        new Map([['a.jpg', 'hash-0055B2A1C0E0D10A01']]),
      );
      expect(await store.latestSequencer('gallery', 'a.jpg')).toBe('0055B2A1C0E0D10A01');
    });

    it('compares sequencers of different lengths as S3 says: right-padded with zeros', async () => {
      // '0A1' is '0A10' padded: newer than '0A0F', older than '0A11'.
      await store.upsertIfNewer(sequenced('a.jpg', '0A0F'));
      await expect(store.upsertIfNewer(sequenced('a.jpg', '0a1'))).resolves.toMatchObject({ applied: true });
      await expect(store.upsertIfNewer(sequenced('a.jpg', '0A10'))).resolves.toMatchObject({
        applied: false,
      });
      await expect(store.upsertIfNewer(sequenced('a.jpg', '0A11'))).resolves.toMatchObject({ applied: true });
    });

    it('removes with a tombstone, so a late create never resurrects the key', async () => {
      // Prepare: created at 10, deleted at 20.
      await store.upsertIfNewer(sequenced('a.jpg', '10'));
      await store.recordFailure('gallery', 'a.jpg', 'an older failure');
      // Act
      const removed = await store.removeIfNewer('gallery', 'a.jpg', '20');
      const lateCreate = await store.upsertIfNewer(sequenced('a.jpg', '15'));
      const duplicateDelete = await store.removeIfNewer('gallery', 'a.jpg', '20');
      // Assess
      expect(removed).toEqual({ applied: true, existed: true });
      expect(lateCreate).toEqual({ applied: false, current: '20' });
      expect(duplicateDelete).toEqual({ applied: false, current: '20' });
      expect(await store.listKeys('gallery')).toEqual([]);
      expect(await store.listFailures()).toEqual([]);
      expect(await store.latestSequencer('gallery', 'a.jpg')).toBe('20');
    });

    it('refuses a late delete of a newer image, and lets a newer create replace a tombstone', async () => {
      // A delete that arrives before the create it follows: tombstone first, then the late create is refused.
      await expect(store.removeIfNewer('gallery', 'b.jpg', '30')).resolves.toEqual({
        applied: true,
        existed: false,
      });
      await expect(store.upsertIfNewer(sequenced('b.jpg', '25'))).resolves.toMatchObject({ applied: false });
      // Re-created later (40), then a late delete (35) arrives: the image stays.
      await expect(store.upsertIfNewer(sequenced('b.jpg', '40'))).resolves.toEqual({
        applied: true,
        existed: false,
      });
      await expect(store.removeIfNewer('gallery', 'b.jpg', '35')).resolves.toEqual({
        applied: false,
        current: '40',
      });
      expect(await store.listKeys('gallery')).toEqual(['b.jpg']);
      const [tombstones] = await client.query<{ count: number }>(
        'SELECT count(*)::integer AS count FROM image_tombstones',
      );
      expect(tombstones?.count).toBe(0);
    });

    it('keeps keys of different sources apart and prunes old tombstones only', async () => {
      await store.removeIfNewer('bucket-a', 'x.jpg', '50');
      await expect(store.upsertIfNewer(sequenced('x.jpg', '10'))).resolves.toMatchObject({ applied: true });
      expect(await store.latestSequencer('bucket-a', 'x.jpg')).toBe('50');
      expect(await store.latestSequencer('gallery', 'missing.jpg')).toBeUndefined();
      await expect(store.pruneTombstones(new Date(Date.now() - 60_000))).resolves.toBe(0);
      await expect(store.pruneTombstones(new Date(Date.now() + 60_000))).resolves.toBe(1);
      expect(await store.latestSequencer('bucket-a', 'x.jpg')).toBeUndefined();
    });

    it('serialises concurrent writers of one key: the newest event wins whatever the arrival order', async () => {
      // Prepare: ten events for one key, delivered concurrently in a scrambled order.
      const sequencers = ['07', '03', '0A', '01', '09', '02', '08', '04', '06', '05'];
      // Act
      await Promise.all(
        sequencers.map((sequencer, i) =>
          i % 3 === 2
            ? store.removeIfNewer('gallery', 'race.jpg', sequencer)
            : store.upsertIfNewer(sequenced('race.jpg', sequencer, i)),
        ),
      );
      // Assess: '0A' (index 2) is a delete, so the key ends deleted.
      expect(await store.latestSequencer('gallery', 'race.jpg')).toBe('0A');
      expect(await store.listKeys('gallery')).toEqual([]);
    });

    it('refuses a sequencer that is not hex before writing anything', async () => {
      await expect(store.upsertIfNewer(sequenced('a.jpg', '10'))).resolves.toMatchObject({ applied: true });
      await expect(store.upsertIfNewer(sequenced('a.jpg', 'not-hex'))).rejects.toBeInstanceOf(
        InvalidInputError,
      );
      await expect(store.removeIfNewer('gallery', 'a.jpg', '')).rejects.toBeInstanceOf(InvalidInputError);
      await expect(store.upsertIfNewer(sequenced('new.jpg', '12G4'))).rejects.toBeInstanceOf(
        InvalidInputError,
      );
      await expect(store.removeIfNewer('gallery', 'new.jpg', '1'.repeat(65))).rejects.toBeInstanceOf(
        InvalidInputError,
      );
      expect(await store.listKeys('gallery')).toEqual(['a.jpg']);
    });
  });

  describe('reconciliation (a bucket listing compared with the index, compare-and-set writes)', () => {
    it('lists images and failures of a key range in byte order, as S3 lists keys', async () => {
      // Prepare: keys whose byte order differs from most collations' ('B' < 'a', 'é' after 'z').
      await store.upsertMany(
        ['a.jpg', 'B.jpg', 'z.jpg', 'é.jpg', 'm/1.jpg'].map((key, i) =>
          record(key, direction(i), { etag: `etag-${i}` }),
        ),
      );
      await store.recordFailure('gallery', 'broken.jpg', 'not an image', 'etag-broken');
      await store.upsertMany([record('other.jpg', direction(0), { source: 'elsewhere' })]);
      // Act
      const all = await store.indexedRange('gallery', undefined, undefined);
      const middle = await store.indexedRange('gallery', 'B.jpg', 'm/1.jpg');
      // Assess
      expect(all.map((k) => k.key)).toEqual(['B.jpg', 'a.jpg', 'broken.jpg', 'm/1.jpg', 'z.jpg', 'é.jpg']);
      expect(all.find((k) => k.key === 'broken.jpg')).toEqual({
        key: 'broken.jpg',
        etag: 'etag-broken',
        failed: true,
      });
      expect(middle.map((k) => k.key)).toEqual(['a.jpg', 'broken.jpg', 'm/1.jpg']);
      expect(await store.indexedKey('gallery', 'a.jpg')).toEqual({
        key: 'a.jpg',
        etag: 'etag-0',
        failed: false,
      });
      expect(await store.indexedKey('gallery', 'nothing.jpg')).toBeUndefined();
    });

    it('writes and removes only while the sequencer it read is still the newest applied', async () => {
      // Prepare: a key written by an event, another with only a tombstone, a third never seen.
      await store.upsertIfNewer({ ...record('seen.jpg', direction(0)), sequencer: '0A' });
      await store.removeIfNewer('gallery', 'deleted.jpg', '0B');
      // Act + Assess: the state read is still current: applied, and the sequencer is kept.
      await expect(store.upsertIfUnchanged(record('seen.jpg', direction(1)), '0A')).resolves.toEqual({
        applied: true,
        existed: true,
      });
      expect(await store.latestSequencer('gallery', 'seen.jpg')).toBe('0A');
      await expect(store.upsertIfUnchanged(record('deleted.jpg', direction(2)), '0B')).resolves.toEqual({
        applied: true,
        existed: false,
      });
      expect(await store.listKeys('gallery')).toEqual(['deleted.jpg', 'seen.jpg']);
      await expect(store.upsertIfUnchanged(record('new.jpg', direction(3)), undefined)).resolves.toEqual({
        applied: true,
        existed: false,
      });
      // An event applied in between wins: the write is refused and names the newer sequencer.
      await store.upsertIfNewer({ ...record('seen.jpg', direction(4)), sequencer: '0C' });
      await expect(store.upsertIfUnchanged(record('seen.jpg', direction(5)), '0A')).resolves.toEqual({
        applied: false,
        current: '0C',
      });
      await expect(store.removeIfUnchanged('gallery', 'seen.jpg', '0A')).resolves.toEqual({
        applied: false,
        current: '0C',
      });
      // A removal that still holds leaves a tombstone at the sequencer read: a late older event stays out.
      await expect(store.removeIfUnchanged('gallery', 'seen.jpg', '0C')).resolves.toEqual({
        applied: true,
        existed: true,
      });
      await expect(
        store.upsertIfNewer({ ...record('seen.jpg', direction(6)), sequencer: '0B' }),
      ).resolves.toEqual({
        applied: false,
        current: '0C',
      });
      expect(await store.listKeys('gallery')).toEqual(['deleted.jpg', 'new.jpg']);
    });
  });

  it('refuses a vector of the wrong dimension and one holding NaN', async () => {
    await expect(store.upsertMany([record('a.jpg', new Float32Array(DIM + 1))])).rejects.toBeInstanceOf(
      InvalidInputError,
    );
    await expect(store.nearest({ vector: new Float32Array(3), limit: 1, metric: 'cosine' })).rejects.toThrow(
      /3-d vector .* 8-d store/,
    );
    const nan = direction(0);
    nan[2] = Number.NaN;
    await expect(store.upsertMany([record('a.jpg', nan)])).rejects.toThrow(/NaN/);
    expect(await store.listKeys('gallery')).toEqual([]);
  });

  it('refuses to open with another model and says how to re-index; recreate switches models', async () => {
    await store.upsertMany([record('a.jpg', direction(0))]);
    const other = { ...options, modelId: 'other-model', dimension: 16 };
    await expect(PgVectorStore.open(client, other)).rejects.toBeInstanceOf(ModelMismatchError);
    await expect(PgVectorStore.open(client, other)).rejects.toThrow(/built with model 'test-model' \(8-d\)/);
    // The refusal loses nothing.
    expect(await store.listKeys('gallery')).toEqual(['a.jpg']);
    const rebuilt = await PgVectorStore.recreate(client, other);
    expect((await rebuilt.stats()).modelId).toBe('other-model');
    expect(await rebuilt.listKeys('gallery')).toEqual([]);
  });

  it('chooses its search strategy by engine and size after a bulk load', async () => {
    // Prepare: a threshold of 30 rows, then 60 rows.
    const small = await PgVectorStore.recreate(client, { ...options, hnswMinRows: 30 });
    await small.upsertMany(
      Array.from({ length: 60 }, (_, i) =>
        record(`k/${String(i).padStart(2, '0')}.jpg`, direction(i % DIM, (i % 7) / 10)),
      ),
    );
    // Act
    const strategy = await small.optimise();
    // Assess: PGlite always searches exactly (HNSW builds there are ~30x slower than native);
    // PostgreSQL builds HNSW once the threshold is passed, and results stay right, filters included.
    expect(strategy).toBe(client.engine === 'postgresql' ? 'hnsw' : 'exact');
    expect((await small.stats()).searchStrategy).toBe(strategy);
    const hits = await small.nearest({ vector: direction(3), limit: 5, metric: 'cosine' });
    expect(hits[0]!.key).toBe('k/35.jpg'); // axis 3 with no tilt
    const filtered = await small.nearest({
      vector: direction(3),
      limit: 4,
      metric: 'cosine',
      keyPrefix: 'k/5',
    });
    expect(filtered).toHaveLength(4);
    expect(filtered.every((h) => h.key.startsWith('k/5'))).toBe(true);
  });
  describe('database-side augmentation (maintained as images arrive and leave)', () => {
    const K = 3;
    const dbaOptions: StoreOptions = { ...options, modelId: 'test-model+dba3', dba: K };

    /** Seeded, so a failure replays. */
    function random(seed: number): () => number {
      let state = seed >>> 0;
      return () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    }

    /** Unit vectors around a few cluster centres, non-negative like CNN features. */
    function gallery(count: number, seed: number): Float32Array[] {
      const next = random(seed);
      const centres = Array.from({ length: 4 }, () => Float32Array.from({ length: DIM }, () => next()));
      return Array.from({ length: count }, (_, i) =>
        l2Normalise(Float32Array.from(centres[i % 4]!, (c) => Math.max(0, c + (next() - 0.5) * 0.6))),
      );
    }

    interface Snapshot {
      readonly neighbours: string[];
      readonly distances: number[];
      readonly embedding: number[];
      readonly bits: string | null;
    }

    /** Every row's DBA state by key, neighbours named by key. */
    async function snapshot(): Promise<Map<string, Snapshot>> {
      const rows = await client.query<{
        id: string;
        key: string;
        neighbours: string[];
        distances: number[];
        embedding: string;
        bits: string | null;
      }>(
        `SELECT id::text AS id, key, dba_neighbours::text[] AS neighbours, dba_distances AS distances,
                embedding::text AS embedding, embedding_bits::text AS bits FROM images ORDER BY key`,
      );
      const keyOf = new Map(rows.map((r) => [r.id, r.key]));
      return new Map(
        rows.map((r) => [
          r.key,
          {
            neighbours: r.neighbours.map((id) => keyOf.get(id) ?? `missing ${id}`),
            distances: r.distances.map(Number),
            embedding: JSON.parse(r.embedding) as number[],
            bits: r.bits,
          },
        ]),
      );
    }

    function expectSameState(actual: Map<string, Snapshot>, expected: Map<string, Snapshot>): void {
      expect([...actual.keys()]).toEqual([...expected.keys()]);
      for (const [key, want] of expected) {
        const got = actual.get(key)!;
        expect({ key, neighbours: got.neighbours }).toEqual({ key, neighbours: want.neighbours });
        got.distances.forEach((d, i) => expect(d).toBeCloseTo(want.distances[i]!, 6));
        // Both sides round to halfvec once from the same float32 computation: equal or one ulp apart.
        got.embedding.forEach((v, i) => expect(Math.abs(v - want.embedding[i]!)).toBeLessThan(2e-3));
      }
    }

    it('stores the raw vector and the augmented one: k raw-space neighbours, the eval formula', async () => {
      // Prepare
      const dba = await PgVectorStore.recreate(client, dbaOptions);
      const vectors = gallery(24, 7);
      const key = (i: number) => `g/${String(i).padStart(2, '0')}.jpg`;
      // Act
      await dba.upsertMany(vectors.map((v, i) => record(key(i), v)));
      // Assess: an independent reference from the raw vectors as stored (halfvec).
      const raws = await Promise.all(vectors.map((_, i) => dba.getEmbedding('gallery', key(i))));
      raws.forEach((raw, i) => raw!.forEach((x, d) => expect(x).toBeCloseTo(vectors[i]![d]!, 3)));
      const cosine = (a: Float32Array, b: Float32Array) => {
        let ab = 0;
        let aa = 0;
        let bb = 0;
        a.forEach((x, d) => {
          ab += x * b[d]!;
          aa += x * x;
          bb += b[d]! * b[d]!;
        });
        return 1 - ab / Math.sqrt(aa * bb);
      };
      const state = await snapshot();
      for (let i = 0; i < vectors.length; i++) {
        const nearest = raws
          .map((raw, j) => ({ j, distance: cosine(raws[i]!, raw!) }))
          .filter((e) => e.j !== i)
          .sort((a, b) => a.distance - b.distance || a.j - b.j)
          .slice(0, K);
        const row = state.get(key(i))!;
        expect(row.neighbours).toEqual(nearest.map((e) => key(e.j)));
        const expected = databaseAugment(
          raws[i]!,
          nearest.map((e) => raws[e.j]!),
        );
        const searched = await dba.getSearchedEmbedding('gallery', key(i));
        searched!.forEach((x, d) => expect(x).toBeCloseTo(expected[d]!, 2));
      }
      // A query is ranked against the augmented vectors, and its distance measured to each image's own
      // vector: the image itself is at 0 (halfvec rounding), though its augmented vector is not.
      const [hit] = await dba.nearest({ vector: raws[5]!, limit: 1, metric: 'cosine' });
      expect(hit?.key).toBe(key(5));
      expect(hit?.distance).toBeLessThan(1e-4);
      const augmented = await dba.getSearchedEmbedding('gallery', key(5));
      expect(1 - augmented!.reduce((sum, x, d) => sum + x * raws[5]![d]!, 0)).toBeGreaterThan(1e-3);
    });

    it('keeps incremental maintenance equal to a full rebuild through inserts, overwrites and deletes', async () => {
      // Prepare: 40 images, written in a random order of single and batched inserts, overwrites with
      // new content, deletes and re-inserts, through every write path.
      const dba = await PgVectorStore.recreate(client, dbaOptions);
      const next = random(42);
      const vectors = gallery(60, 11);
      const key = (i: number) => `k/${String(i).padStart(2, '0')}.jpg`;
      const live = new Set<number>();
      let sequencer = 0x100;
      // Act
      for (let step = 0; step < 70; step++) {
        const i = Math.floor(next() * 40);
        const action = next();
        const vector = vectors[live.has(i) && action < 0.5 ? 40 + Math.floor(next() * 20) : i]!;
        if (action < 0.45) {
          const batch = [i, Math.floor(next() * 40), Math.floor(next() * 40)];
          await dba.upsertMany(batch.map((j) => record(key(j), j === i ? vector : vectors[j]!)));
          batch.forEach((j) => live.add(j));
        } else if (action < 0.65) {
          await dba.upsertIfNewer({ ...record(key(i), vector), sequencer: (sequencer++).toString(16) });
          live.add(i);
        } else if (action < 0.85) {
          await dba.remove('gallery', [key(i), key(Math.floor(next() * 40))]);
          live.delete(i);
        } else {
          await dba.removeIfNewer('gallery', key(i), (sequencer++).toString(16));
          live.delete(i);
        }
      }
      const incremental = await snapshot();
      const rows = await dba.rebuildAugmentation();
      // Assess
      expect(rows).toBe(incremental.size);
      expect(incremental.size).toBeGreaterThan(15);
      expectSameState(incremental, await snapshot());
      for (const row of incremental.values()) expect(row.neighbours).toHaveLength(K);
    });

    it('maintains the sign bits too once the store uses binary candidates', async () => {
      const dba = await PgVectorStore.recreate(client, { ...dbaOptions, binaryMinRows: 10 });
      const vectors = gallery(30, 3);
      await dba.upsertMany(vectors.slice(0, 20).map((v, i) => record(`b/${i}.jpg`, v)));
      if (client.engine === 'pglite') expect(await dba.optimise()).toBe('binary');
      // Act: more rows after the switch (DBA candidates now come from the binary search)
      for (let i = 20; i < 30; i++) await dba.upsertMany([record(`b/${i}.jpg`, vectors[i]!)]);
      await dba.remove('gallery', ['b/3.jpg']);
      // Assess: every row's bits are those of its current augmented vector
      if (client.engine === 'pglite') {
        const [stale] = await client.query<{ count: number }>(
          `SELECT count(*)::integer AS count FROM images, ompf_store
            WHERE embedding_bits IS DISTINCT FROM binary_quantize(embedding - centre)`,
        );
        expect(stale?.count).toBe(0);
      }
      // 29 rows is below DBA_CANDIDATES, so even the approximate path saw every row: exact.
      const incremental = await snapshot();
      await dba.rebuildAugmentation();
      expectSameState(incremental, await snapshot());
    });

    it('moves a growing PGlite store to binary candidates during writes, not only in optimise()', async () => {
      // Exact maintenance costs a full scan per written image: a long load must not stay exact.
      const dba = await PgVectorStore.recreate(client, { ...dbaOptions, binaryMinRows: 12 });
      const vectors = gallery(16, 9);
      for (const [i, v] of vectors.entries()) await dba.upsertMany([record(`p/${i}.jpg`, v)]);
      expect((await dba.stats()).searchStrategy).toBe(client.engine === 'pglite' ? 'binary' : 'exact');
      const incremental = await snapshot();
      await dba.rebuildAugmentation();
      expectSameState(incremental, await snapshot());
    });

    it('maintains it through the HNSW candidate path on PostgreSQL (exact search on PGlite)', async () => {
      // Prepare: past the HNSW threshold, then more writes that find their candidates through the index.
      const dba = await PgVectorStore.recreate(client, { ...dbaOptions, hnswMinRows: 30 });
      const vectors = gallery(50, 13);
      await dba.upsertMany(vectors.slice(0, 40).map((v, i) => record(`h/${i}.jpg`, v)));
      expect(await dba.optimise()).toBe(client.engine === 'postgresql' ? 'hnsw' : 'exact');
      // Act
      for (let i = 40; i < 50; i++) await dba.upsertMany([record(`h/${i}.jpg`, vectors[i]!)]);
      await dba.upsertMany([record('h/7.jpg', vectors[44]!)]);
      await dba.remove('gallery', ['h/3.jpg', 'h/41.jpg']);
      // Assess: under DBA_CANDIDATES rows, the index's candidates are every row, so still exact.
      const incremental = await snapshot();
      await dba.rebuildAugmentation();
      expectSameState(incremental, await snapshot());
      const [hit] = await dba.nearest({ vector: vectors[20]!, limit: 1, metric: 'cosine' });
      expect(hit?.key).toBe('h/20.jpg');
    });

    it('does nothing extra with augmentation off: the searched vector is the model output', async () => {
      await store.upsertMany([record('a.jpg', direction(0)), record('b.jpg', direction(0, 0.5))]);
      const rows = await client.query<{ raw: string | null; neighbours: string[] }>(
        'SELECT raw_embedding::text AS raw, dba_neighbours::text[] AS neighbours FROM images',
      );
      expect(rows).toEqual([
        { raw: null, neighbours: [] },
        { raw: null, neighbours: [] },
      ]);
      expect(await store.rebuildAugmentation()).toBe(0);
      expect(await store.getSearchedEmbedding('gallery', 'a.jpg')).toEqual(
        await store.getEmbedding('gallery', 'a.jpg'),
      );
    });

    it('records the transform in the model id: a plain store refuses to open with DBA on', async () => {
      await store.upsertMany([record('a.jpg', direction(0))]);
      const attempt = PgVectorStore.open(client, dbaOptions);
      await expect(attempt).rejects.toBeInstanceOf(ModelMismatchError);
      await expect(PgVectorStore.open(client, dbaOptions)).rejects.toThrow(
        /built with model 'test-model' \(8-d\); the configured model is 'test-model' with transform '\+dba3'/,
      );
      await expect(PgVectorStore.open(client, dbaOptions)).rejects.toMatchObject({
        hint: expect.stringMatching(/--reindex/),
      });
    });

    it('serialises concurrent writers: the result equals a rebuild', async () => {
      // Prepare: on PostgreSQL the pool runs these on separate connections at once.
      const dba = await PgVectorStore.recreate(client, dbaOptions);
      const vectors = gallery(32, 5);
      // Act
      await Promise.all(
        Array.from({ length: 8 }, (_, w) =>
          dba.upsertMany(vectors.slice(w * 4, w * 4 + 4).map((v, i) => record(`c/${w}-${i}.jpg`, v))),
        ),
      );
      await Promise.all([dba.remove('gallery', ['c/0-0.jpg']), dba.remove('gallery', ['c/1-1.jpg'])]);
      // Assess
      const incremental = await snapshot();
      await dba.rebuildAugmentation();
      expectSameState(incremental, await snapshot());
    });
  });
});

describe('binary candidates with exact re-ranking (PGlite, large stores)', () => {
  const key = (i: number) => `k/${String(i).padStart(3, '0')}.jpg`;
  /** An empty in-memory PGlite store that switches to binary candidates at 200 images. */
  const openBinaryStore = async () => {
    const client = await PgliteSqlClient.open(undefined);
    return { client, store: await PgVectorStore.recreate(client, { ...options, binaryMinRows: 200 }) };
  };

  it('switches to binary candidates past the threshold and still returns exact top-N, filters included', async () => {
    // Prepare: 300 vectors in 8 directions, 40 more after the switch.
    const { client, store } = await openBinaryStore();
    const vectors = Array.from({ length: 340 }, (_, i) => direction(i % DIM, ((i * 7) % 13) / 20));
    await store.upsertMany(vectors.slice(0, 300).map((v, i) => record(key(i), v)));
    const exactBefore = await store.nearest({ vector: direction(3, 0.1), limit: 10, metric: 'cosine' });
    // Act
    expect(await store.optimise()).toBe('binary');
    await store.upsertMany(vectors.slice(300).map((v, i) => record(key(300 + i), v)));
    // Assess: the same answer as the exact scan, rows added after the switch are found,
    // a prefix filter still yields N rows, and a reopened store keeps the strategy.
    const binary = await store.nearest({ vector: direction(3, 0.1), limit: 10, metric: 'cosine' });
    const added = binary.filter((h) => Number(h.key.slice(2, 5)) >= 300);
    expect(binary.filter((h) => Number(h.key.slice(2, 5)) < 300).map((h) => h.key)).toEqual(
      exactBefore.map((h) => h.key).slice(0, 10 - added.length),
    );
    const [late] = await store.nearest({
      vector: vectors[333]!,
      limit: 1,
      metric: 'cosine',
      keyPrefix: 'k/333',
    });
    expect(late?.key).toBe('k/333.jpg');
    expect(
      await store.nearest({ vector: direction(0), limit: 7, metric: 'cosine', keyPrefix: 'k/1' }),
    ).toHaveLength(7);
    await expect((await PgVectorStore.open(client, options)).stats()).resolves.toMatchObject({
      searchStrategy: 'binary',
    });
    await client.close();
  });

  it('finds candidates through the HNSW index on the sign bits, prefix filters included', async () => {
    // Prepare: a binary store of 300 vectors; pgvector counts the index's scans.
    const { client, store } = await openBinaryStore();
    await store.upsertMany(
      Array.from({ length: 300 }, (_, i) => record(key(i), direction(i % DIM, ((i * 7) % 13) / 20))),
    );
    expect(await store.optimise()).toBe('binary');
    // Statistics reach the views once flushed (pg_stat_force_next_flush; PostgreSQL 15+).
    const indexScans = async () => {
      await client.query('SELECT pg_stat_force_next_flush()');
      return (
        await client.query<{ scans: number }>(
          "SELECT idx_scan::integer AS scans FROM pg_stat_user_indexes WHERE indexrelname = 'images_embedding_bits_hnsw'",
        )
      )[0]?.scans;
    };
    const before = await indexScans();
    // Act
    const unfiltered = await store.nearest({ vector: direction(5, 0.1), limit: 10, metric: 'cosine' });
    const afterQuery = await indexScans();
    const prefixed = await store.nearest({
      vector: direction(5),
      limit: 10,
      metric: 'cosine',
      keyPrefix: 'k/29',
    });
    // Assess
    expect(before).toBeDefined();
    expect(afterQuery).toBe(before! + 1);
    expect(unfiltered).toHaveLength(10);
    expect(prefixed.map((h) => h.key).sort()).toEqual(Array.from({ length: 10 }, (_, i) => key(290 + i)));
    await client.close();
  });

  it('learns the centre again once the gallery has doubled since, and re-quantises every row', async () => {
    // Prepare: the centre learned from 200 images along axis 0; the gallery then grows along axis 4.
    const { client, store } = await openBinaryStore();
    await store.upsertMany(
      Array.from({ length: 200 }, (_, i) => record(key(i), direction(0, (i % 10) / 10))),
    );
    expect(await store.optimise()).toBe('binary');
    const centre = async () =>
      (
        await client.query<{ rows: number; distance: number; stale: number }>(
          `SELECT centre_rows AS rows, centre <-> (SELECT avg(embedding) FROM images) AS distance,
                  (SELECT count(*)::integer FROM images
                    WHERE embedding_bits <> binary_quantize(embedding - centre)) AS stale
             FROM ompf_store`,
        )
      )[0]!;
    expect(await centre()).toMatchObject({ rows: 200, stale: 0 });
    await store.upsertMany(
      Array.from({ length: 199 }, (_, i) => record(key(200 + i), direction(4, (i % 10) / 10))),
    );
    // Act: just under twice as many keeps the centre; twice as many learns it again.
    await store.optimise();
    const kept = await centre();
    await store.upsertMany([record(key(399), direction(4))]);
    await store.optimise();
    const learned = await centre();
    // Assess
    expect(kept.rows).toBe(200);
    expect(kept.distance).toBeGreaterThan(0.1);
    expect(learned).toMatchObject({ rows: 400, stale: 0 });
    expect(learned.distance).toBeLessThan(1e-3);
    const top = await store.nearest({ vector: direction(4), limit: 5, metric: 'cosine' });
    expect(top.map((h) => h.key)).toEqual([key(200), key(210), key(220), key(230), key(240)]);
    await client.close();
  });

  it('re-ranks as many Hamming candidates as binaryOversampling asks for (at least 64)', async () => {
    // Prepare: 300 seeded random 64-d vectors, exact top-50 taken before the switch to binary.
    const client = await PgliteSqlClient.open(undefined);
    const wide = { ...options, dimension: 64, binaryMinRows: 200 };
    const store = await PgVectorStore.recreate(client, wide);
    const vectors = clusteredVectors(64, 300, 11)(301, 5);
    await store.upsertMany(vectors.slice(0, 300).map((v, i) => record(key(i), v)));
    const query = { vector: vectors[300]!, limit: 50, metric: 'cosine' as const };
    const exact = (await store.nearest(query)).map((h) => h.key);
    expect(await store.optimise()).toBe('binary');
    // Act: the default (6 x 50 = 300 candidates: every row) and 1 x (64 candidates for 50 results).
    const everyRow = await store.nearest(query);
    const fewest = await (
      await PgVectorStore.open(client, { ...wide, binaryOversampling: 1 })
    ).nearest(query);
    // Assess: re-ranking every row is exact; 64 Hamming candidates of 300 random vectors miss some.
    expect(everyRow.map((h) => h.key)).toEqual(exact);
    expect(fewest).toHaveLength(50);
    expect(fewest.filter((h) => exact.includes(h.key)).length).toBeLessThan(50);
    await client.close();
  });

  it('gives a binary store written before v5 (no bits index, centre size unknown) both on its next optimise()', async () => {
    // Prepare: a binary store as an older version left it.
    const { client, store } = await openBinaryStore();
    await store.upsertMany(Array.from({ length: 220 }, (_, i) => record(key(i), direction(i % DIM, 0.3))));
    expect(await store.optimise()).toBe('binary');
    await client.exec('DROP INDEX images_embedding_bits_hnsw; UPDATE ompf_store SET centre_rows = NULL');
    const reopened = await PgVectorStore.open(client, { ...options, binaryMinRows: 200 });
    const before = await reopened.nearest({ vector: direction(2), limit: 3, metric: 'cosine' });
    // Act
    await reopened.optimise();
    // Assess: searches worked without the index, and the store now has it and knows its centre's size.
    const [state] = await client.query<{ indexed: boolean; rows: number }>(
      `SELECT to_regclass('images_embedding_bits_hnsw') IS NOT NULL AS indexed, centre_rows AS rows FROM ompf_store`,
    );
    expect(state).toEqual({ indexed: true, rows: 220 });
    expect(await reopened.nearest({ vector: direction(2), limit: 3, metric: 'cosine' })).toEqual(before);
    await client.close();
  });
});

describe('database outage', () => {
  it('becomes a retryable DependencyUnavailableError whose message names no host or port', async () => {
    // Prepare: nothing listens on this loopback port.
    const client = PostgresSqlClient.connect('postgres://ompf:secret@127.0.0.1:1/none');
    // Act
    const attempt = client.query('SELECT 1');
    // Assess
    await expect(attempt).rejects.toBeInstanceOf(DependencyUnavailableError);
    await expect(client.query('SELECT 1')).rejects.toThrow(/^The database is unreachable\.$/);
    await client.close();
  });
});
