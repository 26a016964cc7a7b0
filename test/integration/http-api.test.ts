import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { handleApiRequest, type ApiDependencies, type ApiRequest } from '../../lib/api/http-api';
import { NotFoundError } from '../../lib/core/errors';
import type { GalleryItem } from '../../lib/core/indexing';
import { loadConfig } from '../../lib/runtime/config';
import { openLocalEngine, type LocalEngine } from '../../lib/runtime/local';
import { jpeg } from '../helpers/images';
import { CALTECH_DIR, MODELS_DIR, requirePath } from '../helpers/shared';

const SOURCE = 'test-gallery';
/** Keys with the characters that break naive URL handling: space, plus, percent, unicode, slash. */
const KEYS: Record<string, [string, string]> = {
  'okapi/one two.jpg': ['okapi', 'image_0001.jpg'],
  'okapi/a+b%20c.jpg': ['okapi', 'image_0002.jpg'],
  'okapi/ökapi-éé.jpg': ['okapi', 'image_0003.jpg'],
  'dolphin/1.jpg': ['dolphin', 'image_0001.jpg'],
  'dolphin/2.jpg': ['dolphin', 'image_0002.jpg'],
  'rhino/1.jpg': ['rhino', 'image_0001.jpg'],
};

function request(method: string, rawPath: string, init: Partial<ApiRequest> = {}): ApiRequest {
  return { method, rawPath, query: {}, headers: {}, body: undefined, ...init };
}

function jsonBody(value: unknown): Partial<ApiRequest> {
  return { headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(value)) };
}

