import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { LocalCloud } from '../../lib/lambda-local/local-cloud';
import { synthStage } from '../../lib/lambda-local/synth';
import { CALTECH_DIR, MODELS_DIR, testDatabaseUrl } from '../helpers/shared';

/**
 * Cloud operations end to end in the Lambda harness (lib/lambda-local): the operations function
 * reconciles the bucket with the index through the real SQS API (stand-in) and the indexer, lists and
 * redrives the dead-letter queue, and a transform change deployed in the middle of traffic builds a
 * new index beside the old one, which keeps answering queries until the new one has caught up and
 * takes over. `ompf cloud ...` (the built CLI) finds the function through CloudFormation's outputs and
 * invokes it through Lambda's API (control-plane stand-in).
 */
const ROOT = resolve(__dirname, '..', '..');
const run = promisify(execFile);
const photos = readdirSync(join(CALTECH_DIR, 'Leopards'))
  .sort()
  .slice(0, 8)
  .map((f) => readFileSync(join(CALTECH_DIR, 'Leopards', f)));

let outs: string[] = [];
let cloud: LocalCloud;
let db: pg.Client;
const logs: { fn: string; line: string }[] = [];

/** The metrics a function published: its embedded-metric-format log lines, as CloudWatch reads them. */
function metricsOf(fn: string): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const { line } of logs.filter((l) => l.fn.endsWith(fn))) {
    const start = line.indexOf('{"_aws"');
    if (start < 0) continue;
    const emf = JSON.parse(line.slice(start)) as {
      _aws: { CloudWatchMetrics: { Namespace: string; Metrics: { Name: string }[] }[] };
    } & Record<string, unknown>;
    for (const directive of emf._aws.CloudWatchMetrics) {
      expect(directive.Namespace).toBe('ompf');
      for (const { Name } of directive.Metrics) {
        const value = emf[Name];
        const values = Array.isArray(value) ? (value as number[]) : [value as number];
        totals[Name] =
          (totals[Name] ?? 0) + (Name.endsWith('Ms') ? values.length : values.reduce((a, b) => a + b, 0));
      }
    }
  }
  return totals;
}

async function synth(context: Record<string, string> = {}): Promise<string> {
  const out = mkdtempSync(join(tmpdir(), 'ompf-ops-cdk-'));
  outs.push(out);
  await synthStage({
    repoRoot: ROOT,
    stage: 'dev',
    model: 'mobilenetv2-int8',
    modelsDir: MODELS_DIR,
    outDir: out,
    context,
  });
  return out;
}

async function cli(
  ...args: string[]
): Promise<{ code: number; json: Record<string, unknown>; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [join(ROOT, 'dist', 'bin', 'ompf.js'), '--json', 'cloud', ...args],
      {
        env: { ...process.env, ...cloud.cliEnvironment() },
      },
    );
    return { code: 0, json: JSON.parse(stdout) as Record<string, unknown>, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, json: JSON.parse(e.stdout || '{}') as Record<string, unknown>, stderr: e.stderr };
  }
}

async function indexedKeys(schema = 'public'): Promise<Map<string, string>> {
  const rows = await db.query<{ key: string; etag: string }>(
    `SELECT key, etag FROM ${schema}.images ORDER BY key`,
  );
  return new Map(rows.rows.map((r) => [r.key, r.etag]));
}

