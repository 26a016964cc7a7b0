import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import pg from 'pg';
import { s3Notification } from '../../lib/lambda-local/event-sources';
import { ExecutionEnvironment } from '../../lib/lambda-local/execution-environment';
import { LocalCloud } from '../../lib/lambda-local/local-cloud';
import { prepareRuntimeFiles } from '../../lib/lambda-local/runtime-files';
import { synthStage } from '../../lib/lambda-local/synth';
import { CALTECH_DIR, MODELS_DIR, testDatabaseUrl } from '../helpers/shared';

/**
 * The cloud path as Lambda runs it (lib/lambda-local): `cdk synth` of the dev stage, then its bundles
 * and layers from cdk.out on Node.js 24 through the Runtime API, in a mount namespace where only the
 * bundle and the layers exist; S3 notifications through the queue and the event source mapping into a
 * TLS PostgreSQL; the query function behind the REST API's key check and binary media types.
 */
const ROOT = resolve(__dirname, '..', '..');
const photos = (cls: string, n: number) =>
  readdirSync(join(CALTECH_DIR, cls))
    .sort()
    .slice(0, n)
    .map((f) => readFileSync(join(CALTECH_DIR, cls, f)));

let out: string;
let cloud: LocalCloud;
let db: pg.Client;

beforeAll(async () => {
  out = mkdtempSync(join(tmpdir(), 'ompf-lambda-cdk-'));
  const stackName = await synthStage({
    repoRoot: ROOT,
    stage: 'dev',
    model: 'mobilenetv2-int8',
    modelsDir: MODELS_DIR,
    outDir: out,
  });
  cloud = await LocalCloud.start({
    cdkOut: out,
    stackName,
    repoRoot: ROOT,
    superuserDatabaseUrl: testDatabaseUrl(),
  });
  db = new pg.Client({ connectionString: cloud.database.inspectUrl });
  await db.connect();
}, 300_000);

afterAll(async () => {
  await db?.end();
  await cloud?.close();
  rmSync(out, { recursive: true, force: true });
});

