import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import pg from 'pg';
import { REPO_ROOT } from '../infra/packaging';
import { checkedRestart } from './in-process-target';
import type { BatchFaults, BatchResult, FaultCounts, SoakTarget } from './soak-target';

/**
 * The deployed indexing function through the Lambda runtime harness (lib/lambda-local): the dev
 * stage synthesized with mobilenetv2-int8, its bundle and layers on Node.js 24 through the Runtime
 * API, against s3rver and a TLS PostgreSQL + pgvector as the stage reaches them. Faults, each the
 * real thing: a crash kills the function's process mid-batch (SIGKILL; the next batch is a cold
 * start); S3 errors and slow answers come from a proxy between the function and s3rver; a dropped
 * connection is pg_terminate_backend of the function's sessions mid-batch; a restart is
 * `restartCommand` (pg_ctl restart) while the batch runs.
 */
export interface HarnessOptions {
  readonly modelsDir: string;
  /** Superuser URL of the cluster (the harness makes database `ompf` on it). */
  readonly databaseUrl: string;
  readonly restartCommand?: string | undefined;
  readonly rand: () => number;
  readonly log: (line: string) => void;
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * Resolves true as soon as the indexer's role has a session inside a statement or a transaction (so a
 * restart now terminates work in flight), false when `running()` turns false first.
 */
async function whileIndexerInDatabase(superuser: pg.Pool, running: () => boolean): Promise<boolean> {
  while (running()) {
    // A dropped-connection fault may end this pool's session too: the next poll reconnects.
    const busy = await superuser
      .query<{ busy: boolean }>(
        `SELECT count(*) > 0 AS busy FROM pg_stat_activity
        WHERE usename = 'ompf_indexer' AND state IN ('active', 'idle in transaction')`,
      )
      .then(
        (r) => r.rows[0]?.busy === true,
        () => false,
      );
    if (busy && running()) return true;
    await sleep(2);
  }
  return false;
}

interface FaultProxy {
  readonly endpoint: string;
  failNext: Set<string>;
  close(): Promise<void>;
}

/** Forwards to `target` untouched (the Host header too, so SigV4 signatures still verify). */
async function startFaultProxy(
  target: string,
  bucket: () => string,
  counts: FaultCounts,
  rand: () => number,
): Promise<FaultProxy> {
  const upstream = new URL(target);
  const proxy: FaultProxy = { endpoint: '', failNext: new Set(), close: () => Promise.resolve() };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://local').pathname;
      const prefix = `/${bucket()}/`;
      const key = path.startsWith(prefix) ? decodeURIComponent(path.slice(prefix.length)) : '';
      if (req.method === 'GET' && key) {
        if (proxy.failNext.delete(key)) {
          counts.transientS3Error += 1;
          req.resume();
          res.writeHead(503, { 'content-type': 'application/xml' });
          res.end(
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
          );
          return;
        }
        if (rand() < 0.08) {
          counts.slowResponse += 1;
          await sleep(20 + Math.floor(rand() * 180));
        }
      }
      const forward = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    })();
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  Object.assign(proxy, {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  });
  return proxy;
}

