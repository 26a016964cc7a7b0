import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import type { SqlClient } from '../../lib/adapters/store/sql-client';
import {
  awsParts,
  closeAwsResources,
  indexImagesHandler,
  loadAwsConfig,
  searchHandler,
} from '../../lib/runtime/aws';
import { jpeg } from '../helpers/images';
import { CALTECH_DIR, requirePath } from '../helpers/shared';
import {
  apiEvent,
  engines,
  lambdaContext,
  lambdaEnv,
  requirePostgresInCi,
  s3Notification,
  sqsEvent,
  sqsRecord,
  startS3,
  setLambdaRuntimeEnvironment,
  type S3Server,
} from './fixtures';

setLambdaRuntimeEnvironment();

/** Gallery keys with space, '+', '%', unicode and '/' (one path segment once encoded). */
const GALLERY: Record<string, [string, string]> = {
  'okapi/one two.jpg': ['okapi', 'image_0001.jpg'],
  'okapi/a+b%20c.jpg': ['okapi', 'image_0002.jpg'],
  'okapi/ökapi-東京.jpg': ['okapi', 'image_0003.jpg'],
  'dolphin/1.jpg': ['dolphin', 'image_0001.jpg'],
  'dolphin/2.jpg': ['dolphin', 'image_0002.jpg'],
  'rhino/1.jpg': ['rhino', 'image_0001.jpg'],
};

