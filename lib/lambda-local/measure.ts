import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODELS } from '../adapters/models/model-registry';
import { percentiles, round, type Percentiles } from '../bench/measure';
import { materializedFloat } from '../bench/int8-replica';
import { RESNET50_LAYERS } from '../bench/stages';
import { LocalCloud } from './local-cloud';
import type { LocalFunction } from './local-function';
import { synthStage } from './synth';

/**
 * What the deployed functions cost, measured through the harness (cold start, warm duration, memory,
 * package size), for one model. "resnet50-layers" is light_resnet50.onnx, the ResNet50 architecture,
 * with its weights written out (the real resnet50 file cannot be downloaded here): the same layers
 * and a file of the same size, shipped as a custom model.
 */
export interface MeasureOptions {
  readonly repoRoot: string;
  /** The cdk.json stage whose memory sizes and settings are measured. */
  readonly stage: string;
  readonly model: string;
  readonly modelsDir: string;
  readonly datasetDir: string;
  readonly superuserDatabaseUrl: string;
  readonly images: number;
  readonly queries: number;
  readonly coldStarts: number;
  readonly log: (line: string) => void;
}

export interface FunctionFigures {
  readonly memorySizeMiB: number;
  /** Peak resident memory of any of its environments. */
  readonly maxMemoryMiB: number;
  readonly memoryShare: number;
  /** Runtime start and module load, until the first /next. */
  readonly initMs: Percentiles;
  /** The first invocation of an environment (opens the model session and the pool). */
  readonly firstInvocationMs: Percentiles;
  /** initMs + firstInvocationMs, per cold start. */
  readonly coldStartMs: Percentiles;
  readonly warmMs: Percentiles;
  readonly unzippedBytes: number;
}

export interface LambdaMeasurement {
  readonly stage: string;
  readonly model: string;
  readonly modelFileBytes: number;
  readonly at: string;
  readonly machine: string;
  readonly indexer: FunctionFigures & { readonly warmPerImageMs: number; readonly batchSize: number };
  readonly query: FunctionFigures;
  readonly migrate: Pick<
    FunctionFigures,
    'memorySizeMiB' | 'maxMemoryMiB' | 'memoryShare' | 'coldStartMs' | 'unzippedBytes'
  >;
  readonly notes: readonly string[];
}

/** Lambda: 250 MB unzipped for a function and all its layers. */
export const LAMBDA_UNZIPPED_LIMIT = 262_144_000;

/** Bytes of a file, or of every file under a folder (what a layer or bundle takes unzipped). */
export function bytesUnder(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.size;
  return readdirSync(path).reduce((sum, name) => sum + bytesUnder(join(path, name)), 0);
}

function figures(fn: LocalFunction): FunctionFigures {
  const cold = fn.invocations.filter((i) => i.cold && !i.error);
  const warm = fn.invocations.filter((i) => !i.cold && !i.error);
  const maxMemoryMiB = Math.max(0, ...fn.invocations.map((i) => i.maxMemoryMiB));
  const d = fn.definition;
  return {
    memorySizeMiB: d.memoryMiB,
    maxMemoryMiB,
    memoryShare: round(maxMemoryMiB / d.memoryMiB, 3),
    initMs: percentiles(cold.map((i) => i.initMs ?? 0)),
    firstInvocationMs: percentiles(cold.map((i) => i.durationMs)),
    coldStartMs: percentiles(cold.map((i) => (i.initMs ?? 0) + i.durationMs)),
    warmMs: percentiles(warm.map((i) => i.durationMs)),
    unzippedBytes: bytesUnder(d.codeDir) + d.layerDirs.reduce((sum, dir) => sum + bytesUnder(dir), 0),
  };
}

function photoFiles(datasetDir: string, count: number): string[] {
  const root = join(datasetDir, 'caltech101-animals-dev');
  const classes = readdirSync(root).sort();
  const files: string[] = [];
  for (let i = 0; files.length < count; i++) {
    const cls = classes[i % classes.length]!;
    const names = readdirSync(join(root, cls)).sort();
    const name = names[Math.floor(i / classes.length)];
    if (name) files.push(join(root, cls, name));
    if (i > count * classes.length) break;
  }
  return files;
}