export async function harnessTarget(options: HarnessOptions): Promise<SoakTarget> {
  const { LocalCloud } = await import('../lambda-local/local-cloud');
  const { synthStage } = await import('../lambda-local/synth');
  const { PostgresSqlClient } = await import('../adapters/store/sql-client');
  const { PgVectorStore } = await import('../adapters/store/pg-vector-store');
  const { resolveModelSpec } = await import('../adapters/models/model-registry');
  const { loadConfig } = await import('../runtime/config');
  const { storeOptions } = await import('../runtime/store-identity');
  const { rand, log } = options;
  const pick = (n: number) => Math.floor(rand() * n);
  const counts: FaultCounts = { transientS3Error: 0, slowResponse: 0, databaseDrop: 0 };
  const model = 'mobilenetv2-int8';

  const out = mkdtempSync(join(tmpdir(), 'ompf-soak-cdk-'));
  log('soak: cdk synth -c stage=dev (mobilenetv2-int8) for the Lambda harness');
  const stackName = await synthStage({
    repoRoot: REPO_ROOT,
    stage: 'dev',
    model,
    modelsDir: options.modelsDir,
    outDir: out,
  });
  let proxy: FaultProxy | undefined;
  let bucketName = '';
  const cloud = await LocalCloud.start({
    cdkOut: out,
    stackName,
    repoRoot: REPO_ROOT,
    superuserDatabaseUrl: options.databaseUrl,
    // The driver sends the notifications itself (duplicated, reordered, poisoned).
    notifications: false,
    functionS3Endpoint: async (endpoint) => {
      proxy = await startFaultProxy(endpoint, () => bucketName, counts, rand);
      return proxy.endpoint;
    },
  });
  bucketName = cloud.bucket;
  const deployed = await cloud.deploy();
  if (deployed.error) throw new Error(`soak: the migrate step failed: ${deployed.error.errorMessage}`);
  // The queue is the driver's: S3's test event, sent at deploy, is dropped.
  cloud.queue.receive(100).forEach((record) => cloud.queue.delete(record.receiptHandle));
  const config = loadConfig({ OMPF_MODEL: model, OMPF_MODELS_DIR: options.modelsDir });
  const sql = PostgresSqlClient.connect(cloud.database.inspectUrl, { maxConnections: 1 });
  const store = await PgVectorStore.open(sql, storeOptions(resolveModelSpec(model), config));
  // A pool (not one client): the injected restarts end its sessions too; an idle one's error is expected.
  const superuser = new pg.Pool({ connectionString: cloud.database.inspectUrl, max: 1 });
  superuser.on('error', () => undefined);
  const restartServer = options.restartCommand
    ? checkedRestart(cloud.database.inspectUrl, options.restartCommand)
    : undefined;
  if (!restartServer) log('soak: no --restart-command: database restarts are not injected');
  const indexer = cloud.functions.indexer;

  return {
    engine: 'postgresql',
    runtime: `Lambda harness (Node.js 24, the ${stackName} bundle and layers)`,
    bucket: cloud.bucket,
    admin: cloud.s3Client,
    store,
    config,
    counts,
    canRestart: restartServer !== undefined,
    async invoke(records: SQSRecord[], faults: BatchFaults): Promise<BatchResult> {
      proxy!.failNext = new Set(faults.failGets);
      const timers: NodeJS.Timeout[] = [];
      let crashed = false;
      if (faults.crash) {
        timers.push(setTimeout(() => (crashed = indexer.crash() > 0), 20 + pick(250)));
      }
      let invoking = true;
      const inFlight = () => invoking;
      let dropping: Promise<void> | undefined;
      if (faults.dropConnection) {
        // Ended while the indexer works in the database (a timer could fire after the batch is done).
        dropping = whileIndexerInDatabase(superuser, inFlight).then(async (seen) => {
          if (!seen) return;
          const { rows } = await superuser.query<{ ok: boolean }>(
            "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE usename = 'ompf_indexer'",
          );
          if (rows.some((row) => row.ok)) counts.databaseDrop += 1;
        });
        dropping.catch(() => undefined);
      }
      let restarting: Promise<boolean> | undefined;
      if (faults.restart && restartServer) {
        // Mid-batch for certain, not by a timer: a timer can fire after a short batch has finished, and
        // then the restart tests nothing (CI once saw every restart of a run land between batches).
        restarting = whileIndexerInDatabase(superuser, inFlight).then((seen) =>
          seen ? restartServer() : false,
        );
        restarting.catch(() => undefined);
      }
      const result = await indexer.invoke({ Records: records }).finally(() => (invoking = false));
      timers.forEach(clearTimeout);
      await dropping?.catch(() => undefined);
      const restarted = restarting ? await restarting : false;
      proxy!.failNext.clear();
      const all = new Set(records.map((r) => r.messageId));
      if (result.error) return { failed: all, restarted, crashed };
      const response = result.payload as SQSBatchResponse;
      return { failed: new Set(response.batchItemFailures.map((f) => f.itemIdentifier)), restarted, crashed };
    },
    async close() {
      await superuser.end();
      await sql.close();
      await cloud.close();
      await proxy?.close();
      rmSync(out, { recursive: true, force: true });
    },
  };
}
