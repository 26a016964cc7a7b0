import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import sharp from 'sharp';
import { join } from 'node:path';
import type { LocalServer } from '../../lib/server/serve';
import { jpeg, png } from '../helpers/images';
import { call, eventually, form, photo, startTestServer, workDir, type StatusBody } from './server-helpers';

interface SearchBody {
  model: string;
  n: number;
  hits: { key: string; distance: number; score: number; url: string }[];
}

const MAX_IMAGE_BYTES = 2_000_000;

/**
 * The local server over real sockets: the shared API contract, the local routes, the queue and the
 * folder watcher, bad input of every kind. One server for the suite (one PGlite, one ONNX session).
 */
describe('local server', () => {
  const work = workDir({
    'okapi/1.jpg': photo('okapi', 1),
    'okapi/2.jpg': photo('okapi', 2),
    'okapi/3.jpg': photo('okapi', 3),
    'rhino/1.jpg': photo('rhino', 1),
    'rhino/2.jpg': photo('rhino', 2),
    'rhino/3.jpg': photo('rhino', 3),
    'dolphin/1.jpg': photo('dolphin', 1),
    'dolphin/2.jpg': photo('dolphin', 2),
  });
  writeFileSync(join(work.gallery, 'broken.jpg'), 'this is text, not a JPEG');
  writeFileSync(join(work.gallery, 'notes.txt'), 'ignored: not an image extension');
  let server: LocalServer;
  const status = async () => (await call(server, 'GET', '/status')).json<StatusBody>();

  beforeAll(async () => {
    server = await startTestServer(work, { OMPF_MAX_IMAGE_BYTES: String(MAX_IMAGE_BYTES) });
  });
  afterAll(() => server.close());

  describe('start-up and status', () => {
    it('indexes the gallery on start and reports counts and failures with their reasons', async () => {
      // Act
      const body = await status();
      // Assess
      expect(body).toMatchObject({
        state: 'idle',
        gallery: server.gallery,
        counts: { pending: 0, indexed: 8, failed: 1 },
      });
      expect(body.failures).toEqual([
        expect.objectContaining({ key: 'broken.jpg', reason: expect.stringMatching(/not an image/i) }),
      ]);
    });

    it('serves the page and its assets with a same-origin content security policy', async () => {
      // Act
      const page = await call(server, 'GET', '/');
      const script = await call(server, 'GET', '/app.js');
      // Assess
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/text\/html/);
      expect(page.bytes.toString()).toContain('id="results"');
      expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
      expect(script.headers.get('content-type')).toMatch(/javascript/);
    });

    it('serves the OpenAPI document with the local-only paths marked', async () => {
      // Act
      const doc = (await call(server, 'GET', '/openapi.json')).json<{
        paths: Record<string, { 'x-ompf-runtime'?: string }>;
      }>();
      // Assess
      expect(doc.paths['/search']).toBeDefined();
      expect(doc.paths['/images/{key}/similar']).toBeDefined();
      for (const path of ['/images/{key}', '/images']) {
        expect(doc.paths[path]?.['x-ompf-runtime']).toBe('local');
      }
      // Served by the cloud too.
      for (const path of ['/status', '/duplicates', '/images/{key}/duplicates']) {
        expect(doc.paths[path]?.['x-ompf-runtime']).toBeUndefined();
      }
    });
  });

  describe('search (the cloud contract)', () => {
    it('finds the same class first for an image body, with relative image URLs', async () => {
      // Act
      const reply = await call(server, 'POST', '/search?n=3', {
        headers: { 'content-type': 'image/jpeg' },
        body: readFileSync(photo('okapi', 10)),
      });
      // Assess
      expect(reply.status).toBe(200);
      const { hits, model } = reply.json<SearchBody>();
      expect(model).toBe('mobilenetv2-int8');
      expect(hits).toHaveLength(3);
      expect(hits.slice(0, 2).every((h) => h.key.startsWith('okapi/'))).toBe(true);
      expect(hits[0]!.distance).toBeLessThanOrEqual(hits[1]!.distance);
      expect(hits.map((h) => h.url)).toEqual(hits.map((h) => `/images/${encodeURIComponent(h.key)}`));
    });

    it('accepts a multipart form with n and prefix fields', async () => {
      // Prepare
      const data = form([{ name: 'q.jpg', bytes: readFileSync(photo('rhino', 10)) }], {
        n: '2',
        prefix: 'rhino/',
      });
      // Act
      const reply = await call(server, 'POST', '/search', { body: data });
      // Assess
      expect(reply.status).toBe(200);
      const { hits, n } = reply.json<SearchBody>();
      expect(n).toBe(2);
      expect(hits).toHaveLength(2);
      expect(hits.every((h) => h.key.startsWith('rhino/'))).toBe(true);
    });

    it('searches by an indexed key, leaving the image itself out', async () => {
      // Act
      const reply = await call(server, 'GET', `/images/${encodeURIComponent('dolphin/1.jpg')}/similar?n=1`);
      // Assess
      expect(reply.json<SearchBody>().hits.map((h) => h.key)).toEqual(['dolphin/2.jpg']);
    });
  });

  describe('GET /images/{key}', () => {
    it('serves the original bytes with the content type, and a 304 for a matching ETag', async () => {
      // Act
      const reply = await call(server, 'GET', '/images/rhino%2F1.jpg');
      const again = await call(server, 'GET', '/images/rhino%2F1.jpg', {
        headers: { 'if-none-match': reply.headers.get('etag')! },
      });
      // Assess
      expect(reply.status).toBe(200);
      expect(reply.headers.get('content-type')).toBe('image/jpeg');
      expect(reply.bytes.equals(readFileSync(photo('rhino', 1)))).toBe(true);
      expect(again.status).toBe(304);
    });

    it('serves a WebP thumbnail no larger than ?w=', async () => {
      // Act
      const reply = await call(server, 'GET', '/images/rhino%2F1.jpg?w=64');
      // Assess
      expect(reply.status).toBe(200);
      expect(reply.headers.get('content-type')).toBe('image/webp');
      const sharp = (await import('sharp')).default;
      const { width, height } = await sharp(reply.bytes).metadata();
      expect(Math.max(width, height)).toBe(64);
    });
  });

  describe('adding and deleting images', () => {
    it('uploads through a multipart form into a folder, queues and indexes it', async () => {
      // Prepare
      const bytes = readFileSync(photo('okapi', 20));
      // Act
      const reply = await call(server, 'POST', '/images', {
        body: form([{ name: 'new okapi.jpg', bytes }], { folder: 'uploads' }),
      });
      await server.queue.whenIdle();
      // Assess
      expect(reply.status).toBe(202);
      expect(reply.json()).toEqual({
        images: [
          { key: 'uploads/new okapi.jpg', status: 'queued', url: '/images/uploads%2Fnew%20okapi.jpg' },
        ],
      });
      expect(readFileSync(join(work.gallery, 'uploads', 'new okapi.jpg')).equals(bytes)).toBe(true);
      const similar = await call(
        server,
        'GET',
        `/images/${encodeURIComponent('uploads/new okapi.jpg')}/similar?n=1`,
      );
      expect(similar.json<SearchBody>().hits[0]!.key).toMatch(/^okapi\//);
    });

    it('keeps one file and answers both when the same file is uploaded concurrently', async () => {
      // Prepare
      const bytes = readFileSync(photo('dolphin', 20));
      // Act
      const replies = await Promise.all(
        Array.from({ length: 4 }, () =>
          call(server, 'POST', '/images', { body: form([{ name: 'twin.jpg', bytes }]) }),
        ),
      );
      await server.queue.whenIdle();
      // Assess
      const results = replies.map((r) => r.json<{ images: { key: string; status: string }[] }>().images[0]!);
      expect(replies.every((r) => r.status === 200 || r.status === 202)).toBe(true);
      expect(new Set(results.map((r) => r.key))).toEqual(new Set(['twin.jpg']));
      expect(results.filter((r) => r.status === 'queued')).toHaveLength(1);
      expect(existsSync(join(work.gallery, 'twin-2.jpg'))).toBe(false);
      const similar = await call(server, 'GET', '/images/twin.jpg/similar?n=1');
      expect(similar.status).toBe(200);
    });

    it('keeps both images when different files with one name are uploaded concurrently', async () => {
      // Prepare
      const files = [readFileSync(photo('rhino', 21)), readFileSync(photo('rhino', 22))];
      // Act
      const replies = await Promise.all(
        files.map((bytes) =>
          call(server, 'POST', '/images', { body: form([{ name: 'same-name.jpg', bytes }]) }),
        ),
      );
      await server.queue.whenIdle();
      // Assess
      const keys = replies.map((r) => r.json<{ images: { key: string }[] }>().images[0]!.key).sort();
      expect(keys).toEqual(['same-name-2.jpg', 'same-name.jpg']);
      const stored = keys.map((key) => readFileSync(join(work.gallery, key)));
      expect(stored.some((b) => b.equals(files[0]!))).toBe(true);
      expect(stored.some((b) => b.equals(files[1]!))).toBe(true);
    });

    it('writes an image under an exact key with PUT, and names a raw POST body by ?name=', async () => {
      // Prepare
      const image = await png(300, 200);
      // Act
      const put = await call(server, 'PUT', `/images/${encodeURIComponent('generated/green.png')}`, {
        headers: { 'content-type': 'image/png' },
        body: image,
      });
      const post = await call(server, 'POST', '/images?name=orange&folder=generated', {
        headers: { 'content-type': 'image/jpeg' },
        body: await jpeg(200, 200),
      });
      await server.queue.whenIdle();
      // Assess
      expect(put.status).toBe(202);
      expect(post.json()).toMatchObject({ images: [{ key: 'generated/orange.jpg', status: 'queued' }] });
      expect((await call(server, 'GET', '/images/generated%2Fgreen.png/similar?n=1')).status).toBe(200);
    });

    it('deletes an image: file and index entry gone, the key no longer searchable', async () => {
      // Act
      const reply = await call(server, 'DELETE', '/images/generated%2Forange.jpg');
      // Assess
      expect(reply.status).toBe(200);
      expect(reply.json()).toEqual({ key: 'generated/orange.jpg', deleted: true, file: true, index: true });
      expect(existsSync(join(work.gallery, 'generated', 'orange.jpg'))).toBe(false);
      expect((await call(server, 'GET', '/images/generated%2Forange.jpg/similar')).status).toBe(404);
    });
  });

  describe('folder sync', () => {
    it('indexes a file copied into the gallery, re-indexes a change and removes a deleted file', async () => {
      // Act: add
      copyFileSync(photo('okapi', 30), join(work.gallery, 'okapi', 'dropped.jpg'));
      // Assess
      await eventually(async () =>
        expect((await call(server, 'GET', '/images/okapi%2Fdropped.jpg/similar?n=1')).status).toBe(200),
      );
      // Act: delete
      rmSync(join(work.gallery, 'okapi', 'dropped.jpg'));
      // Assess
      await eventually(async () =>
        expect((await call(server, 'GET', '/images/okapi%2Fdropped.jpg/similar')).status).toBe(404),
      );
    });

    it('groups a copied file (exact), a re-encoded and a shrunk copy with their original, and forgets a deleted member', async () => {
      // Prepare: a byte-identical copy, a JPEG re-save at quality 60 and a half-size quality-30 copy of
      // rhino/1.jpg (the last about 0.14 from it by mobilenetv2-int8's vectors, its pHash equal).
      copyFileSync(photo('rhino', 1), join(work.gallery, 'rhino', 'copy.jpg'));
      const original = sharp(readFileSync(photo('rhino', 1)));
      writeFileSync(
        join(work.gallery, 'rhino', 'recoded.jpg'),
        await original.clone().jpeg({ quality: 60 }).toBuffer(),
      );
      writeFileSync(
        join(work.gallery, 'rhino', 'half.jpg'),
        await original.clone().resize(150).jpeg({ quality: 30 }).toBuffer(),
      );
      type Group = {
        members: { key: string; distance: number; hashBits?: number; exact: boolean; url: string }[];
      };
      const groups = async () =>
        (await call(server, 'GET', '/duplicates')).json<{ total: number; groups: Group[] }>();
      try {
        // Act + Assess: the group, as the files are indexed.
        await eventually(async () => expect((await groups()).groups[0]?.members).toHaveLength(4));
        const [group] = (await groups()).groups;
        expect(group!.members.map((m) => m.key).sort()).toEqual([
          'rhino/1.jpg',
          'rhino/copy.jpg',
          'rhino/half.jpg',
          'rhino/recoded.jpg',
        ]);
        expect(
          group!.members
            .filter((m) => m.exact)
            .map((m) => m.key)
            .sort(),
        ).toEqual(['rhino/1.jpg', 'rhino/copy.jpg']);
        expect(group!.members[0]!.distance).toBe(0);
        expect(group!.members.every((m) => m.url.startsWith('/images/') && m.hashBits! <= 12)).toBe(true);
        // The shrunk copy is there by its perceptual hash: its vector alone is beyond the threshold.
        const half = group!.members.find((m) => m.key === 'rhino/half.jpg')!;
        expect(half.distance).toBeGreaterThan(0.08);
        expect(half.distance).toBeLessThan(0.5);
        expect(group!.members.filter((m) => m.key !== 'rhino/half.jpg').every((m) => m.distance < 0.08)).toBe(
          true,
        );
        expect((await call(server, 'GET', '/duplicates?hashBits=25')).status).toBe(400);
        const one = (await call(server, 'GET', '/images/rhino%2Frecoded.jpg/duplicates')).json<Group>();
        expect(one.members.map((m) => m.key)).toContain('rhino/copy.jpg');
        const alone = (await call(server, 'GET', '/images/dolphin%2F1.jpg/duplicates')).json<Group>();
        expect(alone.members).toEqual([]);
        expect((await call(server, 'GET', '/duplicates?threshold=2')).status).toBe(400);
        expect((await call(server, 'GET', '/images/nothing.jpg/duplicates')).status).toBe(404);
        // Act: a member leaves.
        rmSync(join(work.gallery, 'rhino', 'copy.jpg'));
        // Assess
        await eventually(async () => expect((await groups()).groups[0]?.members).toHaveLength(3));
      } finally {
        rmSync(join(work.gallery, 'rhino', 'copy.jpg'), { force: true });
        rmSync(join(work.gallery, 'rhino', 'recoded.jpg'), { force: true });
        rmSync(join(work.gallery, 'rhino', 'half.jpg'), { force: true });
        await eventually(async () => expect((await groups()).total).toBe(0));
      }
    });

    it('removes every image of a deleted folder, and the failure of a deleted broken file', async () => {
      // Prepare
      mkdirSync(join(work.gallery, 'temp'));
      copyFileSync(photo('rhino', 31), join(work.gallery, 'temp', 'a.jpg'));
      copyFileSync(photo('rhino', 32), join(work.gallery, 'temp', 'b.jpg'));
      writeFileSync(join(work.gallery, 'temp', 'bad.png'), 'not a png');
      await eventually(async () => expect((await status()).counts.failed).toBe(2));
      await server.queue.whenIdle();
      const before = (await status()).counts.indexed;
      // Act
      rmSync(join(work.gallery, 'temp'), { recursive: true });
      // Assess
      await eventually(async () => {
        const body = await status();
        expect(body.counts).toMatchObject({ indexed: before - 2, failed: 1, pending: 0 });
      });
    });

    it('follows a rename: the old key is removed, the new one indexed', async () => {
      // Act
      renameSync(join(work.gallery, 'dolphin', '2.jpg'), join(work.gallery, 'dolphin', 'renamed.jpg'));
      // Assess
      await eventually(async () => {
        expect((await call(server, 'GET', '/images/dolphin%2F2.jpg/similar')).status).toBe(404);
        expect((await call(server, 'GET', '/images/dolphin%2Frenamed.jpg/similar')).status).toBe(200);
      });
    });
  });

  describe('bad input: clear errors, nothing lost, the server keeps serving', () => {
    const traversal = encodeURIComponent('../outside.jpg');
    it.each([
      [
        'search: empty body',
        'POST',
        '/search',
        { headers: { 'content-type': 'image/jpeg' }, body: Buffer.alloc(0) },
        400,
      ],
      [
        'search: a non-image',
        'POST',
        '/search',
        { headers: { 'content-type': 'image/jpeg' }, body: 'hello' },
        415,
      ],
      [
        'search: text content type',
        'POST',
        '/search',
        { headers: { 'content-type': 'text/plain' }, body: 'hi' },
        415,
      ],
      ['search: multipart without a file', 'POST', '/search', { body: formOf({ n: '3' }) }, 400],
      [
        'search: malformed multipart',
        'POST',
        '/search',
        { headers: { 'content-type': 'multipart/form-data' }, body: 'x' },
        400,
      ],
      ['similar: n=0', 'GET', '/images/rhino%2F1.jpg/similar?n=0', {}, 400],
      ['similar: n=101', 'GET', '/images/rhino%2F1.jpg/similar?n=101', {}, 400],
      ['similar: n=abc', 'GET', '/images/rhino%2F1.jpg/similar?n=abc', {}, 400],
      ['similar: rerank=501', 'GET', '/images/rhino%2F1.jpg/similar?rerank=501', {}, 400],
      ['similar: rerank=-1', 'GET', '/images/rhino%2F1.jpg/similar?rerank=-1', {}, 400],
      ['similar: rerank=1e2', 'GET', '/images/rhino%2F1.jpg/similar?rerank=1e2', {}, 400],
      ['similar: unknown key', 'GET', '/images/nope.jpg/similar', {}, 404],
      ['image: unknown key', 'GET', '/images/nope.jpg', {}, 404],
      ['image: traversal', 'GET', `/images/${traversal}`, {}, 400],
      ['image: deep traversal', 'GET', `/images/${encodeURIComponent('okapi/../../../etc/passwd')}`, {}, 400],
      [
        'image: hidden staging folder',
        'GET',
        `/images/${encodeURIComponent('.ompf-uploads/x.jpg')}`,
        {},
        400,
      ],
      ['image: bad thumbnail width', 'GET', '/images/rhino%2F1.jpg?w=5000', {}, 400],
      [
        'put: traversal',
        'PUT',
        `/images/${traversal}`,
        { headers: { 'content-type': 'image/jpeg' }, body: 'x' },
        400,
      ],
      [
        'put: not an image',
        'PUT',
        '/images/fake.jpg',
        { headers: { 'content-type': 'image/jpeg' }, body: 'x' },
        415,
      ],
      [
        'put: empty body',
        'PUT',
        '/images/empty.jpg',
        { headers: { 'content-type': 'image/jpeg' }, body: '' },
        400,
      ],
      [
        'put: non-image extension',
        'PUT',
        '/images/notes.txt',
        { headers: { 'content-type': 'image/jpeg' }, body: 'x' },
        400,
      ],
      [
        'upload: a text file',
        'POST',
        '/images',
        { body: formOf({}, [{ name: 'a.jpg', bytes: Buffer.from('text') }]) },
        415,
      ],
      [
        'upload: an empty file',
        'POST',
        '/images',
        { body: formOf({}, [{ name: 'e.jpg', bytes: Buffer.alloc(0) }]) },
        400,
      ],
      ['upload: no file', 'POST', '/images', { body: formOf({ folder: 'x' }) }, 400],
      ['upload: folder traversal', 'POST', '/images', { body: 'UPLOAD_WITH_FOLDER:../escape' }, 400],
      ['upload: hidden folder', 'POST', '/images', { body: 'UPLOAD_WITH_FOLDER:.ompf-uploads' }, 400],
      [
        'upload: raw text body',
        'POST',
        '/images?name=a.jpg',
        { headers: { 'content-type': 'text/plain' }, body: 'x' },
        415,
      ],
      ['delete: unknown key', 'DELETE', '/images/nope.jpg', {}, 404],
      ['delete: traversal', 'DELETE', `/images/${traversal}`, {}, 400],
      ['unknown route', 'GET', '/nowhere', {}, 404],
      ['wrong method', 'DELETE', '/status', {}, 405],
    ] as const)('%s -> %i', async (_name, method, path, init, expected) => {
      // Prepare
      const okapi = readFileSync(photo('okapi', 35));
      const body =
        'body' in init && typeof init.body === 'string' && init.body.startsWith('UPLOAD_WITH_FOLDER:')
          ? form([{ name: 'x.jpg', bytes: okapi }], { folder: init.body.slice('UPLOAD_WITH_FOLDER:'.length) })
          : 'body' in init
            ? init.body
            : undefined;
      const before = await status();
      // Act
      const reply = await call(server, method, path, {
        ...('headers' in init ? { headers: { ...init.headers } } : {}),
        ...(body === undefined ? {} : { body }),
      });
      // Assess
      expect(reply.status).toBe(expected);
      const error = reply.json<{ error: { code: string; message: string } }>().error;
      expect(error.message.length).toBeGreaterThan(10);
      expect(JSON.stringify(error)).not.toMatch(/at \w+ \(|node_modules|\/work\//);
      const after = await status();
      expect(after.counts.indexed).toBe(before.counts.indexed);
      expect(existsSync(join(work.gallery, '..', 'outside.jpg'))).toBe(false);
      expect(existsSync(join(work.gallery, '..', 'escape'))).toBe(false);
    });

    it('refuses an oversized upload and an oversized search with 413, then keeps serving', async () => {
      // Prepare
      const big = Buffer.concat([readFileSync(photo('okapi', 1)), Buffer.alloc(MAX_IMAGE_BYTES)]);
      const huge = Buffer.alloc(4 * MAX_IMAGE_BYTES, 1);
      // Act
      const upload = await call(server, 'POST', '/images', { body: form([{ name: 'big.jpg', bytes: big }]) });
      const search = await call(server, 'POST', '/search', {
        headers: { 'content-type': 'image/jpeg' },
        body: big,
      });
      const overRequestLimit = await call(server, 'PUT', '/images/huge.jpg', {
        headers: { 'content-type': 'image/jpeg' },
        body: huge,
      });
      // Assess
      for (const reply of [upload, search, overRequestLimit]) {
        expect(reply.status).toBe(413);
        expect(reply.json()).toMatchObject({ error: { code: 'too_large' } });
      }
      expect(existsSync(join(work.gallery, 'big.jpg'))).toBe(false);
      expect(existsSync(join(work.gallery, 'huge.jpg'))).toBe(false);
      expect((await call(server, 'GET', '/status')).status).toBe(200);
    });

    it('adds none of a multi-file upload when one file is bad', async () => {
      // Prepare
      const data = form([
        { name: 'good.jpg', bytes: readFileSync(photo('okapi', 36)) },
        { name: 'bad.jpg', bytes: Buffer.from('not an image') },
      ]);
      // Act
      const reply = await call(server, 'POST', '/images', { body: data });
      // Assess
      expect(reply.status).toBe(415);
      expect(reply.json()).toMatchObject({ error: { message: expect.stringContaining('bad.jpg') } });
      expect(existsSync(join(work.gallery, 'good.jpg'))).toBe(false);
    });

    it('refuses writes from another origin and requests for a foreign host name', async () => {
      // Act
      const crossOrigin = await call(server, 'POST', '/images', {
        headers: { origin: 'https://evil.example' },
        body: form([{ name: 'evil.jpg', bytes: readFileSync(photo('okapi', 37)) }]),
      });
      const rebinding = await rawGet(server.url, '/status', { host: 'evil.example:80' });
      const loopbackName = await rawGet(server.url, '/status', {
        host: `localhost:${new URL(server.url).port}`,
      });
      // Assess
      expect(crossOrigin.status).toBe(403);
      expect(existsSync(join(work.gallery, 'evil.jpg'))).toBe(false);
      expect(rebinding).toBe(403);
      expect(loopbackName).toBe(200);
    });
  });
});

/** A GET with exactly the headers given (fetch would set Host itself). */
function rawGet(base: string, path: string, headers: Record<string, string>): Promise<number> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

function formOf(fields: Record<string, string>, files: { name: string; bytes: Buffer }[] = []): FormData {
  return form(files, fields);
}
