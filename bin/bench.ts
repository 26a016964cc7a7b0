#!/usr/bin/env node
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { withPeakRss } from '../lib/bench/measure';
import { toMarkdown, toSvg, type BenchResult } from '../lib/bench/report';
import * as stages from '../lib/bench/stages';

/**
 * `npm run bench`: measure every stage against its physical limit on this machine. Run it alone:
 * onnxruntime's thread pool slows down several-fold when another process holds a core, so compare
 * ratios measured within one run, not figures across runs.
 */
const program = new Command('bench')
  .description(
    'Measure inference, preprocessing, the indexing pipeline and the store; write JSON, Markdown and an SVG chart.',
  )
  .addOption(
    new Option('--mode <mode>', 'quick (under 5 minutes) or full (100k vectors, longer runs)')
      .choices(['quick', 'full'])
      .default('quick'),
  )
  .option('--out <dir>', 'output folder', 'bench-results')
  .option(
    '--models-dir <dir>',
    'models folder',
    process.env.OMPF_MODELS_DIR ?? resolve('..', 'shared', 'models'),
  )
  .option(
    '--dataset-dir <dir>',
    'labelled image set folder',
    process.env.OMPF_DATASET_DIR ?? resolve('..', 'shared', 'data'),
  )
  .option(
    '--database-url <url>',
    'PostgreSQL + pgvector to measure beside PGlite',
    process.env.OMPF_BENCH_DATABASE_URL ?? process.env.OMPF_TEST_DATABASE_URL,
  );

async function main(): Promise<void> {
  program.parse();
  const options = program.opts<{
    mode: 'quick' | 'full';
    out: string;
    modelsDir: string;
    datasetDir: string;
    databaseUrl?: string;
  }>();
  const settings: stages.BenchSettings = {
    quick: options.mode === 'quick',
    modelsDir: options.modelsDir,
    datasetDir: options.datasetDir,
    databaseUrl: options.databaseUrl,
    log: (line) => process.stderr.write(`${line}\n`),
  };
  const started = Date.now();
  const peakRssMiB: Record<string, number> = {};
  const stage = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    settings.log(`${name}...`);
    const { result, peakRssMiB: peak } = await withPeakRss(work);
    peakRssMiB[name] = peak;
    return result;
  };
  const machine = await stage('machine', () => stages.machine(settings));
  const inference = await stage('inference', () => stages.inference(settings, machine.matMulGflops));
  const preprocessing = await stage('preprocessing', () => stages.preprocessing(settings));
  const interference = await stage('interference', () => stages.interference(settings));
  const pipeline = await stage('pipeline', () => stages.pipeline(settings));
  const store = await stage('store', () => stages.storeAtScale(settings));
  const recall = await stage('recall', () => stages.recall(settings));
  const localQuery = await stage('localQuery', () => stages.localQuery(settings));
  const duplicates = await stage('duplicates', () => stages.duplicateListing(settings));
  const result: BenchResult = {
    startedAt: new Date(started).toISOString(),
    mode: options.mode,
    seconds: (Date.now() - started) / 1000,
    machine,
    inference,
    preprocessing,
    interference,
    pipeline,
    store,
    recall,
    localQuery,
    duplicates,
    peakRssMiB,
  };
  mkdirSync(options.out, { recursive: true });
  const markdown = toMarkdown(result);
  writeFileSync(join(options.out, `${options.mode}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(options.out, `${options.mode}.md`), markdown);
  writeFileSync(join(options.out, `${options.mode}.svg`), toSvg(result));
  process.stdout.write(markdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
