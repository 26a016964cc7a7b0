#!/usr/bin/env node
/**
 * `npm run lambda:local`: a stage of the cloud product on this machine, run the way Lambda runs it
 * (lib/lambda-local: the synthesized bundles and layers on Node.js 24, the Runtime API, S3 on
 * loopback, the queue and its event source mapping, the REST API with its key, a TLS PostgreSQL).
 *
 *   npm run lambda:local -- serve [--stage dev] [--model NAME] [--port 3100]   (the default command)
 *   npm run lambda:local -- measure [--model mobilenetv2-int8|resnet50-layers ...]
 *
 * Root only (mount namespaces). A PostgreSQL + pgvector cluster comes from --database-url or
 * scripts/ci/start-postgres.sh (port 54330 by default, apart from the tests' 54329).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { REPO_ROOT } from '../lib/infra/packaging';
import { LocalCloud } from '../lib/lambda-local/local-cloud';
import { lambdaMarkdown, measureLambda, type LambdaMeasurement } from '../lib/lambda-local/measure';
import { synthStage } from '../lib/lambda-local/synth';

const defaultModels = process.env.OMPF_MODELS_DIR ?? resolve(REPO_ROOT, '..', 'shared', 'models');
const defaultDataset = process.env.OMPF_DATASET_DIR ?? resolve(REPO_ROOT, '..', 'shared', 'data');

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'The Lambda harness needs root: each function runs in a mount namespace of its own (unshare -m), with its layers at /opt.',
    );
  }
}

/** The cluster to use: --database-url, or one started (or found running) by start-postgres.sh. */
function databaseUrl(given: string | undefined, port: string): string {
  if (given) return given;
  process.stderr.write(
    `starting PostgreSQL + pgvector on 127.0.0.1:${port} (scripts/ci/start-postgres.sh)\n`,
  );
  const output = execFileSync('bash', [join(REPO_ROOT, 'scripts', 'ci', 'start-postgres.sh')], {
    env: { ...process.env, OMPF_PG_PORT: port },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return output.trim().split('\n').pop()!;
}

const program = new Command('lambda:local').description(
  'Run a stage of the cloud product locally, as Lambda runs it (the synthesized artifacts on Node.js 24).',
);

program
  .command('serve', { isDefault: true })
  .description('Synthesize a stage, deploy it locally, and serve its API and bucket until Ctrl-C.')
  .option('--stage <name>', 'stage of cdk.json', 'dev')
  .option('--model <name>', "model (a built-in name or a spec .json); the stage's own by default")
  .option('--models-dir <dir>', 'where the model file is read from at synth', defaultModels)
  .option('--port <port>', 'port of the local API endpoint (0: any free port)', '3100')
  .option('--database-url <url>', 'superuser URL of a PostgreSQL + pgvector cluster (else one is started)')
  .option('--pg-port <port>', 'port for the cluster started when --database-url is not given', '54330')
  .option('--quiet', "do not print the functions' log lines")
  .action(
    async (options: {
      stage: string;
      model?: string;
      modelsDir: string;
      port: string;
      databaseUrl?: string;
      pgPort: string;
      quiet?: boolean;
    }) => {
      requireRoot();
      const out = mkdtempSync(join(tmpdir(), 'ompf-lambda-local-'));
      process.stderr.write(`cdk synth -c stage=${options.stage} -o ${out}\n`);
      const stackName = await synthStage({
        repoRoot: REPO_ROOT,
        stage: options.stage,
        model: options.model,
        modelsDir: resolve(options.modelsDir),
        outDir: out,
      });
      const cloud = await LocalCloud.start({
        cdkOut: out,
        stackName,
        repoRoot: REPO_ROOT,
        superuserDatabaseUrl: databaseUrl(options.databaseUrl, options.pgPort),
        log: options.quiet ? undefined : (fn, line) => process.stdout.write(`[${fn}] ${line}\n`),
      });
      const deployed = await cloud.deploy();
      if (deployed.error) throw new Error(`The migrate step failed: ${deployed.error.errorMessage}`);
      const stageName = cloud.assembly.restApi().stageName;
      const server = createServer((request, response) => {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => {
          const url = new URL(request.url ?? '/', 'http://localhost');
          const prefix = `/${stageName}`;
          const path = url.pathname.startsWith(`${prefix}/`)
            ? url.pathname.slice(prefix.length)
            : url.pathname;
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(request.headers)) {
            if (typeof value === 'string') headers[name] = value;
          }
          cloud
            .request({
              method: request.method ?? 'GET',
              path,
              query: Object.fromEntries(url.searchParams),
              headers,
              body: chunks.length ? Buffer.concat(chunks) : undefined,
            })
            .then(
              (reply) => {
                response.writeHead(reply.status, reply.headers);
                response.end(reply.body);
              },
              (error: unknown) => {
                response.writeHead(500, { 'content-type': 'application/json' });
                response.end(JSON.stringify({ message: (error as Error).message }));
              },
            );
        });
      });
      await new Promise<void>((done) => server.listen(Number(options.port), '127.0.0.1', done));
      const port = (server.address() as AddressInfo).port;
      // The event source mapping polls continuously (one batch per poller at a time).
      let stopping = false;
      const poll = async () => {
        while (!stopping) {
          const outcome = await cloud.eventSource.pollOnce();
          if (outcome) {
            process.stderr.write(
              `indexer: batch of ${outcome.records}, ${outcome.failed.length} failed${outcome.functionError ? ` (${outcome.functionError})` : ''}\n`,
            );
          } else await new Promise((done) => setTimeout(done, 500));
        }
      };
      // As many pollers as the mapping's maximum concurrency (each gets its own execution environment).
      const mapping = cloud.assembly.eventSourceMapping(cloud.functions.indexer.definition.logicalId);
      const polling = Promise.all(Array.from({ length: mapping.maximumConcurrency ?? 1 }, () => poll()));
      const api = `http://127.0.0.1:${port}/${stageName}`;
      process.stdout.write(
        [
          '',
          `${stackName} runs locally (the functions on Node.js 24, from ${out}).`,
          `  API:       ${api}    x-api-key: ${cloud.apiKey}`,
          `  bucket:    ${cloud.bucket} at ${cloud.s3.endpoint} (path-style; access key S3RVER, secret S3RVER)`,
          `  database:  ${cloud.database.inspectUrl}`,
          '',
          '  Index a photo:',
          `    AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER aws --endpoint-url ${cloud.s3.endpoint} s3 cp photo.jpg s3://${cloud.bucket}/photo.jpg`,
          '  Search with one:',
          `    curl -sS -X POST -H 'x-api-key: ${cloud.apiKey}' -H 'content-type: image/jpeg' --data-binary @photo.jpg '${api}/search?n=5'`,
          '',
          'Ctrl-C (or SIGTERM) stops it.',
          '',
        ].join('\n'),
      );
      await new Promise<void>((done) => {
        process.once('SIGINT', () => done());
        process.once('SIGTERM', () => done());
      });
      stopping = true;
      await polling;
      server.close();
      await cloud.close();
      rmSync(out, { recursive: true, force: true });
    },
  );

