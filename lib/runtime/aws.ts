import type { ApiDependencies } from '../api/http-api';
import { createApiHandler, createIndexHandler, type IndexerDependencies } from '../adapters/aws/lambda';
import { powertoolsMetrics, timedEmbedder, timedStore, type FunctionMetrics } from '../adapters/aws/metrics';
import { queryUploads, S3Objects } from '../adapters/aws/s3-objects';
import { resolveModelSpec } from '../adapters/models/model-registry';
import { PgIndexCatalogue } from '../adapters/store/index-catalogue';
import { PgVectorStore, type StoreOptions } from '../adapters/store/pg-vector-store';
import { DuplicateFinder } from '../core/duplicates';
import { ModelMismatchError } from '../core/errors';
import type { ModelSpec } from '../core/model-spec';
import { ObjectEventIndexer } from '../core/object-events';
import type { CatalogueEntry, Embedder, VectorStore } from '../core/ports';
import { parseTransformSuffix, splitModelId } from '../core/retrieval';
import { SearchService } from '../core/search';
import {
  awsParts,
  loadAwsConfig,
  logger,
  once,
  openStore,
  readCatalogue,
  readerOptions,
  type AwsParts,
} from './aws-base';
import { stageStatus } from './aws-status';
import type { Config } from './config';
import { productEmbedder, productPreprocessor, sharedEmbedder } from './product';
import { storeOptions } from './store-identity';

export * from './aws-base';

/**
 * The composition root for AWS Lambda, part two: the model (ONNX session from the model layer,
 * sharp from the native layer) and the indexer and query handlers. Configuration, clients and the
 * database come from aws-base.ts, which the migrate and operations functions use alone.
 */
async function openModel(parts: AwsParts, spec: ModelSpec, config: Config = parts.config.base) {
  // The model first (from the layer, SHA-256 verified): a bad file fails before the store is touched.
  // The same transform as every runtime (flip / power by the embedder, DBA by the store: storeOptions),
  // so stored ids match across runtimes.
  const embedder = productEmbedder(await sharedEmbedder(spec, config), spec, config);
  const preprocessor = productPreprocessor(spec, config);
  return { embedder, preprocessor };
}

/** How long a container trusts its copy of the index catalogue (a switch is seen within this). */
export const CATALOGUE_TTL_MS = 5_000;

/** The catalogue, re-read at most every CATALOGUE_TTL_MS; undefined: a database without one. */
function cachedCatalogue(parts: AwsParts): () => Promise<CatalogueEntry[] | undefined> {
  let read: { at: number; entries: Promise<CatalogueEntry[] | undefined> } | undefined;
  return () => {
    if (!read || Date.now() - read.at > CATALOGUE_TTL_MS) {
      const entries = readCatalogue(parts);
      entries.catch(() => (read = undefined));
      read = { at: Date.now(), entries };
    }
    return read.entries;
  };
}

export async function openIndexer(
  parts: AwsParts,
  metrics: FunctionMetrics = powertoolsMetrics(),
): Promise<IndexerDependencies> {
  const { embedder, preprocessor } = await openModel(parts, resolveModelSpec(parts.config.base.model));
  const store = await openStore(parts);
  const catalogue = cachedCatalogue(parts);
  const others = new Map<string, Promise<VectorStore>>();
  // While a new index is built, the old one keeps answering queries: removals reach it too.
  const otherIndexes = async (): Promise<VectorStore[]> => {
    const entries = (await catalogue()) ?? [];
    const live = entries.filter((e) => e.state !== 'retired' && e.modelId !== store.modelId);
    return Promise.all(
      live.map((entry) => {
        let opened = others.get(entry.schema);
        if (!opened) {
          opened = parts
            .sqlFor(entry.schema)
            .then((sql) => PgVectorStore.open(sql, readerOptions(entry, parts.config.base)));
          opened.catch(() => others.delete(entry.schema));
          others.set(entry.schema, opened);
        }
        return opened.then((s) => timedStore(s, metrics));
      }),
    );
  };
  const hasCatalogue = (await catalogue()) !== undefined;
  const errors = new PgIndexCatalogue(await parts.sql());
  return {
    indexer: new ObjectEventIndexer(
      timedStore(store, metrics),
      timedEmbedder(embedder, metrics),
      preprocessor,
      {
        ignorePrefixes: [parts.config.uploadsPrefix],
        otherIndexes,
      },
    ),
    reader: new S3Objects(parts.clients.s3, { maxBytes: parts.config.base.maxImageBytes }),
    ...(hasCatalogue
      ? {
          eventErrors: {
            record: (error) => errors.recordEventError(error),
            clear: (ids) => errors.clearEventErrors(ids),
          },
        }
      : {}),
  };
}