describe('HTTP API contract (shared by the query Lambda and the local server)', () => {
  let engine: LocalEngine;
  let deps: ApiDependencies;
  const uploaded = new Map<string, Buffer>();
  const photo = (cls: string, file: string) => readFileSync(join(CALTECH_DIR, cls, file));

  beforeAll(async () => {
    requirePath(CALTECH_DIR, 'Dataset');
    engine = await openLocalEngine(
      loadConfig({ OMPF_MODELS_DIR: MODELS_DIR, OMPF_MODEL: 'mobilenetv2-int8' }),
      {
        ephemeralStore: true,
      },
    );
    const items: GalleryItem[] = Object.entries(KEYS).map(([key, [cls, file]]) => ({
      key,
      read: () => Promise.resolve(photo(cls, file)),
    }));
    await engine.indexing.indexAll(SOURCE, items);
    deps = {
      search: engine.search,
      modelId: engine.spec.id,
      source: SOURCE,
      imageUrl: (key) => Promise.resolve(`https://images.example/${encodeURIComponent(key)}`),
      maxInlineImageBytes: 200_000,
      uploads: {
        create: (contentType) =>
          Promise.resolve({
            key: 'uploads/q1',
            uploadUrl: 'https://upload.example/q1',
            method: 'PUT',
            headers: { 'content-type': contentType },
            expiresInSeconds: 300,
          }),
        read: (key) => {
          const bytes = uploaded.get(key);
          return bytes
            ? Promise.resolve(bytes)
            : Promise.reject(new NotFoundError(`No uploaded image '${key}'.`));
        },
      },
    };
  });
  afterAll(() => engine.close());

  describe('POST /search', () => {
    it('accepts the image as a binary body and returns hits with key, distance, score and url', async () => {
      // Act
      const response = await handleApiRequest(
        deps,
        request('POST', '/search', {
          headers: { 'content-type': 'image/jpeg' },
          query: { n: '3' },
          body: photo('okapi', 'image_0010.jpg'),
        }),
      );
      // Assess
      expect(response.status).toBe(200);
      const body = JSON.parse(response.body as string) as {
        n: number;
        model: string;
        hits: { key: string; url: string; score: number }[];
      };
      expect(body).toMatchObject({ n: 3, model: 'mobilenetv2-int8', metric: 'cosine' });
      expect(body.hits).toHaveLength(3);
      expect(body.hits.every((h) => h.key.startsWith('okapi/'))).toBe(true);
      expect(body.hits[0]!.url).toBe(`https://images.example/${encodeURIComponent(body.hits[0]!.key)}`);
    });

    it('accepts JSON with a base64 image (and a data: URL prefix)', async () => {
      const image = `data:image/jpeg;base64,${photo('dolphin', 'image_0010.jpg').toString('base64')}`;
      const response = await handleApiRequest(
        deps,
        request('POST', '/search', jsonBody({ image, n: 2, prefix: 'dolphin/' })),
      );
      expect(response.status).toBe(200);
      const { hits } = JSON.parse(response.body as string) as { hits: { key: string }[] };
      expect(hits.map((h) => h.key).sort()).toEqual(['dolphin/1.jpg', 'dolphin/2.jpg']);
    });

    it('searches by an uploaded query image (the large-image path)', async () => {
      const ticket = await handleApiRequest(
        deps,
        request('POST', '/uploads', jsonBody({ contentType: 'image/jpeg' })),
      );
      expect(ticket.status).toBe(201);
      const { key } = JSON.parse(ticket.body as string) as { key: string };
      uploaded.set(key, photo('rhino', 'image_0005.jpg'));
      const response = await handleApiRequest(
        deps,
        request('POST', '/search', jsonBody({ uploadKey: key, n: 1 })),
      );
      expect(JSON.parse(response.body as string)).toMatchObject({ hits: [{ key: 'rhino/1.jpg' }] });
      const missing = await handleApiRequest(
        deps,
        request('POST', '/search', jsonBody({ uploadKey: 'uploads/none' })),
      );
      expect(missing.status).toBe(404);
    });

    it.each([
      [
        'an empty body',
        { headers: { 'content-type': 'image/jpeg' }, body: Buffer.alloc(0) },
        400,
        'invalid_input',
      ],
      [
        'malformed JSON',
        { headers: { 'content-type': 'application/json' }, body: Buffer.from('{"image": ') },
        400,
        'invalid_input',
      ],
      ['invalid base64', jsonBody({ image: 'not base64 at all!!' }), 400, 'invalid_input'],
      ['both image and uploadKey', jsonBody({ image: 'AAAA', uploadKey: 'k' }), 400, 'invalid_input'],
      ['an unknown JSON field', jsonBody({ image: 'AAAA', colour: 'red' }), 400, 'invalid_input'],
      ['n out of range in JSON', jsonBody({ image: 'AAAA', n: 101 }), 400, 'invalid_input'],
      [
        'a text content type',
        { headers: { 'content-type': 'text/plain' }, body: Buffer.from('hello') },
        415,
        'unsupported_image',
      ],
      ['no content type', { body: Buffer.from('hello') }, 415, 'unsupported_image'],
      [
        'text sent as image/jpeg',
        { headers: { 'content-type': 'image/jpeg' }, body: Buffer.from('not really a jpeg') },
        415,
        'unsupported_image',
      ],
    ])('rejects %s with %i', async (_name, init, status, code) => {
      const response = await handleApiRequest(deps, request('POST', '/search', init));
      expect(response.status).toBe(status);
      expect(JSON.parse(response.body as string)).toMatchObject({ error: { code } });
    });

    it('rejects an image over the inline limit with 413 and points to /uploads', async () => {
      const big = await jpeg(1200, 1200);
      const bigger = Buffer.concat([big, Buffer.alloc(250_000)]);
      const response = await handleApiRequest(
        deps,
        request('POST', '/search', { headers: { 'content-type': 'image/jpeg' }, body: bigger }),
      );
      expect(response.status).toBe(413);
      expect(response.body).toMatch(/POST \/uploads/);
    });
  });

  describe('GET /images/{key}/similar', () => {
    it.each(Object.keys(KEYS))(
      'finds neighbours of %p (percent-encoded in the path), itself left out',
      async (key) => {
        const response = await handleApiRequest(
          deps,
          request('GET', `/images/${encodeURIComponent(key)}/similar`, { query: { n: '5' } }),
        );
        expect(response.status).toBe(200);
        const { hits } = JSON.parse(response.body as string) as { hits: { key: string }[] };
        expect(hits).toHaveLength(5);
        expect(hits.map((h) => h.key)).not.toContain(key);
      },
    );

    it.each(['0', '101', 'NaN', 'Infinity', '1e1', '-1', '', '2.5', ' 5'])(
      'rejects n=%p with 400',
      async (n) => {
        const response = await handleApiRequest(
          deps,
          request('GET', '/images/rhino%2F1.jpg/similar', { query: { n } }),
        );
        expect(response.status).toBe(400);
      },
    );

    it('answers 404 for an unknown key, 400 for a key over 1,024 bytes and for a bad escape', async () => {
      expect((await handleApiRequest(deps, request('GET', '/images/nope.jpg/similar'))).status).toBe(404);
      expect(
        (await handleApiRequest(deps, request('GET', `/images/${'k'.repeat(1025)}/similar`))).status,
      ).toBe(400);
      expect((await handleApiRequest(deps, request('GET', '/images/%E0%A4%A/similar'))).status).toBe(400);
    });

    it('treats SQL-injection-looking keys and prefixes as data', async () => {
      const response = await handleApiRequest(
        deps,
        request('GET', `/images/${encodeURIComponent("x' OR '1'='1")}/similar`),
      );
      expect(response.status).toBe(404);
      const prefixed = await handleApiRequest(
        deps,
        request('GET', '/images/rhino%2F1.jpg/similar', { query: { prefix: "'; DROP TABLE images; --" } }),
      );
      expect(JSON.parse(prefixed.body as string)).toMatchObject({ hits: [] });
    });
  });

  it('serves the OpenAPI document and answers unknown routes and methods', async () => {
    const doc = await handleApiRequest(deps, request('GET', '/openapi.json'));
    expect(JSON.parse(doc.body as string)).toMatchObject({
      openapi: '3.0.3',
      paths: { '/search': {}, '/images/{key}/similar': {} },
    });
    expect((await handleApiRequest(deps, request('GET', '/nowhere'))).status).toBe(404);
    expect((await handleApiRequest(deps, request('DELETE', '/search'))).status).toBe(405);
  });

  it('answers 500 with no internals when something unexpected fails', async () => {
    const reported: unknown[] = [];
    const broken: ApiDependencies = {
      ...deps,
      reportError: (error) => reported.push(error),
      imageUrl: () => Promise.reject(new Error('ECONNREFUSED 10.0.0.5:5432 /var/task/secret.js')),
    };
    const response = await handleApiRequest(broken, request('GET', '/images/rhino%2F1.jpg/similar'));
    expect(response.status).toBe(500);
    expect(response.body).not.toMatch(/ECONNREFUSED|secret|10\.0\.0\.5/);
    expect(JSON.parse(response.body as string)).toMatchObject({ error: { code: 'internal_error' } });
    // ... while the cause reaches the logs.
    expect(String(reported[0])).toMatch(/ECONNREFUSED 10\.0\.0\.5/);
  });
});
