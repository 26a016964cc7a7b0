import { threadsPerIndexWorker, type Config } from './config';
import {
  describedSpec,
  oncePerProcess,
  productEmbedder,
  productPreprocessor,
  sharedEmbedder,
  storeOptions,
} from './product';
import type { SharpImagePreprocessor } from '../adapters/image/sharp-preprocessor';
import { readVerifiedModel, resolveModelSpec } from '../adapters/models/model-registry';
import { OnnxWorkerPool, PooledOnnxEmbedder } from '../adapters/onnx/onnx-worker-pool';
import { PgVectorStore } from '../adapters/store/pg-vector-store';
import { PgliteSqlClient, PostgresSqlClient, type SqlClient } from '../adapters/store/sql-client';
import type { EvaluationDependencies } from '../core/evaluation-runner';
import { IndexingService } from '../core/indexing';
import type { Embedder } from '../core/ports';
import type { ModelSpec } from '../core/model-spec';
import { SearchService } from '../core/search';

/**
 * The composition root for one machine (CLI, local server): the only place that picks adapters.
 * PGlite in OMPF_DATA_DIR by default; PostgreSQL when DATABASE_URL is set.
 */
export interface LocalEngine {
  readonly config: Config;
  readonly spec: ModelSpec;
  readonly store: PgVectorStore;
  readonly embedder: Embedder;
  readonly preprocessor: SharpImagePreprocessor;
  readonly search: SearchService;
  readonly indexing: IndexingService;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Drop the store and recreate it for the configured model. */
  readonly recreateStore?: boolean;
  /** An in-memory PGlite store that vanishes at close (evaluation runs). */
  readonly ephemeralStore?: boolean;
}

const pooledEmbedders = new Map<string, Promise<Embedder>>();

/**
 * The embedder of the CLI, the local server and `ompf eval`: single images on the shared in-process
 * session, batches on config.indexWorkers worker threads (cores split evenly between them), or all on
 * the in-process session when indexWorkers is 0. One per model per process, like sharedEmbedder.
 */
export function localEmbedder(spec: ModelSpec, config: Config): Promise<Embedder> {
  if (config.indexWorkers === 0) return sharedEmbedder(spec, config);
  return oncePerProcess(
    pooledEmbedders,
    [
      spec.id,
      spec.file,
      config.threads,
      config.batchSize,
      config.indexWorkers,
      config.gemPower,
      config.framing,
    ].join('\u0000'),
    async () =>
      new PooledOnnxEmbedder(await sharedEmbedder(spec, config), () =>
        OnnxWorkerPool.start(
          describedSpec(spec, config),
          readVerifiedModel(spec, config.modelsDir, config.modelBaseUrl),
          {
            workers: config.indexWorkers,
            threadsPerWorker: threadsPerIndexWorker(config.indexWorkers),
            batchSize: config.batchSize,
          },
        ),
      ),
  );
}

export async function openSqlClient(config: Config, ephemeral = false): Promise<SqlClient> {
  if (ephemeral) return PgliteSqlClient.open(undefined);
  return config.databaseUrl
    ? PostgresSqlClient.connect(config.databaseUrl)
    : PgliteSqlClient.open(config.dataDir);
}

/** Open only the store (no model file needed): stats, remove, failures. */
export async function openStore(config: Config, options: OpenOptions = {}): Promise<PgVectorStore> {
  const spec = resolveModelSpec(config.model);
  const client = await openSqlClient(config, options.ephemeralStore);
  try {
    return options.recreateStore
      ? await PgVectorStore.recreate(client, storeOptions(spec, config))
      : await PgVectorStore.open(client, storeOptions(spec, config));
  } catch (error) {
    await client.close();
    throw error;
  }
}

/** What `ompf eval` needs: the plain model, a preprocessor, and throw-away in-memory stores. */
export async function openEvaluation(config: Config): Promise<EvaluationDependencies> {
  const spec = resolveModelSpec(config.model);
  const embedder = await localEmbedder(spec, config);
  return {
    embedder,
    preprocessor: productPreprocessor(spec, config),
    cropSize: spec.preprocess.cropSize,
    batchSize: config.batchSize,
    openStore: async (modelId, dimension, dba) =>
      PgVectorStore.open(await PgliteSqlClient.open(undefined), {
        ...storeOptions(spec, config),
        modelId,
        dimension,
        dba,
      }),
  };
}

export async function openLocalEngine(config: Config, options: OpenOptions = {}): Promise<LocalEngine> {
  const spec = resolveModelSpec(config.model);
  // The model first: a missing or altered file fails before any store is created for it.
  const embedder = productEmbedder(await localEmbedder(spec, config), spec, config);
  const store = await openStore(config, options);
  const preprocessor = productPreprocessor(spec, config);
  return {
    config,
    spec,
    store,
    embedder,
    preprocessor,
    search: new SearchService(store, embedder, preprocessor, {
      queryExpansion: config.queryExpansion,
      rerank: config.rerank,
    }),
    indexing: new IndexingService(store, embedder, preprocessor, { batchSize: config.batchSize }),
    close: () => store.close(),
  };
}