export async function measureLambda(options: MeasureOptions): Promise<LambdaMeasurement> {
  const work = mkdtempSync(join(tmpdir(), 'ompf-lambda-measure-'));
  const notes: string[] = [];
  try {
    let model = options.model;
    let modelFileBytes: number;
    if (model === RESNET50_LAYERS.id) {
      // The ResNet50 layers with their weights written out (materializedFloat): a file of the real
      // model's size, so the layer, the checksum and the session load cost what resnet50's do.
      const bytes = materializedFloat(readFileSync(join(options.modelsDir, RESNET50_LAYERS.file)));
      const file = join(work, 'resnet50-layers.onnx');
      writeFileSync(file, bytes);
      const specFile = join(work, 'resnet50-layers.json');
      writeFileSync(
        specFile,
        JSON.stringify({
          id: RESNET50_LAYERS.id,
          description: RESNET50_LAYERS.description,
          file,
          sha256: createHash('sha256').update(bytes).digest('hex'),
          dimension: RESNET50_LAYERS.dimension,
        }),
      );
      model = specFile;
      modelFileBytes = bytes.length;
      notes.push(
        `ResNet50 layers: light_resnet50.onnx (the real architecture) with its weights written out as float32 initializers, a ${modelFileBytes.toLocaleString('en')}-byte file (resnet50's is ${BUILTIN_MODELS.resnet50!.accepted[0].sizeBytes!.toLocaleString('en')}); the real file cannot be downloaded here.`,
      );
    } else {
      const spec = BUILTIN_MODELS[model];
      if (!spec) throw new Error(`Measure a built-in model or ${RESNET50_LAYERS.id}, not '${model}'.`);
      modelFileBytes = statSync(join(options.modelsDir, spec.file)).size;
    }
    options.log(`synth (stage ${options.stage}, model ${options.model})`);
    const stackName = await synthStage({
      repoRoot: options.repoRoot,
      stage: options.stage,
      model,
      modelsDir: options.modelsDir,
      outDir: join(work, 'cdk.out'),
    });
    const cloud = await LocalCloud.start({
      cdkOut: join(work, 'cdk.out'),
      stackName,
      repoRoot: options.repoRoot,
      superuserDatabaseUrl: options.superuserDatabaseUrl,
      // A function's errors are shown (a measurement of failing functions would mean nothing).
      log: (fn, line) => {
        if (/"level":"ERROR"|\tERROR\t/.test(line)) options.log(`${fn}: ${line.slice(0, 600)}`);
      },
    });
    try {
      const { indexer, query, migrate } = cloud.functions;
      options.log('deploy (migrate)');
      const deployed = await cloud.deploy();
      if (deployed.error) throw new Error(`deploy failed: ${deployed.error.errorMessage}`);
      const files = photoFiles(options.datasetDir, options.images);
      options.log(`index ${files.length} photos`);
      for (const file of files)
        await cloud.put(`gallery/${file.split('/').slice(-2).join('/')}`, readFileSync(file));
      const batches = await cloud.drain();
      if (batches.some((b) => b.failed.length > 0 || b.functionError)) {
        throw new Error(`indexing failed: ${JSON.stringify(batches.filter((b) => b.failed.length > 0))}`);
      }
      // Per image: warm batches of the first drain (one invocation per batch, in order), by record count.
      const drained = indexer.invocations.slice(0, batches.length);
      const warm = drained.map((i, n) => ({ i, records: batches[n]!.records })).filter(({ i }) => !i.cold);
      const perImage =
        warm.reduce((sum, { i }) => sum + i.durationMs, 0) /
        warm.reduce((sum, { records }) => sum + records, 0);
      options.log(`query ${options.queries} times`);
      const photosForQuery = files.slice(0, options.queries);
      for (const file of photosForQuery) {
        const reply = await cloud.request({
          method: 'POST',
          path: '/search',
          query: { n: '10' },
          headers: { 'x-api-key': cloud.apiKey, 'content-type': 'image/jpeg' },
          body: readFileSync(file),
        });
        if (reply.status !== 200) throw new Error(`query answered ${reply.status}: ${reply.body.toString()}`);
      }
      // More cold starts: a new environment each time (what a deployment or a scale-out does).
      options.log(`${options.coldStarts} more cold starts per function`);
      for (let i = 1; i < options.coldStarts; i++) {
        await query.reset();
        await cloud.request({
          method: 'POST',
          path: '/search',
          query: { n: '10' },
          headers: { 'x-api-key': cloud.apiKey, 'content-type': 'image/jpeg' },
          body: readFileSync(files[i % files.length]!),
        });
        await indexer.reset();
        await cloud.put(`cold/${i}.jpg`, readFileSync(files[i % files.length]!));
        await cloud.drain();
        await migrate.reset();
        await cloud.deploy();
      }
      const indexerFigures = figures(indexer);
      const queryFigures = figures(query);
      const migrateFigures = figures(migrate);
      return {
        stage: options.stage,
        model: options.model,
        modelFileBytes,
        at: new Date().toISOString(),
        machine: machineName(),
        indexer: {
          ...indexerFigures,

          warmPerImageMs: round(perImage),
          batchSize: cloud.batchSize,
        },
        query: queryFigures,
        migrate: {
          memorySizeMiB: migrateFigures.memorySizeMiB,
          maxMemoryMiB: migrateFigures.maxMemoryMiB,
          memoryShare: migrateFigures.memoryShare,
          coldStartMs: migrateFigures.coldStartMs,
          unzippedBytes: migrateFigures.unzippedBytes,
        },
        notes,
      };
    } finally {
      await cloud.close();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function machineName(): string {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const name = /model name\s*:\s*(.+)/.exec(info)?.[1] ?? 'unknown CPU';
    const cores = (info.match(/^processor\s*:/gm) ?? []).length;
    return `${name}, ${cores} cores`;
  } catch {
    return 'unknown machine';
  }
}

const ms = (p: Percentiles) => `${Math.round(p.p50)} (p95 ${Math.round(p.p95)})`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** The Markdown table of bench-results/lambda.md. */
export function lambdaMarkdown(results: readonly LambdaMeasurement[]): string {
  const lines = [
    '# Lambda functions through the local runtime harness',
    '',
    'Measured with `npm run lambda:local -- measure` (lib/lambda-local): the synthesized bundles and layers on Node.js 24',
    "through the Runtime API, in a mount namespace; milliseconds, p50 (p95). The function gets the machine's cores, not",
    "Lambda's share for its memory size, and no layer download or unzip is counted: on AWS, cold starts are longer.",
    '',
    '| stage | model | function | memory used / size | cold start = init + first invocation | warm invocation | unzipped with layers (limit 250 MB) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const row = (name: string, f: FunctionFigures, warm: string) =>
      lines.push(
        `| ${r.stage} | ${r.model} | ${name} | ${Math.round(f.maxMemoryMiB)} / ${f.memorySizeMiB} MiB (${Math.round(f.memoryShare * 100)} %) | ${ms(f.coldStartMs)} = ${ms(f.initMs)} + ${ms(f.firstInvocationMs)} | ${warm} | ${mb(f.unzippedBytes)} |`,
      );
    row(
      'indexer',
      r.indexer,
      `${ms(r.indexer.warmMs)} per batch of ${r.indexer.batchSize}, ${Math.round(r.indexer.warmPerImageMs)} per image`,
    );
    row('query (POST /search, image)', r.query, ms(r.query.warmMs));
    lines.push(
      `| ${r.stage} | ${r.model} | migrate | ${Math.round(r.migrate.maxMemoryMiB)} / ${r.migrate.memorySizeMiB} MiB (${Math.round(r.migrate.memoryShare * 100)} %) | ${ms(r.migrate.coldStartMs)} | | ${mb(r.migrate.unzippedBytes)} |`,
    );
  }
  lines.push('');
  for (const r of results) {
    lines.push(`- ${r.stage} / ${r.model}: measured ${r.at} on ${r.machine}.`);
    for (const note of r.notes) lines.push(`  ${note}`);
  }
  return `${lines.join('\n')}\n`;
}
