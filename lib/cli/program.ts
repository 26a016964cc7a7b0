import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { scanGallery } from '../adapters/fs/fs-gallery';
import { pullModel } from '../adapters/models/model-download';
import {
  installedModels,
  modelDownloadUrls,
  resolveModelSpec,
  verifyModelFile,
} from '../adapters/models/model-registry';
import { InvalidInputError, NotFoundError } from '../core/errors';
import { EVAL_CONFIGS, findEvalConfigs } from '../core/evaluation';
import { runEvaluation } from '../core/evaluation-runner';
import { DEFAULT_RERANK_CANDIDATES, MAX_RERANK_CANDIDATES, rerankWith } from '../core/reranking';
import type { DistanceMetric } from '../core/ports';
import { DEFAULT_RESULTS, MAX_QUERY_EXPANSION, MAX_RESULTS, MIN_RESULTS } from '../core/search';
import { loadConfig, type Config } from '../runtime/config';
import { openEvaluation, openLocalEngine, openStore } from '../runtime/local';
import { startLocalServer } from '../server/serve';
import { addCloudCommands } from './cloud-commands';
import { addDuplicatesCommand } from './duplicates-command';
import { printJson, progressBar, reportError, table } from './output';

interface GlobalOptions {
  model?: string;
  json?: boolean;
}

function parseQe(value: string): number {
  const k = Number(value);
  if (!/^\d{1,2}$/.test(value) || k > MAX_QUERY_EXPANSION) {
    throw new InvalidArgumentError(`k must be a whole number from 0 to ${MAX_QUERY_EXPANSION}.`);
  }
  return k;
}

function parseRerank(value: string): number {
  const k = Number(value);
  if (!/^\d{1,3}$/.test(value) || k > MAX_RERANK_CANDIDATES) {
    throw new InvalidArgumentError(
      `the candidate count must be a whole number from 0 to ${MAX_RERANK_CANDIDATES}.`,
    );
  }
  return k;
}

function parseN(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < MIN_RESULTS || n > MAX_RESULTS) {
    throw new InvalidArgumentError(`N must be a whole number from ${MIN_RESULTS} to ${MAX_RESULTS}.`);
  }
  return n;
}

const metricOption = () =>
  new Option('--metric <metric>', "distance: cosine, or euclidean (the origin project's)")
    .choices(['cosine', 'euclidean'])
    .default('cosine');

