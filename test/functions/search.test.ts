import { createHash, createHmac } from 'node:crypto';
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

/**
 * AWS Signature V4 verification of a presigned URL, as S3 does it (canonical request over method,
 * path, query and signed headers; UNSIGNED-PAYLOAD), with s3rver's fixed secret key.
 */
function sigV4Verifies(
  method: string,
  url: URL,
  headers: Record<string, string>,
  secret = 'S3RVER',
): boolean {
  const p = url.searchParams;
  const encode = (text: string) =>
    encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...p.entries()]
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => `${encode(k)}=${encode(v)}`)
    .sort()
    .join('&');
  const signed = (p.get('X-Amz-SignedHeaders') ?? '').split(';');
  const values: Record<string, string> = { host: url.host };
  for (const [k, v] of Object.entries(headers)) values[k.toLowerCase()] = v.trim();
  const canonicalHeaders = signed.map((h) => `${h}:${values[h] ?? ''}\n`).join('');
  const request = [method, url.pathname, query, canonicalHeaders, signed.join(';'), 'UNSIGNED-PAYLOAD'].join(
    '\n',
  );
  const [, date, region, service] = (p.get('X-Amz-Credential') ?? '').split('/');
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date!), region!), service!), 'aws4_request');
  const toSign = [
    'AWS4-HMAC-SHA256',
    p.get('X-Amz-Date'),
    `${date}/${region}/${service}/aws4_request`,
    createHash('sha256').update(request).digest('hex'),
  ].join('\n');
  return hmac(key, toSign).toString('hex') === p.get('X-Amz-Signature');
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

  it('signs URLs for one key only, short-lived: a signature does not open another key or another content type', async () => {
    // Prepare: a result URL (GET) and an upload ticket (PUT).
    const result = await api(
      apiEvent({
        method: 'GET',
        resource: '/images/{key}/similar',
        pathParameters: { key: 'dolphin/1.jpg' },
      }),
    );
    const url = new URL(body<Hits>(result).hits.find((h) => h.key === 'dolphin/2.jpg')!.url);
    const ticket = await api(
      apiEvent({
        method: 'POST',
        resource: '/uploads',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ contentType: 'image/jpeg' }),
      }),
    );
    const { uploadUrl, headers } = body<{ uploadUrl: string; headers: Record<string, string> }>(ticket);
    const upload = new URL(uploadUrl);
    // Assess: GET for 15 minutes, PUT for 5, each signed for exactly one object path.
    expect(Number(url.searchParams.get('X-Amz-Expires'))).toBeLessThanOrEqual(900);
    expect(url.pathname).toMatch(/\/dolphin\/2\.jpg$/);
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    expect(Number(upload.searchParams.get('X-Amz-Expires'))).toBeLessThanOrEqual(300);
    expect(upload.searchParams.get('X-Amz-SignedHeaders')).toContain('content-type');
    expect(upload.pathname).toMatch(/\/query-uploads\/[0-9a-f-]{36}$/);
    // Act + Assess: S3 recomputes the signature over method, path, query and signed headers. s3rver
    // does not check SigV4, so the check is done here: the genuine requests verify, and the same
    // signature on another key, another method or another content type does not.
    await expect(fetch(url)).resolves.toMatchObject({ status: 200 });
    expect(sigV4Verifies('GET', url, {})).toBe(true);
    expect(sigV4Verifies('PUT', upload, headers)).toBe(true);
    const other = new URL(url);
    other.pathname = other.pathname.replace(/2\.jpg$/, '1.jpg');
    expect(sigV4Verifies('GET', other, {})).toBe(false);
    expect(sigV4Verifies('PUT', url, { 'content-type': 'image/jpeg' })).toBe(false);
    const elsewhere = new URL(upload);
    elsewhere.pathname = elsewhere.pathname.replace(/query-uploads\/.*$/, 'dolphin/1.jpg');
    expect(sigV4Verifies('PUT', elsewhere, headers)).toBe(false);
    expect(sigV4Verifies('PUT', upload, { 'content-type': 'text/html' })).toBe(false);
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