/** A model the query function can embed with: the configured one, or the stage's previous one. */
function servableSpec(parts: AwsParts, modelId: string): { spec: ModelSpec; config: Config } | undefined {
  const { model, transform } = splitModelId(modelId);
  const parsed = parseTransformSuffix(transform);
  if (!parsed) return undefined;
  const names = [parts.config.base.model, parts.config.previousModel].filter(
    (n): n is string => n !== undefined,
  );
  for (const name of names) {
    const spec = resolveModelSpec(name);
    if (spec.id === model) return { spec, config: { ...parts.config.base, ...parsed, dba: parsed.dba ?? 0 } };
  }
  return undefined;
}

/** Queries by image during a re-index without the old model in the layer: a clear refusal. */
function unavailableEmbedder(modelId: string, dimension: number, configured: string): Embedder {
  return {
    modelId,
    dimension,
    embed: () =>
      Promise.reject(
        new ModelMismatchError(
          `The index answering queries was built with '${modelId}', and this deployment has only '${configured}': queries by image wait until the new index has caught up; queries by key work.`,
          {
            hint: `Set "previousModel" in the stage's cdk.json to the old model to keep answering queries by image during a re-index; 'ompf cloud status' shows the progress.`,
          },
        ),
      ),
  };
}

/**
 * The query API answers from the catalogue's active index, whichever model built it: the configured
 * model once its index has caught up, the previous one (its file in the layer) until then. Each
 * request gets the dependencies of the index active now (the catalogue is re-read every few seconds).
 */
export function queryApiProvider(
  parts: AwsParts,
  metrics: FunctionMetrics = powertoolsMetrics(),
): () => Promise<ApiDependencies> {
  const catalogue = cachedCatalogue(parts);
  const byModel = new Map<string, Promise<ApiDependencies>>();
  const configured = storeOptions(resolveModelSpec(parts.config.base.model), parts.config.base).modelId;
  const open = async (entry: CatalogueEntry | undefined): Promise<ApiDependencies> => {
    const { config } = parts;
    let store: PgVectorStore;
    let embedder: Embedder;
    let preprocessor;
    if (!entry) {
      ({ embedder, preprocessor } = await openModel(parts, resolveModelSpec(config.base.model)));
      store = await openStore(parts);
    } else {
      const servable = servableSpec(parts, entry.modelId);
      const spec = servable?.spec ?? resolveModelSpec(config.base.model);
      ({ embedder, preprocessor } = await openModel(parts, spec, servable?.config));
      if (!servable) embedder = unavailableEmbedder(entry.modelId, entry.dimension, configured);
      const options: StoreOptions = {
        ...readerOptions(entry, config.base),
        dba: servable?.config.dba ?? 0,
      };
      store = await PgVectorStore.open(await parts.sqlFor(entry.schema), options);
    }
    const objects = new S3Objects(parts.clients.s3, { maxBytes: config.base.maxImageBytes });
    return {
      search: new SearchService(timedStore(store, metrics), embedder, preprocessor, {
        queryExpansion: config.base.queryExpansion,
        rerank: config.base.rerank,
      }),
      modelId: store.modelId,
      source: config.bucket,
      reportError: (error, request) =>
        logger.error('request failed', {
          method: request.method,
          path: request.rawPath,
          error: error as Error,
        }),
      imageUrl: (key) => objects.presignGet(config.bucket, key, config.urlTtlSeconds),
      maxInlineImageBytes: config.maxInlineImageBytes,
      uploads: queryUploads(objects, {
        bucket: config.bucket,
        prefix: config.uploadsPrefix,
        expiresInSeconds: config.uploadTtlSeconds,
      }),
      status: () => stageStatus(parts),
      duplicates: new DuplicateFinder(store),
    };
  };
  return async () => {
    const entries = await catalogue();
    const active = entries?.find((e) => e.state === 'active');
    const key = active?.modelId ?? '';
    let deps = byModel.get(key);
    if (!deps) {
      deps = open(active);
      deps.catch(() => byModel.delete(key));
      byModel.set(key, deps);
    }
    return deps;
  };
}

/** Kept for callers that open the query API once (the soak, tests). */
export function openQueryApi(parts: AwsParts): Promise<ApiDependencies> {
  return queryApiProvider(parts)();
}

/** The indexer and query handlers, each wired at module scope of its functions/ file. */
export function indexImagesHandler(parts: AwsParts = awsParts(loadAwsConfig())) {
  const metrics = powertoolsMetrics();
  return createIndexHandler(
    once(() => openIndexer(parts, metrics)),
    logger,
    metrics,
  );
}

export function searchHandler(parts: AwsParts = awsParts(loadAwsConfig())) {
  const metrics = powertoolsMetrics();
  return createApiHandler(queryApiProvider(parts, metrics), logger, metrics);
}