function findConfigs(names: readonly string[]): ReturnType<typeof findEvalConfigs> {
  try {
    return findEvalConfigs(names);
  } catch (error) {
    throw new InvalidInputError((error as Error).message, { hint: 'Run `ompf eval --help` for the list.' });
  }
}

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Build the `ompf` command tree. Each action is thin: parse, call the core, print. */
export function buildProgram(env: NodeJS.ProcessEnv = process.env): {
  program: Command;
  exitCode: () => number;
} {
  let exitCode = 0;
  const program = new Command('ompf')
    .description(
      'Image similarity search: index a folder of images, then find the most similar ones to a picture.',
    )
    .option('--model <name|spec.json>', 'embedding model (default: OMPF_MODEL or resnet50)')
    .option('--json', 'print machine-readable JSON on stdout')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  const config = (): Config =>
    loadConfig(env, {
      ...(program.opts<GlobalOptions>().model ? { model: program.opts<GlobalOptions>().model! } : {}),
    });
  const json = (): boolean => program.opts<GlobalOptions>().json === true;
  const run =
    <Args extends unknown[]>(action: (...args: Args) => Promise<void>) =>
    async (...args: Args) => {
      try {
        await action(...args);
      } catch (error) {
        exitCode = reportError(error, json());
      }
    };

  program
    .command('index')
    .description('Index every image under DIR (recursively); unchanged files are skipped by content hash.')
    .argument('<dir>', 'gallery folder')
    .option('--prune', 'remove entries whose files are gone from DIR')
    .option('--force', 're-embed every image even when unchanged')
    .option('--reindex', 'drop the whole store and rebuild it with the current model (after a model change)')
    .option(
      '--rebuild-augmentation',
      "recompute every image's DBA neighbours exactly afterwards (large stores maintain them approximately)",
    )
    .action(
      run(
        async (
          dir: string,
          options: { prune?: boolean; force?: boolean; reindex?: boolean; rebuildAugmentation?: boolean },
        ) => {
          const cfg = config();
          const gallery = await scanGallery(dir, cfg.maxImageBytes);
          const engine = await openLocalEngine(cfg, { recreateStore: options.reindex === true });
          try {
            const bar = progressBar('indexing', !json());
            bar.start(gallery.items.length);
            const summary = await engine.indexing.indexAll(gallery.root, gallery.items, {
              prune: options.prune === true,
              force: options.force === true,
              onProgress: (done) => bar.update(done),
            });
            bar.stop();
            const strategy = await engine.store.optimise();
            const augmentationRebuilt =
              options.rebuildAugmentation === true ? await engine.store.rebuildAugmentation() : undefined;
            const result = {
              ...summary,
              ignored: gallery.ignored,
              model: engine.spec.id,
              searchStrategy: strategy,
              ...(augmentationRebuilt === undefined ? {} : { augmentationRebuilt }),
            };
            if (json()) printJson(result);
            else {
              say(
                `Indexed ${summary.indexed}, unchanged ${summary.unchanged}, removed ${summary.removed}, failed ${summary.failed.length}` +
                  ` (${gallery.items.length} images in ${summary.seconds.toFixed(1)} s, model ${engine.spec.id}, ${strategy} search).`,
              );
              if (augmentationRebuilt !== undefined)
                say(`  database-side augmentation rebuilt for ${augmentationRebuilt} images.`);
              for (const failure of summary.failed) say(`  failed: ${failure.key}: ${failure.reason}`);
              if (gallery.ignored > 0) say(`  ${gallery.ignored} non-image files ignored.`);
            }
            // Exit 3: the run completed but some images failed (listed above / in the JSON).
            if (summary.failed.length > 0) exitCode = 3;
          } finally {
            await engine.close();
          }
        },
      ),
    );

  program
    .command('search')
    .description('Find the N images most similar to IMAGE (a file), or to an indexed image (--key).')
    .argument('[image]', 'query image file')
    .option(
      '-k, --key <key>',
      'query by an indexed image key instead of a file (not re-embedded; excluded from results)',
    )
    .option('-s, --source <source>', 'gallery folder of --key when the key exists in several')
    .option('-n, --n <n>', `number of results, ${MIN_RESULTS}..${MAX_RESULTS}`, parseN, DEFAULT_RESULTS)
    .option('-p, --prefix <prefix>', 'only results whose key starts with this prefix')
    .option(
      '--qe <k>',
      'alpha-query expansion with k neighbours, 0..10 (default: OMPF_QUERY_EXPANSION or 0)',
      parseQe,
    )
    .option(
      '--rerank <k>',
      `k-reciprocal re-ranking of the first k candidates, 0..${MAX_RERANK_CANDIDATES} (default: OMPF_RERANK or ${DEFAULT_RERANK_CANDIDATES}; 0 = off)`,
      parseRerank,
    )
    .addOption(metricOption())
    .action(
      run(
        async (
          image: string | undefined,
          options: {
            key?: string;
            source?: string;
            n: number;
            prefix?: string;
            qe?: number;
            rerank?: number;
            metric: DistanceMetric;
          },
        ) => {
          if ((image === undefined) === (options.key === undefined)) {
            throw new InvalidInputError('Give either an image file or --key, not both or neither.', {
              hint: 'Examples: `ompf search photo.jpg` or `ompf search --key cats/tom.jpg`.',
            });
          }
          // Read the query first: a wrong path fails before the model and store are opened.
          const query = image === undefined ? undefined : await readQueryFile(image);
          const engine = await openLocalEngine(config());
          try {
            const searchOptions = {
              limit: options.n,
              metric: options.metric,
              keyPrefix: options.prefix,
              queryExpansion: options.qe,
              rerank: options.rerank,
            };
            const hits = query
              ? await engine.search.searchByImage(query, searchOptions)
              : await engine.search.searchByKey({ key: options.key!, source: options.source }, searchOptions);
            if (json()) printJson({ model: engine.spec.id, metric: options.metric, hits });
            else if (hits.length === 0) say('No results: the index is empty or nothing matches the prefix.');
            else
              say(
                table(
                  ['#', 'distance', 'score', 'key', 'source'],
                  hits.map((h, i) => [i + 1, h.distance.toFixed(4), h.score.toFixed(4), h.key, h.source]),
                ),
              );
          } finally {
            await engine.close();
          }
        },
      ),
    );

  program
    .command('eval')
    .description(
      'Leave-one-out retrieval quality on a labelled folder (one subfolder per class): Top-1/5/10, P@10, mAP and end-to-end query latency.',
    )
    .argument('<dir>', 'labelled folder: DIR/<class>/<image>')
    .addOption(metricOption())
    .option(
      '--compare [configs...]',
      `compare configurations side by side (default: all of ${EVAL_CONFIGS.map((c) => c.name).join(', ')})`,
    )
    .action(
      run(async (dir: string, options: { metric: DistanceMetric; compare?: true | string[] }) => {
        const cfg = config();
        const gallery = await scanGallery(dir, cfg.maxImageBytes);
        const labelled = gallery.items
          .filter((item) => item.key.includes('/'))
          .map((item) => ({ item, label: item.key.slice(0, item.key.indexOf('/')) }));
        if (labelled.length < 2) {
          throw new InvalidInputError(`${dir} holds no labelled images.`, {
            hint: 'Lay images out as DIR/<class>/<image>.',
          });
        }
        // Without --compare: what this configuration serves (transform, DBA, query expansion), the
        // product default unless OMPF_* settings say otherwise.
        const configs =
          options.compare === undefined
            ? [
                {
                  ...EVAL_CONFIGS[0]!,
                  name: 'configured',
                  description: describeConfigured(cfg, options.metric),
                  transform: { flip: cfg.flip, power: cfg.power },
                  dba: cfg.dba,
                  queryExpansion: cfg.queryExpansion,
                  rerank: rerankWith(cfg.rerank),
                  metric: options.metric,
                },
              ]
            : options.compare === true
              ? [...EVAL_CONFIGS]
              : findConfigs(options.compare);
        const evaluation = await openEvaluation(cfg);
        const bar = progressBar('embedding', !json());
        bar.start(labelled.length);
        const report = await runEvaluation(evaluation, labelled, configs, (done) => bar.update(done));
        bar.stop();
        const first = report.rows[0]!;
        if (json()) {
          printJson(
            options.compare === undefined
              ? {
                  model: report.model,
                  metric: options.metric,
                  ...first,
                  failed: report.failed.length,
                  embedSeconds: report.embedSeconds,
                }
              : report,
          );
        } else {
          const f = (v: number) => v.toFixed(3);
          say(`model ${report.model}, ${first.images} images in ${first.classes} classes, leave-one-out`);
          say(
            table(
              ['config', 'Top-1', 'Top-5', 'Top-10', 'P@10', 'mAP', 'query p50 ms', 'p95 ms', 'what'],
              report.rows.map((r) => [
                r.config,
                f(r.top1),
                f(r.top5),
                f(r.top10),
                f(r.precisionAt10),
                f(r.mAP),
                r.queryMsP50,
                r.queryMsP95,
                r.description,
              ]),
            ),
          );
          if (report.failed.length > 0)
            say(`${report.failed.length} images could not be decoded and were left out.`);
        }
      }),
    );

  program
    .command('remove')
    .description('Remove images from the index by key.')
    .argument('<keys...>', 'keys to remove')
    .requiredOption('-s, --source <source>', 'gallery folder (as shown by `ompf stats`)')
    .action(
      run(async (keys: string[], options: { source: string }) => {
        const store = await openStore(config());
        try {
          const removed = await store.remove(options.source, keys);
          if (json()) printJson({ removed, requested: keys.length });
          else say(`Removed ${removed} of ${keys.length}.`);
          if (removed < keys.length && !json())
            say('  Keys not in the index were ignored; `ompf stats` lists sources.');
        } finally {
          await store.close();
        }
      }),
    );

  program
    .command('stats')
    .description('What the index holds: model, counts per source, failures.')
    .option('--failures', 'list every failed image with its reason')
    .action(
      run(async (options: { failures?: boolean }) => {
        const store = await openStore(config());
        try {
          const stats = await store.stats();
          const failures = options.failures ? await store.listFailures() : undefined;
          if (json()) printJson({ ...stats, ...(failures ? { failureList: failures } : {}) });
          else {
            say(
              `model ${stats.modelId} (${stats.dimension}-d), ${stats.engine}, ${stats.searchStrategy} search`,
            );
            say(`${stats.images} images, ${stats.failures} failed`);
            if (stats.sources.length > 0)
              say(
                table(
                  ['source', 'images'],
                  stats.sources.map((s) => [s.source, s.images]),
                ),
              );
            for (const f of failures ?? []) say(`  failed: ${f.source} ${f.key}: ${f.reason}`);
          }
        } finally {
          await store.close();
        }
      }),
    );

  program
    .command('serve')
    .description(
      'Serve the search page and the HTTP API on 127.0.0.1 (PORT, default 3000); index the gallery folder in the background.',
    )
    .option('--port <port>', 'port (default: PORT or 3000; 0 picks a free one)')
    .option('--host <address>', 'address to listen on (default: OMPF_HOST or 127.0.0.1)')
    .option('--gallery <dir>', 'gallery folder (default: OMPF_GALLERY_DIR; created if missing)')
    .action(
      run(async (options: { port?: string; host?: string; gallery?: string }) => {
        const cfg = loadConfig(
          {
            ...env,
            ...(options.port === undefined ? {} : { PORT: options.port }),
            ...(options.host === undefined ? {} : { OMPF_HOST: options.host }),
            ...(options.gallery === undefined ? {} : { OMPF_GALLERY_DIR: options.gallery }),
          },
          program.opts<GlobalOptions>().model ? { model: program.opts<GlobalOptions>().model! } : {},
        );
        const log = (line: string) => process.stderr.write(`${line}\n`);
        const bar = progressBar('downloading model (MB)', process.stderr.isTTY === true);
        let received = 0;
        const server = await startLocalServer(cfg, {
          log,
          ...(process.stderr.isTTY
            ? {
                progress: {
                  start: (total: number | undefined) => bar.start(Math.round((total ?? 0) / 1e6)),
                  advance: (bytes: number) => bar.update(Math.round((received += bytes) / 1e6)),
                  stop: () => bar.stop(),
                },
              }
            : {}),
        });
        if (json()) printJson({ url: server.url, gallery: server.gallery, model: server.engine.spec.id });
        else {
          say(`ompf is serving ${server.url}  (open it in a browser; Ctrl+C stops)`);
          say(`  gallery ${server.gallery}  (drop images in; they are indexed in the background)`);
          say(`  model ${server.engine.spec.id}, store ${cfg.databaseUrl ? 'PostgreSQL' : cfg.dataDir}`);
        }
        await new Promise<void>((resolve) => {
          const stop = () => {
            log('stopping: finishing the current batch (Ctrl+C again to quit at once)');
            process.once('SIGINT', () => process.exit(130));
            resolve();
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await server.close();
      }),
    );

  const models = program.command('models').description('List, download and verify embedding models.');
  models
    .command('list')
    .description('Built-in models and whether each is installed in OMPF_MODELS_DIR.')
    .action(
      run(async () => {
        const cfg = config();
        const rows = installedModels(cfg.modelsDir).map(({ spec, path, installed }) => ({
          id: spec.id,
          dimension: spec.dimension,
          installed,
          default: spec.id === cfg.model,
          path,
          description: spec.description,
        }));
        if (json()) printJson({ modelsDir: cfg.modelsDir, models: rows });
        else {
          say(`models directory: ${cfg.modelsDir}`);
          say(
            table(
              ['model', 'dim', 'installed', 'description'],
              rows.map((r) => [
                `${r.id}${r.default ? ' *' : ''}`,
                r.dimension,
                r.installed ? 'yes' : 'no',
                r.description,
              ]),
            ),
          );
        }
        await Promise.resolve();
      }),
    );
  models
    .command('pull')
    .description(
      'Download a model into OMPF_MODELS_DIR (from OMPF_MODEL_BASE_URL for built-in models) and install it only if its size and SHA-256 match.',
    )
    .argument('<name>', 'built-in model name or spec .json')
    .action(
      run(async (name: string) => {
        const cfg = config();
        const spec = resolveModelSpec(name);
        const bar = progressBar(`downloading ${spec.id} (MB)`, !json());
        let received = 0;
        const result = await pullModel(
          spec,
          cfg.modelsDir,
          {
            start: (total) => {
              received = 0;
              bar.start(Math.round((total ?? 0) / 1e6));
            },
            advance: (bytes) => bar.update(Math.round((received += bytes) / 1e6)),
            stop: () => bar.stop(),
          },
          { baseUrl: cfg.modelBaseUrl },
        );
        if (json()) printJson({ model: spec.id, ...result });
        else
          say(
            result.alreadyPresent
              ? `${spec.id} is already installed and verified: ${result.path}`
              : `Installed ${spec.id}: ${result.path} (sha256 ${result.sha256} verified)`,
          );
      }),
    );
  models
    .command('verify')
    .description('Check that a model file is present and is exactly one of the files the model accepts.')
    .argument('[name]', 'model (default: the configured one)')
    .action(
      run(async (name: string | undefined) => {
        const cfg = config();
        const spec = resolveModelSpec(name ?? cfg.model);
        const verified = verifyModelFile(spec, cfg.modelsDir, modelDownloadUrls(spec, cfg.modelBaseUrl)[0]);
        if (json()) {
          printJson({
            model: spec.id,
            verified: true,
            path: verified.path,
            sha256: verified.file.sha256,
            origin: verified.file.origin,
          });
        } else
          say(`${spec.id}: OK, ${verified.path} is ${verified.file.origin} (sha256 ${verified.file.sha256})`);
        await Promise.resolve();
      }),
    );

  addDuplicatesCommand(program, { config, json, say, run });
  addCloudCommands(program, { json, say, run });

  return { program, exitCode: () => exitCode };
}

async function readQueryFile(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new NotFoundError(`The file ${path} does not exist.`, { hint: 'Check the path.' });
    if (code === 'EISDIR') throw new InvalidInputError(`${path} is a folder; give an image file.`);
    throw error;
  }
}

/** Run the CLI; resolves to the exit code. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { program, exitCode } = buildProgram(env);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    const code = (error as { code?: string; exitCode?: number }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help')
      return 0;
    if (code?.startsWith('commander.')) return 2;
    return reportError(error, argv.includes('--json'));
  }
  return exitCode();
}

/** The settings `ompf eval` measures without --compare, in words. */
function describeConfigured(cfg: Config, metric: DistanceMetric): string {
  const parts = [
    cfg.framing !== 'crop' ? `${cfg.framing} framing` : 'centre crop',
    cfg.gemPower > 0 ? `GeM p=${cfg.gemPower}` : 'average pooling',
    cfg.flip ? 'mirror averaging' : undefined,
    cfg.power !== 1 ? `power ${cfg.power}` : undefined,
    cfg.dba > 0 ? `DBA k=${cfg.dba}` : undefined,
    cfg.queryExpansion > 0 ? `QE k=${cfg.queryExpansion}` : undefined,
    cfg.rerank > 0 ? `k-reciprocal re-ranking of ${cfg.rerank}` : undefined,
  ].filter((part): part is string => part !== undefined);
  return `as configured: ${parts.length > 0 ? parts.join(', ') : 'plain embedding'}, ${metric}`;
}