describe('the execution environment', () => {
  let probeDir: string;
  beforeAll(() => {
    probeDir = mkdtempSync(join(tmpdir(), 'ompf-lambda-probe-'));
    writeFileSync(
      join(probeDir, 'index.js'),
      `const fs = require('node:fs');
const found = (name) => { try { return require.resolve(name); } catch (e) { return e.code; } };
exports.handler = async (event) => {
  if (event.sleepMs) await new Promise((done) => setTimeout(done, event.sleepMs));
  if (event.allocateMiB) { globalThis.kept = Buffer.alloc(event.allocateMiB * 1024 * 1024, 1); }
  if (event.exit) process.exit(event.exit);
  return {
    node: process.version, cwd: process.cwd(), env: process.env,
    s3rver: found('s3rver'), sharp: found('sharp'), ort: found('onnxruntime-node'),
    repository: fs.existsSync(${JSON.stringify(join(ROOT, 'node_modules'))}), opt: fs.readdirSync('/opt'),
  };
};
`,
    );
  });
  afterAll(() => rmSync(probeDir, { recursive: true, force: true }));

  const probe = (memoryMiB = 512, timeoutSeconds = 3) =>
    new ExecutionEnvironment({
      functionName: 'probe',
      handler: 'index.handler',
      memoryMiB,
      timeoutSeconds,
      codeDir: probeDir,
      layerDirs: cloud.functions.indexer.definition.layerDirs,
      variables: { PROBE: 'yes' },
      runtime: prepareRuntimeFiles(ROOT, cloud.database.caFile),
      region: 'eu-west-1',
      hide: [join(ROOT, '..'), process.env.HOME ?? '/root'],
    });

  it("runs Node.js 24 from the npm package with the layers at /opt and Lambda's variables; a require only the repository could satisfy fails", async () => {
    // Prepare
    const environment = probe();
    await environment.start();
    try {
      // Act
      const result = await environment.invoke({});
      const answer = result.payload as {
        node: string;
        cwd: string;
        env: Record<string, string>;
        s3rver: string;
        sharp: string;
        ort: string;
        repository: boolean;
        opt: string[];
      };

      // Assess
      expect(require.resolve('s3rver')).toContain(join(ROOT, 'node_modules'));
      expect(answer.s3rver).toBe('MODULE_NOT_FOUND');
      expect(answer.repository).toBe(false);
      expect(answer.node).toMatch(/^v24\./);

      expect(answer.cwd).toBe('/var/task');
      expect(answer.sharp).toMatch(/^\/opt\/nodejs\/node_modules\/sharp\//);
      expect(answer.ort).toMatch(/^\/opt\/nodejs\/node_modules\/onnxruntime-node\//);
      expect(answer.opt.sort()).toEqual(['models', 'nodejs']);
      expect(answer.env).toMatchObject({
        PROBE: 'yes',
        _HANDLER: 'index.handler',
        LAMBDA_TASK_ROOT: '/var/task',
        AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '512',
        AWS_REGION: 'eu-west-1',
      });
      expect(answer.env.NODE_PATH).toContain('/opt/nodejs/node_modules');
      expect(result.initMs).toBeGreaterThan(0);
    } finally {
      await environment.stop();
    }
  });

  it('kills a function that passes its timeout (Sandbox.Timedout) and discards its environment (the next invocation starts cold)', async () => {
    // Prepare
    const environment = probe(512, 1);
    await environment.start();
    try {
      // Act
      const timedOut = await environment.invoke({ sleepMs: 3_000 });

      // Assess
      expect(timedOut.error).toEqual({
        errorType: 'Sandbox.Timedout',
        errorMessage: 'Task timed out after 1.00 seconds',
      });
      expect(environment.alive).toBe(false);
    } finally {
      await environment.stop();
    }
  });

  it('ends a function that passes its memory size (Runtime.OutOfMemory) and one that exits (Runtime.ExitError)', async () => {
    // Prepare
    const small = probe(256);
    const exiting = probe();
    await Promise.all([small.start(), exiting.start()]);
    try {
      // Act
      const oom = await small.invoke({ allocateMiB: 400 });
      const exited = await exiting.invoke({ exit: 3 });

      // Assess
      expect(oom.error?.errorType).toBe('Runtime.OutOfMemory');
      expect(exited.error).toEqual({
        errorType: 'Runtime.ExitError',
        errorMessage: 'Runtime exited with error: exit status 3',
      });
    } finally {
      await Promise.all([small.stop(), exiting.stop()]);
    }
  });
});

describe('deployment', () => {
  it("takes each function's handler, runtime, memory, timeout and layers from the synthesized template", () => {
    // Assess
    const { indexer, query, migrate } = cloud.functions;
    expect(indexer.definition).toMatchObject({
      handler: 'index.handler',
      runtime: 'nodejs24.x',
      memoryMiB: 2048,
      timeoutSeconds: 60,
    });
    expect(query.definition).toMatchObject({ memoryMiB: 2048, timeoutSeconds: 20 });
    expect(indexer.definition.layerDirs).toHaveLength(2);
    expect(migrate.definition.layerDirs).toHaveLength(0);
    expect(indexer.variables).toMatchObject({
      OMPF_DB_USER: 'ompf_indexer',
      OMPF_DB_HOST: cloud.database.host,
      OMPF_BUCKET: cloud.bucket,
    });
  });

  it("refuses a pgvector older than the stage's floor, failing the deployment", async () => {
    // Prepare
    const floor = cloud.functions.migrate.variables.OMPF_MIN_PGVECTOR;
    cloud.functions.migrate.variables.OMPF_MIN_PGVECTOR = '99.0.0';
    await cloud.functions.migrate.reset();
    try {
      // Act
      const result = await cloud.deploy();

      // Assess: refused before any schema change (a failed deployment rolls back the stack, not the data)
      expect(result.error?.errorMessage).toMatch(/pgvector \S+ is older than the required 99\.0\.0/);
      const migrations = await db.query<{ name: string | null }>(
        "SELECT to_regclass('ompf_migrations')::text AS name",
      );
      expect(migrations.rows[0]!.name).toBeNull();
    } finally {
      cloud.functions.migrate.variables.OMPF_MIN_PGVECTOR = floor!;
      await cloud.functions.migrate.reset();
    }
  });

  it("applies the migrations as the stack's custom resource does: the secret's admin over verified TLS, no native layer", async () => {
    // Act
    const result = await cloud.deploy();

    // Assess
    expect(result.error).toBeUndefined();
    expect(result.payload).toMatchObject({
      PhysicalResourceId: 'ompf-schema',
      Data: { applied: '1,2,3,4,5,6,7' },
    });
    const roles = await db.query<{ rolname: string }>(
      "SELECT rolname FROM pg_roles WHERE rolname IN ('ompf_indexer', 'ompf_query') ORDER BY 1",
    );
    expect(roles.rows.map((r) => r.rolname)).toEqual(['ompf_indexer', 'ompf_query']);
  });

  it('lets a function role in only over TLS and with an IAM token for its endpoint and role', async () => {
    // Prepare
    const login = async (ssl: boolean, password: string) => {
      const client = new pg.Client({
        host: cloud.database.host,
        port: cloud.database.port,
        database: cloud.database.database,
        user: 'ompf_indexer',
        password,
        ssl: ssl ? { ca: readFileSync(cloud.database.caFile, 'utf8') } : false,
      });
      try {
        await client.connect();
        return 'connected';
      } catch (error) {
        return (error as Error).message;
      } finally {
        await client.end().catch(() => undefined);
      }
    };

    // Act
    const withoutTls = await login(false, 'anything');
    const notAToken = await login(true, 'a-password');

    // Assess
    expect(withoutTls).toMatch(/pg_hba\.conf rejects connection .* no encryption/);
    expect(notAToken).toMatch(/authentication failed for user "ompf_indexer"/);
    expect(readFileSync(cloud.database.iamLog, 'utf8')).toMatch(/^ompf_indexer refused$/m);
  });
});

describe('the indexing path', () => {
  it('indexes what is PUT, forgets what is deleted, records what cannot be decoded: the index equals the bucket', async () => {
    // Prepare
    const [a, b, c, d] = photos('Leopards', 4);
    const [e, f] = photos('bass', 2);
    await cloud.put('leopards/spotted cat 1.jpg', a!);
    await cloud.put('leopards/ökapi+2.jpg', b!);
    await cloud.put('leopards/3.jpg', c!);
    await cloud.put('fish/bass 1.jpg', e!);
    await cloud.put('fish/bass 2.jpg', f!);
    await cloud.put('broken/not a photo.jpg', Buffer.from('this is not a JPEG'));
    await cloud.put('leopards/gone.jpg', d!);
    await cloud.remove('leopards/gone.jpg');
    for (let i = 0; i < 6; i++) await cloud.put(`more/leopard ${i}.jpg`, photos('Leopards', 12)[6 + i]!);
    await cloud.put(
      'notes/readme.txt',
      Buffer.from('not an image suffix: S3 sends no notification'),
      'text/plain',
    );

    // Act
    const batches = await cloud.drain();

    // Assess
    expect(batches.every((batch) => batch.records <= cloud.batchSize && batch.failed.length === 0)).toBe(
      true,
    );
    // 15 notifications: S3's test event (sent at deploy), 13 PUTs of .jpg keys and one DELETE.
    expect(cloud.notified).not.toContain('notes/readme.txt');
    expect(batches.length).toBe(Math.ceil(15 / cloud.batchSize));
    const listed = await cloud.s3Client.send(new ListObjectsV2Command({ Bucket: cloud.bucket }));
    const inBucket = (listed.Contents ?? []).map((o) => o.Key!).sort();
    const rows = await db.query<{ key: string }>('SELECT key FROM images WHERE source = $1 ORDER BY key', [
      cloud.bucket,
    ]);
    const failures = await db.query<{ key: string }>('SELECT key FROM index_failures WHERE source = $1', [
      cloud.bucket,
    ]);
    expect(rows.rows.map((r) => r.key)).toEqual(
      inBucket.filter((k) => k !== 'broken/not a photo.jpg' && k !== 'notes/readme.txt').sort(),
    );
    expect(inBucket).toHaveLength(13);
    expect(failures.rows.map((r) => r.key)).toEqual(['broken/not a photo.jpg']);
    // The indexer logged in as its own role with an IAM token the check accepted (no other way in).
    expect(readFileSync(cloud.database.iamLog, 'utf8')).toMatch(/^ompf_indexer ok$/m);
    expect(readFileSync(cloud.database.iamLog, 'utf8').match(/refused/g)).toHaveLength(1);
    const cold = cloud.functions.indexer.invocations.filter((i) => i.cold);
    expect(cold).toHaveLength(1);
    expect(cold[0]!.initMs).toBeGreaterThan(0);
  });

  it('returns a failing message after the visibility timeout, keeps the rest of its batch, and dead-letters it after maxReceiveCount', async () => {
    // Prepare
    const [photo] = photos('bass', 3).slice(2);
    const poison = cloud.queue.send('{"Records": [');
    await cloud.put('fish/bass 3.jpg', photo!);
    const visibility = cloud.assembly.queue(
      cloud.assembly.eventSourceMapping(cloud.functions.indexer.definition.logicalId).queueLogicalId,
    );

    // Act
    const first = await cloud.eventSource.pollOnce();
    const visibleBefore = cloud.queue.visible;
    cloud.clock.advance(visibility.visibilityTimeoutSeconds - 1);
    const visibleJustBefore = cloud.queue.visible;
    cloud.clock.advance(2);
    const visibleAfter = cloud.queue.visible;
    await cloud.drain();

    // Assess
    expect(first).toEqual({ records: 2, failed: [poison] });
    expect([visibleBefore, visibleJustBefore, visibleAfter]).toEqual([0, 0, 1]);
    expect(cloud.queue.depth).toBe(0);
    const dead = cloud.deadLetters.bodies();
    expect(dead).toEqual([
      { messageId: poison, body: '{"Records": [', receiveCount: visibility.maxReceiveCount },
    ]);
    const row = await db.query('SELECT 1 FROM images WHERE source = $1 AND key = $2', [
      cloud.bucket,
      'fish/bass 3.jpg',
    ]);
    expect(row.rowCount).toBe(1);
  });

  it('applies an ObjectRemoved notification S3 sends for a key with a space (form-encoded with +)', async () => {
    // Prepare
    const message = s3Notification({
      eventName: 'ObjectRemoved:Delete',
      bucket: cloud.bucket,
      key: 'fish/bass 1.jpg',
      sequencer: 'FFFFFFFFFFFFFFFF00',
    });
    expect(message).toContain('"key":"fish/bass+1.jpg"');
    await cloud.remove('fish/bass 1.jpg');

    // Act
    await cloud.drain();

    // Assess
    const row = await db.query('SELECT 1 FROM images WHERE source = $1 AND key = $2', [
      cloud.bucket,
      'fish/bass 1.jpg',
    ]);
    expect(row.rowCount).toBe(0);
  });
});

describe('the query path', () => {
  const search = (
    headers: Record<string, string>,
    body: Buffer | undefined,
    path = '/search',
    query: Record<string, string> = { n: '3' },
  ) => cloud.request({ method: 'POST', path, query, headers, body });
  const json = (body: Buffer) => JSON.parse(body.toString('utf8')) as Record<string, unknown>;

  it.each([
    ['no x-api-key', {}],
    ['a wrong x-api-key', { 'x-api-key': 'not-the-key' }],
  ])('answers %s with 403 before any function runs', async (_name, headers) => {
    // Prepare
    const before = cloud.functions.query.invocations.length;

    // Act
    const reply = await search({ ...headers, 'content-type': 'image/jpeg' }, photos('Leopards', 1)[0]);

    // Assess
    expect(reply.status).toBe(403);
    expect(json(reply.body)).toEqual({ error: { code: 'gateway_INVALID_API_KEY', message: 'Forbidden' } });
    expect(reply.invoked).toBe(false);
    expect(cloud.functions.query.invocations.length).toBe(before);
  });

  it('answers a route the API does not have as API Gateway does (403 Missing Authentication Token)', async () => {
    // Act
    const reply = await cloud.request({
      method: 'GET',
      path: '/nowhere',
      query: {},
      headers: { 'x-api-key': cloud.apiKey },
      body: undefined,
    });

    // Assess
    expect(reply.status).toBe(403);
    expect(json(reply.body)).toEqual({
      error: { code: 'gateway_MISSING_AUTHENTICATION_TOKEN', message: 'Missing Authentication Token' },
    });
  });

  it('searches by image: the image/jpeg body arrives base64-encoded and the photo finds itself first', async () => {
    // Act
    const reply = await search(
      { 'x-api-key': cloud.apiKey, 'content-type': 'image/jpeg' },
      photos('Leopards', 1)[0],
    );

    // Assess
    expect(reply.status).toBe(200);
    const body = json(reply.body) as { model: string; hits: { key: string; url: string }[] };
    expect(body.model).toBe('mobilenetv2-int8+whole+gem3+dba3');
    expect(body.hits[0]!.key).toBe('leopards/spotted cat 1.jpg');
    expect(body.hits[0]!.url).toContain(cloud.s3.endpoint);
  });

  it('searches by key (GET /images/{key}/similar, a key with a slash and a space)', async () => {
    // Act
    const reply = await cloud.request({
      method: 'GET',
      path: `/images/${encodeURIComponent('leopards/spotted cat 1.jpg')}/similar`,
      query: { n: '3' },
      headers: { 'x-api-key': cloud.apiKey },
      body: undefined,
    });

    // Assess
    expect(reply.status).toBe(200);
    const hits = (json(reply.body) as { hits: { key: string }[] }).hits.map((h) => h.key);
    expect(hits).toHaveLength(3);
    expect(
      hits.filter((k) => k.startsWith('leopards/') || k.startsWith('more/')).length,
    ).toBeGreaterThanOrEqual(2);
  });

  it('takes a presigned upload, then searches by its key', async () => {
    // Prepare
    const ticket = await cloud.request({
      method: 'POST',
      path: '/uploads',
      query: {},
      headers: { 'x-api-key': cloud.apiKey, 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ contentType: 'image/jpeg' })),
    });
    const { key, uploadUrl } = json(ticket.body) as { key: string; uploadUrl: string };
    const put = await fetch(uploadUrl, {
      method: 'PUT',
      headers: { 'content-type': 'image/jpeg' },
      body: photos('bass', 2)[1]!,
    });

    // Act
    const reply = await search(
      { 'x-api-key': cloud.apiKey, 'content-type': 'application/json' },
      Buffer.from(JSON.stringify({ uploadKey: key, n: 2 })),
      '/search',
      {},
    );

    // Assess
    expect(ticket.status).toBe(201);
    expect(cloud.notified).not.toContain(key);
    expect(put.status).toBe(200);
    expect(reply.status).toBe(200);
    expect((json(reply.body) as { hits: { key: string }[] }).hits[0]!.key).toBe('fish/bass 2.jpg');
  });

  it.each([
    [
      'a body that is not an image',
      { 'content-type': 'image/jpeg' },
      Buffer.from('not an image'),
      {},
      'POST',
      '/search',
      415,
    ],
    ['n out of range', { 'content-type': 'image/jpeg' }, undefined, { n: '0' }, 'POST', '/search', 400],
    ['a key that is not indexed', {}, undefined, {}, 'GET', '/images/no%20such.jpg/similar', 404],
    [
      'a request over 10 MB',
      { 'content-type': 'image/jpeg' },
      Buffer.alloc(10 * 1024 * 1024 + 1),
      {},
      'POST',
      '/search',
      413,
    ],
  ] as const)(
    'answers %s with a JSON error (%#)',
    async (_name, headers, body, query, method, path, status) => {
      // Act
      const reply = await cloud.request({
        method,
        path,
        query,
        headers: { 'x-api-key': cloud.apiKey, ...headers },
        body: body ?? (method === 'POST' ? photos('Leopards', 1)[0] : undefined),
      });

      // Assess
      expect(reply.status).toBe(status);
      expect(json(reply.body)).toMatchObject({
        error: { code: expect.any(String), message: expect.any(String) },
      });
    },
  );
});