async function bucketKeys(): Promise<Map<string, string>> {
  const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  const listed = await cloud.s3Client.send(new ListObjectsV2Command({ Bucket: cloud.bucket }));
  return new Map((listed.Contents ?? []).map((o) => [o.Key!, (o.ETag ?? '').replace(/"/g, '')]));
}

const searchModel = async (image: Buffer) => {
  const reply = await cloud.request({
    method: 'POST',
    path: '/search',
    query: { n: '3' },
    headers: { 'x-api-key': cloud.apiKey, 'content-type': 'image/jpeg' },
    body: image,
  });
  expect(reply.status).toBe(200);
  return (JSON.parse(reply.body.toString('utf8')) as { model: string }).model;
};

beforeAll(async () => {
  const out = await synth();
  cloud = await LocalCloud.start({
    cdkOut: out,
    stackName: 'Ompf-dev',
    repoRoot: ROOT,
    superuserDatabaseUrl: testDatabaseUrl(),
    log: (fn, line) => logs.push({ fn, line }),
  });
  db = new pg.Client({ connectionString: cloud.database.inspectUrl });
  await db.connect();
  expect((await cloud.deploy()).error).toBeUndefined();
  await cloud.drain();
}, 400_000);

afterAll(async () => {
  await db?.end();
  await cloud?.close();
  for (const out of outs) rmSync(out, { recursive: true, force: true });
  outs = [];
});

describe('reconcile', () => {
  it('finds what the event stream missed (restored, overwritten and deleted without events), fixes it, and then has nothing to do', async () => {
    // Prepare: three images through notifications; then changes that raise none.
    for (let i = 0; i < 3; i++) await cloud.put(`cats/${i}.jpg`, photos[i]!);
    await cloud.drain();
    await cloud.withoutNotifications(async () => {
      await cloud.put('restored/a.jpg', photos[3]!);
      await cloud.put('restored/b.jpg', photos[4]!);
      await cloud.put('cats/1.jpg', photos[5]!); // overwritten
      await cloud.remove('cats/2.jpg'); // deleted
      await cloud.put('notes/readme.txt', Buffer.from('not an image'));
    });
    expect([...(await indexedKeys()).keys()]).toEqual(['cats/0.jpg', 'cats/1.jpg', 'cats/2.jpg']);

    // Act: the user's command, through CloudFormation's outputs and Lambda's Invoke.
    const first = await cli('reconcile', '--stage', 'dev');
    await cloud.drain();

    // Assess: counts, and the index equals the bucket's images, ETag for ETag.
    expect({ code: first.code, json: first.json }).toMatchObject({ code: 0 });
    expect(first.json).toMatchObject({
      index: 'active',
      counts: { listed: 4, missing: 2, changed: 1, gone: 1, unchanged: 1, enqueued: 4 },
      switched: false,
    });
    const images = new Map([...(await bucketKeys())].filter(([k]) => k.endsWith('.jpg')));
    expect(await indexedKeys()).toEqual(images);
    expect(cloud.controlPlane.calls).toEqual(['DescribeStacks Ompf-dev', 'Invoke Ompf-dev-Operations']);
    expect(cloud.sqs.calls).toContain('SendMessageBatch');
    // Idempotent: a second run finds nothing (a daily schedule costs a listing, nothing more).
    const second = await cloud.operate({ action: 'reconcile', trigger: 'schedule' });
    expect(second.payload).toMatchObject({ counts: { listed: 4, unchanged: 4, enqueued: 0 } });
    // The indexer's metrics are in its log, in CloudWatch's embedded metric format: 3 images through
    // notifications and 2 through checks indexed, 1 changed, 1 removed, each embedding timed.
    const indexer = metricsOf('IndexImages');
    expect(indexer).toMatchObject({ ImagesIndexed: 6, ImagesRemoved: 1 });
    expect(indexer.EmbeddingMs).toBe(6);
    expect(indexer.DatabaseMs).toBeGreaterThan(6);
    expect(metricsOf('Operations')).toMatchObject({ ReconcileEnqueued: 4 });
  }, 300_000);

  it('refuses an operation it does not know, naming the ones it does', async () => {
    const result = await cloud.operate({ action: 'vacuum' });
    expect(result.error?.errorMessage).toMatch(/Not an operation.*reconcile/);
    const missing = await cli('status', '--stage', 'nope');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr + JSON.stringify(missing.json)).toMatch(/no stack Ompf-nope/);
  });
});

describe('dead letters', () => {
  it('lists what failed with its last error, and a redrive after the fix indexes it', async () => {
    // Prepare: the indexer loses its write privilege (a broken deployment, say): every try fails.
    await db.query('REVOKE INSERT, UPDATE ON public.images FROM ompf_indexer');
    try {
      await cloud.put('later/c.jpg', photos[6]!);
      await cloud.drain();
      expect(cloud.deadLetters.depth).toBe(1);

      // Act: list; nothing moves.
      const listed = await cli('dead-letters', '--stage', 'dev');
      expect(listed.code).toBe(0);
      expect(listed.json).toMatchObject({ total: 1, listed: 1 });
      const [message] = listed.json.messages as { keys: string[]; lastError: string; receiveCount: number }[];
      expect(message!.keys).toEqual(['later/c.jpg']);
      expect(message!.lastError).toMatch(/permission denied/);
      expect(cloud.deadLetters.depth).toBe(1);
    } finally {
      await db.query('GRANT INSERT, UPDATE ON public.images TO ompf_indexer');
    }
    // Act: the fix is in; redrive.
    const redriven = await cli('redrive', '--stage', 'dev');
    expect(redriven.json).toMatchObject({ messages: 1 });
    await cloud.drain();

    // Assess
    expect(cloud.deadLetters.depth).toBe(0);
    expect((await indexedKeys()).has('later/c.jpg')).toBe(true);
  }, 300_000);
});

describe('re-index without downtime', () => {
  it('a transform change builds a new index beside the old one, which answers queries until the new one takes over', async () => {
    const before = await indexedKeys();
    expect(await searchModel(photos[0]!)).toBe('mobilenetv2-int8+whole+gem3+dba3');

    // Act: deploy the stage with another transform (DBA off), in the middle of traffic.
    const out = await synth({ dba: '0' });
    const deployed = await cloud.redeploy(out);
    expect(deployed.error).toBeUndefined();
    expect(deployed.payload).toMatchObject({
      Data: { indexModel: 'mobilenetv2-int8+whole+gem3', indexState: 'building' },
    });
    await cloud.put('live/new.jpg', photos[7]!);
    await cloud.remove('cats/0.jpg');
    await cloud.drain();
    // The old index keeps answering, and saw the deletion; the new upload waits for the new index.
    expect(await searchModel(photos[1]!)).toBe('mobilenetv2-int8+whole+gem3+dba3');
    expect((await indexedKeys()).has('cats/0.jpg')).toBe(false);

    const status = await cli('status', '--stage', 'dev');
    expect(status.json).toMatchObject({
      model: 'mobilenetv2-int8+whole+gem3+dba3',
      reindex: { state: 'building', to: 'mobilenetv2-int8+whole+gem3' },
    });

    // The follow-up schedule fills the new index; queries are answered from the old one meanwhile.
    const fill = await cloud.operate({ action: 'reconcile', trigger: 'follow-up' });
    expect(fill.error).toBeUndefined();
    expect(fill.payload).toMatchObject({ index: 'building', switched: false });
    await cloud.drain();
    expect(await searchModel(photos[2]!)).toBe('mobilenetv2-int8+whole+gem3+dba3');
    const caughtUp = await cloud.operate({ action: 'reconcile', trigger: 'follow-up' });
    expect(caughtUp.payload).toMatchObject({ index: 'building', counts: { enqueued: 0 }, switched: true });

    // Assess: the new index answers (once the query containers' catalogue copy expires), with every image.
    await new Promise((done) => setTimeout(done, 5_500));
    expect(await searchModel(photos[3]!)).toBe('mobilenetv2-int8+whole+gem3');
    const [entry] = (
      await db.query<{ schema_name: string }>("SELECT schema_name FROM ompf_indexes WHERE state = 'active'")
    ).rows;
    const images = new Map([...(await bucketKeys())].filter(([k]) => k.endsWith('.jpg')));
    expect(await indexedKeys(entry!.schema_name)).toEqual(images);
    expect(before.size).toBeGreaterThan(0);
    // The old index is dropped by maintenance once its grace period is over (simulated here).
    await db.query("UPDATE ompf_indexes SET retired_at = now() - interval '1 hour' WHERE state = 'retired'");
    const maintained = await cloud.functions.migrate.invoke({ action: 'maintain' });
    expect(maintained.payload).toMatchObject({
      Data: { droppedIndexes: 'mobilenetv2-int8+whole+gem3+dba3' },
    });
    const [{ present }] = (
      await db.query<{ present: boolean }>("SELECT to_regclass('public.images') IS NOT NULL AS present")
    ).rows as [{ present: boolean }];
    expect(present).toBe(false);
    expect(await searchModel(photos[4]!)).toBe('mobilenetv2-int8+whole+gem3');
  }, 600_000);
});

describe('duplicates in the cloud', () => {
  it('answers GET /duplicates and GET /images/{key}/duplicates through the API, as the local server does', async () => {
    // Prepare: the same photo under two keys.
    await cloud.put('dupes/a.jpg', photos[4]!);
    await cloud.put('dupes/b copy.jpg', photos[4]!);
    await cloud.drain();
    const get = (path: string) =>
      cloud.request({
        method: 'GET',
        path,
        query: {},
        headers: { 'x-api-key': cloud.apiKey },
        body: undefined,
      });
    // Act
    const all = await get('/duplicates');
    const one = await get(`/images/${encodeURIComponent('dupes/a.jpg')}/duplicates`);
    // Assess
    expect(all.status).toBe(200);
    type Group = { members: { key: string; exact: boolean; url: string }[] };
    const groups = (JSON.parse(all.body.toString('utf8')) as { groups: Group[] }).groups;
    const group = groups.find((g) => g.members.some((m) => m.key === 'dupes/a.jpg'));
    expect(group?.members.filter((m) => m.key.startsWith('dupes/')).every((m) => m.exact)).toBe(true);
    expect(group?.members.map((m) => m.key)).toEqual(
      expect.arrayContaining(['dupes/a.jpg', 'dupes/b copy.jpg']),
    );
    // Presigned GET URLs of the bucket, as search results have.
    expect(group?.members[0]?.url).toMatch(/X-Amz-Signature=/);
    expect(one.status).toBe(200);
    expect((JSON.parse(one.body.toString('utf8')) as Group).members.map((m) => m.key)).toContain(
      'dupes/b copy.jpg',
    );
  }, 120_000);
});