program
  .command('measure')
  .description(
    'Measure cold starts, warm durations, memory and package size of each function; write bench-results/lambda.{json,md}.',
  )
  .addOption(
    new Option('--model <names...>', 'models to measure')
      .choices(['mobilenetv2-int8', 'resnet50-layers', 'resnet50', 'resnet50-int8'])
      .default(['mobilenetv2-int8', 'resnet50-layers']),
  )
  .option('--stage <name>', 'stage of cdk.json (its memory sizes)', 'dev')
  .option('--images <n>', 'photos to index', '40')
  .option('--queries <n>', 'searches by image', '20')
  .option('--cold-starts <n>', 'cold starts per function', '5')
  .option('--models-dir <dir>', 'models folder', defaultModels)
  .option('--dataset-dir <dir>', 'labelled image set folder', defaultDataset)
  .option('--database-url <url>', 'superuser URL of a PostgreSQL + pgvector cluster (else one is started)')
  .option('--pg-port <port>', 'port for the cluster started when --database-url is not given', '54330')
  .option('--out <dir>', 'output folder', 'bench-results')
  .action(
    async (options: {
      stage: string;
      model: string[];
      images: string;
      queries: string;
      coldStarts: string;
      modelsDir: string;
      datasetDir: string;
      databaseUrl?: string;
      pgPort: string;
      out: string;
    }) => {
      requireRoot();
      const url = databaseUrl(options.databaseUrl, options.pgPort);
      const jsonFile = join(options.out, 'lambda.json');
      const previous = existsSync(jsonFile)
        ? (JSON.parse(readFileSync(jsonFile, 'utf8')) as LambdaMeasurement[])
        : [];
      const results = new Map(previous.map((r) => [`${r.stage}/${r.model}`, r]));
      for (const model of options.model) {
        const result = await measureLambda({
          repoRoot: REPO_ROOT,
          stage: options.stage,
          model,
          modelsDir: resolve(options.modelsDir),
          datasetDir: resolve(options.datasetDir),
          superuserDatabaseUrl: url,
          images: Number(options.images),
          queries: Number(options.queries),
          coldStarts: Number(options.coldStarts),
          log: (line) => process.stderr.write(`${model}: ${line}\n`),
        });
        results.set(`${options.stage}/${model}`, result);
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      }
      mkdirSync(options.out, { recursive: true });
      const all = [...results.values()];
      writeFileSync(jsonFile, `${JSON.stringify(all, null, 2)}\n`);
      writeFileSync(join(options.out, 'lambda.md'), lambdaMarkdown(all));
      process.stderr.write(`wrote ${jsonFile} and ${join(options.out, 'lambda.md')}\n`);
    },
  );

program.parseAsync().catch((error: unknown) => {
  process.stderr.write(`lambda:local: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