type Api = (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>;
const body = <T>(result: APIGatewayProxyResult) => JSON.parse(result.body) as T;
interface Hits {
  hits: { key: string; distance: number; score: number; url: string }[];
}

describe.each(engines('ompf_search_fn'))('query Lambda on $name', (engine) => {
  let s3: S3Server;
  let client: SqlClient;
  let api: Api;
  const photo = (cls: string, file: string) => readFileSync(join(CALTECH_DIR, cls, file));
  const saved = { ...process.env };

  beforeAll(async () => {
    requirePath(CALTECH_DIR, 'Dataset');
    s3 = await startS3();
    client = await engine.connect();
    const env = engine.url
      ? lambdaEnv(s3, { DATABASE_URL: engine.url })
      : lambdaEnv(s3, { OMPF_DB_SECRET_ARN: 'unused' });
    const parts = awsParts(loadAwsConfig(env), engine.url ? {} : { sql: () => Promise.resolve(client) });
    await client.exec(
      'DROP TABLE IF EXISTS images, index_failures, image_tombstones, ompf_store, ompf_migrations',
    );
    // Index the gallery through the indexing Lambda, as S3 would trigger it.
    const records = await Promise.all(
      Object.entries(GALLERY).map(async ([key, [cls, file]], i) => {
        const { etag } = await s3.put(key, photo(cls, file));
        return sqsRecord(s3Notification({ eventName: 'ObjectCreated:Put', key, sequencer: `00A${i}`, etag }));
      }),
    );
    const indexed = await indexImagesHandler(parts)(sqsEvent(...records), lambdaContext());
    expect(indexed.batchItemFailures).toEqual([]);
    if (engine.url) {
      // PostgreSQL: the real functions/search module, configured from its environment at import.
      Object.assign(process.env, env);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      api = (require('../../functions/search') as { handler: Api }).handler;
    } else {
      api = searchHandler(parts);
    }
  });
  afterAll(async () => {
    process.env = saved;
    await closeAwsResources();
    await s3.close();
    await client.close();
    await engine.drop();
  });

  it('searches by a binary image body (base64 in the proxy event) and returns fetchable presigned URLs', async () => {
    // Act
    const result = await api(
      apiEvent({
        method: 'POST',
        resource: '/search',
        headers: { 'Content-Type': 'image/jpeg' },
        query: { n: '3' },
        body: photo('okapi', 'image_0010.jpg'),
      }),
    );
    // Assess
    expect(result.statusCode).toBe(200);
    const { hits } = body<Hits>(result);
    expect(hits).toHaveLength(3);
    expect(hits.every((h) => h.key.startsWith('okapi/'))).toBe(true);
    const image = await fetch(hits[0]!.url);
    expect(image.status).toBe(200);
    const [cls, file] = GALLERY[hits[0]!.key]!;
    expect(Buffer.from(await image.arrayBuffer()).equals(photo(cls, file))).toBe(true);
    expect(new URL(hits[0]!.url).searchParams.get('X-Amz-Expires')).toBe('900');
  });

  it.each(Object.keys(GALLERY))(
    'finds neighbours of %p by key (path parameter decoded by API Gateway)',
    async (key) => {
      const result = await api(
        apiEvent({
          method: 'GET',
          resource: '/images/{key}/similar',
          pathParameters: { key },
          query: { n: '5' },
        }),
      );
      expect(result.statusCode).toBe(200);
      const { hits } = body<Hits>(result);
      expect(hits).toHaveLength(5);
      expect(hits.map((h) => h.key)).not.toContain(key);
    },
  );

  it('searches by a presigned upload: POST /uploads, PUT the image to S3, then search by its key', async () => {
    // Act
    const ticket = await api(
      apiEvent({
        method: 'POST',
        resource: '/uploads',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ contentType: 'image/jpeg' }),
      }),
    );
    expect(ticket.statusCode).toBe(201);
    const { key, uploadUrl, headers } = body<{
      key: string;
      uploadUrl: string;
      headers: Record<string, string>;
    }>(ticket);
    const put = await fetch(uploadUrl, { method: 'PUT', headers, body: photo('rhino', 'image_0005.jpg') });
    expect(put.status).toBe(200);
    const result = await api(
      apiEvent({
        method: 'POST',
        resource: '/search',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ uploadKey: key, n: 1 }),
      }),
    );
    // Assess
    expect(key).toMatch(/^query-uploads\/[0-9a-f-]{36}$/);
    expect(body<Hits>(result).hits.map((h) => h.key)).toEqual(['rhino/1.jpg']);
  });

  it.each([
    ['an uploadKey outside the upload prefix', { uploadKey: 'dolphin/1.jpg' }, 400, 'invalid_input'],
    [
      'an upload never made',
      { uploadKey: 'query-uploads/0b6f0a52-9a52-4c39-9a1e-1d2b1f7d0a11' },
      404,
      'not_found',
    ],
    ['n over 100', { image: 'AAAA', n: 101 }, 400, 'invalid_input'],
    [
      'base64 that is not an image',
      { image: Buffer.from('hello').toString('base64') },
      415,
      'unsupported_image',
    ],
  ])('answers %s with %i', async (_name, json, status, code) => {
    const result = await api(
      apiEvent({
        method: 'POST',
        resource: '/search',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(json),
      }),
    );
    expect(result.statusCode).toBe(status);
    expect(body<{ error: { code: string } }>(result).error.code).toBe(code);
  });

  it.each([
    [
      'an unknown key',
      { method: 'GET', resource: '/images/{key}/similar', pathParameters: { key: 'no such.jpg' } },
      404,
    ],
    [
      'n=0',
      {
        method: 'GET',
        resource: '/images/{key}/similar',
        pathParameters: { key: 'rhino/1.jpg' },
        query: { n: '0' },
      },
      400,
    ],
    [
      'text/plain',
      { method: 'POST', resource: '/search', headers: { 'content-type': 'text/plain' }, body: 'hi' },
      415,
    ],
  ])('answers %s with %i, as JSON', async (_name, init, status) => {
    const result = await api(apiEvent(init));
    expect(result.statusCode).toBe(status);
    expect(result.headers?.['content-type']).toMatch(/^application\/json/);
  });

  it('refuses an inline image over 4.5 MB with 413 and points to /uploads', async () => {
    const big = Buffer.concat([await jpeg(64, 64), Buffer.alloc(4_600_000)]);
    const result = await api(
      apiEvent({ method: 'POST', resource: '/search', headers: { 'content-type': 'image/jpeg' }, body: big }),
    );
    expect(result.statusCode).toBe(413);
    expect(result.body).toMatch(/POST \/uploads/);
  });
});

requirePostgresInCi('query Lambda');

describe('query Lambda when the database is down', () => {
  it('answers 503 as JSON without internals (no host, no driver message)', async () => {
    // Prepare
    const s3 = await startS3();
    const api = searchHandler(
      awsParts(loadAwsConfig(lambdaEnv(s3, { DATABASE_URL: 'postgres://ompf@127.0.0.1:1/ompf' }))),
    );
    // Act
    const result = await api(
      apiEvent({ method: 'GET', resource: '/images/{key}/similar', pathParameters: { key: 'a.jpg' } }),
    );
    // Assess
    expect(result.statusCode).toBe(503);
    expect(body<{ error: { code: string } }>(result).error.code).toBe('dependency_unavailable');
    expect(result.body).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|DATABASE_URL|at .*\.js/);
    await closeAwsResources();
    await s3.close();
  });
});
