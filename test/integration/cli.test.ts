import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ompf } from '../helpers/cli';
import { jpeg } from '../helpers/images';
import { CALTECH_DIR, MODELS_DIR, requirePath } from '../helpers/shared';

const CLASSES = ['okapi', 'dolphin', 'flamingo'];
const PER_CLASS = 6;

interface IndexJson {
  indexed: number;
  unchanged: number;
  removed: number;
  failed: { key: string; reason: string }[];
  ignored: number;
}
interface SearchJson {
  hits: { key: string; distance: number; score: number; source: string }[];
}

describe('ompf CLI on a real gallery (mobilenetv2-int8, embedded PGlite store)', () => {
  const work = mkdtempSync(join(tmpdir(), 'ompf-cli-'));
  const gallery = join(work, 'gallery');
  const env = {
    OMPF_MODELS_DIR: MODELS_DIR,
    OMPF_MODEL: 'mobilenetv2-int8',
    OMPF_DATA_DIR: join(work, 'store'),
    OMPF_BATCH_SIZE: '4',
  };
  const photo = (cls: string, i: number) =>
    join(CALTECH_DIR, cls, readdirSync(join(CALTECH_DIR, cls)).sort()[i]!);

  beforeAll(async () => {
    requirePath(CALTECH_DIR, 'Dataset');
    for (const cls of CLASSES) {
      mkdirSync(join(gallery, cls), { recursive: true });
      for (let i = 0; i < PER_CLASS; i++) copyFileSync(photo(cls, i), join(gallery, cls, `${i}.jpg`));
    }
    mkdirSync(join(gallery, 'broken'));
    const corrupt = await jpeg();
    corrupt.fill(0x33, 150, 700);
    writeFileSync(join(gallery, 'broken', 'corrupt.jpg'), corrupt);
    writeFileSync(join(gallery, 'broken', 'empty.jpg'), Buffer.alloc(0));
    writeFileSync(join(gallery, 'broken', 'text.jpg'), 'not an image');
    writeFileSync(join(gallery, 'notes.txt'), 'ignored: not an image extension');
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('indexes every decodable image, lists each failure with its reason, and exits 3', async () => {
    // Act
    const result = await ompf(['--json', 'index', gallery], env);
    // Assess
    expect(result.code).toBe(3);
    const summary = result.json<IndexJson>();
    expect(summary).toMatchObject({
      indexed: CLASSES.length * PER_CLASS,
      unchanged: 0,
      removed: 0,
      ignored: 1,
    });
    expect(summary.failed.map((f) => f.key).sort()).toEqual([
      'broken/corrupt.jpg',
      'broken/empty.jpg',
      'broken/text.jpg',
    ]);
    expect(summary.failed.find((f) => f.key === 'broken/empty.jpg')?.reason).toMatch(/empty/);
    const stats = (await ompf(['--json', 'stats', '--failures'], env)).json<{
      images: number;
      failures: number;
      failureList: unknown[];
    }>();
    expect(stats).toMatchObject({ images: 18, failures: 3 });
  });

  it('skips unchanged files by content hash and re-embeds a changed one', async () => {
    // Prepare: okapi/0.jpg now holds a dolphin.
    copyFileSync(photo('dolphin', PER_CLASS), join(gallery, 'okapi', '0.jpg'));
    rmSync(join(gallery, 'broken'), { recursive: true });
    // Act
    const result = await ompf(['--json', 'index', gallery], env);
    // Assess
    expect(result.code).toBe(0);
    expect(result.json<IndexJson>()).toMatchObject({ indexed: 1, unchanged: 17, removed: 0, failed: [] });
    copyFileSync(photo('okapi', 0), join(gallery, 'okapi', '0.jpg'));
    expect((await ompf(['--json', 'index', gallery], env)).json<IndexJson>()).toMatchObject({
      indexed: 1,
      unchanged: 17,
    });
  });

  it('rebuilds database-side augmentation for every image when asked (--rebuild-augmentation)', async () => {
    // Act
    const result = await ompf(['--json', 'index', '--rebuild-augmentation', gallery], env);
    // Assess: nothing re-embedded, every stored image's neighbours recomputed.
    expect(result.code).toBe(0);
    expect(result.json<IndexJson & { augmentationRebuilt: number }>()).toMatchObject({
      indexed: 0,
      unchanged: 18,
      augmentationRebuilt: 18,
    });
    expect((await ompf(['--json', 'index', gallery], env)).json()).not.toHaveProperty('augmentationRebuilt');
  });

  it('removes entries whose files are gone only when asked (--prune)', async () => {
    rmSync(join(gallery, 'flamingo', '5.jpg'));
    expect((await ompf(['--json', 'index', gallery], env)).json<IndexJson>()).toMatchObject({ removed: 0 });
    expect((await ompf(['--json', 'index', '--prune', gallery], env)).json<IndexJson>()).toMatchObject({
      removed: 1,
    });
    copyFileSync(photo('flamingo', 5), join(gallery, 'flamingo', '5.jpg'));
    expect((await ompf(['--json', 'index', gallery], env)).json<IndexJson>()).toMatchObject({ indexed: 1 });
  });

  it('searches by an image file: the nearest images share its class', async () => {
    // Act: a flamingo photo that is not in the gallery.
    const result = await ompf(['--json', 'search', photo('flamingo', 20), '-n', '5'], env);
    // Assess
    expect(result.code).toBe(0);
    const { hits } = result.json<SearchJson>();
    expect(hits).toHaveLength(5);
    expect(hits.slice(0, 3).every((h) => h.key.startsWith('flamingo/'))).toBe(true);
    // Ranked by the augmented vectors (DBA), each distance to the image's own vector: not always sorted.
    hits.forEach((h) => expect(h.distance).toBeGreaterThan(0));
    hits.forEach((h) => expect(h.score).toBeGreaterThanOrEqual(0));
    hits.forEach((h) => expect(h.score).toBeLessThanOrEqual(1));
  });

  it('finds an indexed file first at distance 0 and score 1, though DBA ranks by augmented vectors', async () => {
    // Act: the very file the gallery holds.
    const result = await ompf(['--json', 'search', join(gallery, 'flamingo', '5.jpg'), '-n', '3'], env);
    // Assess: within halfvec rounding of 0.
    const [first, second] = result.json<SearchJson>().hits;
    expect(first?.key).toBe('flamingo/5.jpg');
    expect(first?.distance).toBeLessThan(1e-4);
    expect(first?.score).toBeGreaterThan(0.9999);
    expect(second?.distance).toBeGreaterThan(1e-3);
  });

  it('searches by an indexed key without the image itself in the results', async () => {
    const { hits } = (
      await ompf(['--json', 'search', '--key', 'dolphin/2.jpg', '-n', '17'], env)
    ).json<SearchJson>();
    expect(hits).toHaveLength(17);
    expect(hits.map((h) => h.key)).not.toContain('dolphin/2.jpg');
    expect(hits[0]!.key.startsWith('dolphin/')).toBe(true);
  });

  it('filters by key prefix', async () => {
    const { hits } = (
      await ompf(['--json', 'search', '--key', 'dolphin/2.jpg', '--prefix', 'okapi/', '-n', '10'], env)
    ).json<SearchJson>();
    expect(hits.map((h) => h.key).sort()).toEqual(
      Array.from({ length: PER_CLASS }, (_, i) => `okapi/${i}.jpg`),
    );
  });

  it('applies query expansion on request, still excluding the query image', async () => {
    const { hits } = (
      await ompf(['--json', 'search', '--key', 'dolphin/2.jpg', '-n', '5', '--qe', '2'], env)
    ).json<SearchJson>();
    expect(hits).toHaveLength(5);
    expect(hits.map((h) => h.key)).not.toContain('dolphin/2.jpg');
    expect(hits[0]!.key.startsWith('dolphin/')).toBe(true);
    const refused = await ompf(['search', '--key', 'dolphin/2.jpg', '--qe', '11'], env);
    expect(refused.code).toBe(2);
    const badRerank = await ompf(['search', '--key', 'dolphin/2.jpg', '--rerank', '600'], env);
    expect(badRerank.code).toBe(2);
    expect(badRerank.stderr).toMatch(/from 0 to 500/);
  });

  it('re-ranks on request and not when told not to, reporting each image its own distance', async () => {
    const search = async (rerank: string) =>
      (
        await ompf(['--json', 'search', '--key', 'dolphin/2.jpg', '-n', '8', '--rerank', rerank], env)
      ).json<SearchJson>().hits;
    const plain = await search('0');
    const reranked = await search('100');
    // The same images' own distances, whatever the order.
    const distanceOf = new Map(plain.map((h) => [h.key, h.distance]));
    for (const hit of reranked) {
      if (distanceOf.has(hit.key)) expect(hit.distance).toBeCloseTo(distanceOf.get(hit.key)!, 6);
    }
    expect(reranked[0]!.key.startsWith('dolphin/')).toBe(true);
  });

  it('treats a change of embedding transform like a change of model', async () => {
    const result = await ompf(['search', '--key', 'dolphin/2.jpg'], { ...env, OMPF_FLIP: '1' });
    expect(result.code).toBe(75);
    expect(result.stderr).toMatch(
      /configured model is 'mobilenetv2-int8' with transform '\+whole\+gem3\+flip\+dba3'/,
    );
  });

  it('prints a readable table by default', async () => {
    const result = await ompf(['search', photo('okapi', 30), '-n', '3'], env);
    expect(result.stdout).toMatch(/#\s+distance\s+score\s+key/);
    expect(result.stdout.trim().split('\n')).toHaveLength(5);
  });

  describe('bad input gets a clear error and a non-zero exit', () => {
    it.each([
      [
        'N out of range (0)',
        ['search', '--key', 'okapi/1.jpg', '-n', '0'],
        2,
        /N must be a whole number from 1 to 100/,
      ],
      ['N out of range (101)', ['search', '--key', 'okapi/1.jpg', '-n', '101'], 2, /from 1 to 100/],
      ['N not a number', ['search', '--key', 'okapi/1.jpg', '-n', 'ten'], 2, /from 1 to 100/],
      ['a query path that does not exist', ['search', '/no/such/photo.jpg'], 66, /does not exist/],
      ['a gallery folder that does not exist', ['index', '/no/such/folder'], 66, /does not exist/],
      ['an unknown key', ['search', '--key', 'okapi/999.jpg'], 66, /No indexed image has the key/],
      ['both a file and --key', ['search', 'x.jpg', '--key', 'k'], 2, /either an image file or --key/],
      ['an unknown model', ['--model', 'vgg16', 'stats'], 78, /Unknown model 'vgg16'/],
    ])('%s', async (_name, args, code, message) => {
      const result = await ompf(args, env);
      expect(result.code).toBe(code);
      expect(result.stderr).toMatch(message);
    });

    it('a non-image query file: unsupported image, exit 65', async () => {
      const path = join(work, 'query.jpg');
      writeFileSync(path, 'plain text');
      const result = await ompf(['--json', 'search', path], env);
      expect(result.code).toBe(65);
      expect(result.json<{ error: { code: string; hint: string } }>().error).toMatchObject({
        code: 'unsupported_image',
      });
    });

    it('invalid configuration lists every bad variable at once', async () => {
      const result = await ompf(['stats'], {
        ...env,
        OMPF_BATCH_SIZE: 'many',
        OMPF_MAX_PIXELS: '-1',
        DATABASE_URL: 'mysql://x',
        OMPF_POWER: '2',
      });
      expect(result.code).toBe(78);
      expect(result.stderr).toMatch(/OMPF_MAX_PIXELS.*OMPF_BATCH_SIZE|OMPF_BATCH_SIZE.*OMPF_MAX_PIXELS/);
      expect(result.stderr).toMatch(/DATABASE_URL/);
      expect(result.stderr).toMatch(/OMPF_POWER/);
    });
  });

  it('refuses another model on this store without losing anything, and --reindex rebuilds it', async () => {
    // Prepare: a spec for light_resnet50 (2048-d) under another id.
    const spec = join(work, 'light.json');
    writeFileSync(
      spec,
      JSON.stringify({
        id: 'light-resnet50',
        file: join(MODELS_DIR, 'light_resnet50.onnx'),
        sha256: '05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4',
        dimension: 2048,
      }),
    );
    // Act
    const refused = await ompf(['--model', spec, 'search', '--key', 'okapi/1.jpg'], env);
    // Assess
    expect(refused.code).toBe(75);
    expect(refused.stderr).toMatch(/built with model 'mobilenetv2-int8'.*--reindex/s);
    expect((await ompf(['--json', 'stats'], env)).json<{ images: number }>().images).toBe(18);
    const other = { ...env, OMPF_DATA_DIR: join(work, 'store2') };
    await ompf(['index', join(gallery, 'okapi')], other);
    const rebuilt = await ompf(
      ['--json', '--model', spec, 'index', '--reindex', join(gallery, 'okapi')],
      other,
    );
    expect(rebuilt.code).toBe(0);
    expect(rebuilt.json<IndexJson & { model: string }>()).toMatchObject({
      indexed: PER_CLASS,
      model: 'light-resnet50',
    });
  });

  it('removes images by key', async () => {
    const source = (await ompf(['--json', 'stats'], env)).json<{ sources: { source: string }[] }>()
      .sources[0]!.source;
    const result = await ompf(['--json', 'remove', '--source', source, 'okapi/5.jpg', 'not/there.jpg'], env);
    expect(result.json()).toEqual({ removed: 1, requested: 2 });
  });

  it('ompf duplicates groups a byte copy and a shrunk, re-encoded copy with their original', async () => {
    // Prepare: okapi/0.jpg copied byte for byte, and at half size, JPEG quality 30.
    const copies = join(gallery, 'copies');
    mkdirSync(copies);
    const original = readFileSync(join(gallery, 'okapi', '0.jpg'));
    copyFileSync(join(gallery, 'okapi', '0.jpg'), join(copies, 'okapi-0.jpg'));
    const { width } = await sharp(original).metadata();
    writeFileSync(
      join(copies, 'okapi-half.jpg'),
      await sharp(original)
        .resize(Math.round(width / 2))
        .jpeg({ quality: 30 })
        .toBuffer(),
    );
    try {
      const indexed = (await ompf(['--json', 'index', gallery], env)).json<IndexJson>();
      expect(indexed.failed.map((f) => f.key)).not.toContain('copies/okapi-half.jpg');
      // Act
      const page = (await ompf(['--json', 'duplicates'], env)).json<{
        total: number;
        hashBits: number;
        groups: { members: { key: string; exact: boolean; hashBits?: number }[] }[];
      }>();
      const text = await ompf(['duplicates'], env);
      // Assess
      expect(page).toMatchObject({ total: 1, hashBits: 12 });
      const members = page.groups[0]!.members;
      expect(members.map((m) => m.key).sort()).toEqual([
        'copies/okapi-0.jpg',
        'copies/okapi-half.jpg',
        'okapi/0.jpg',
      ]);
      expect(
        members
          .filter((m) => m.exact)
          .map((m) => m.key)
          .sort(),
      ).toEqual(['copies/okapi-0.jpg', 'okapi/0.jpg']);
      expect(members.every((m) => m.hashBits !== undefined && m.hashBits <= 12)).toBe(true);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/1 groups of duplicates at threshold 0.08, hash bits 12/);
      expect(text.stdout).toMatch(/copies\/okapi-half\.jpg/);
      const bits = await ompf(['duplicates', '--hash-bits', '30'], env);
      expect(bits.code).toBe(2);
      expect(bits.stderr).toMatch(/a whole number of bits from 0 to 24/);
      const far = await ompf(['duplicates', '--threshold', '0.9'], env);
      expect(far.code).toBe(2);
      expect(far.stderr).toMatch(/a cosine distance from 0 to 0.5/);
    } finally {
      rmSync(copies, { recursive: true, force: true });
      await ompf(['index', '--prune', gallery], env);
    }
  });

  it.each([
    [[]],
    [['index']],
    [['duplicates']],
    [['eval-duplicates']],
    [['search']],
    [['eval']],
    [['remove']],
    [['stats']],
    [['models']],
    [['models', 'pull']],
    [['models', 'list']],
    [['models', 'verify']],
    [['cloud']],
    [['cloud', 'reconcile']],
    [['cloud', 'dead-letters']],
    [['cloud', 'redrive']],
    [['cloud', 'status']],
  ])('ompf %p --help prints usage and exits 0', async (command) => {
    const result = await ompf([...command, '--help'], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: ompf/);
  });

  it('ompf cloud refuses a missing or malformed stage before calling AWS', async () => {
    const missing = await ompf(['cloud', 'reconcile'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/required option '--stage <name>' not specified/);
    const bad = await ompf(['cloud', 'status', '--stage', 'no/such'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/a stage name from cdk.json/);
  });

  it('models list and verify report the models directory state', async () => {
    const list = (await ompf(['--json', 'models', 'list'], env)).json<{
      models: { id: string; installed: boolean }[];
    }>();
    expect(list.models.find((m) => m.id === 'mobilenetv2-int8')?.installed).toBe(true);
    expect(list.models.find((m) => m.id === 'resnet50')?.installed).toBe(false); // not in ../shared/models
    expect((await ompf(['models', 'verify'], env)).code).toBe(0);
    const missing = await ompf(['models', 'verify', 'resnet50'], env);
    expect(missing.code).toBe(69);
    expect(missing.stderr).toMatch(/ompf models pull resnet50/);
  });
});
