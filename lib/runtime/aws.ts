import type { ApiDependencies } from '../api/http-api';
import { createApiHandler, createIndexHandler, type IndexerDependencies } from '../adapters/aws/lambda';
import { queryUploads, S3Objects } from '../adapters/aws/s3-objects';
import { resolveModelSpec } from '../adapters/models/model-registry';
import { ObjectEventIndexer } from '../core/object-events';
import { SearchService } from '../core/search';
import { awsParts, loadAwsConfig, logger, once, openStore, type AwsParts } from './aws-base';
import { productEmbedder, productPreprocessor, sharedEmbedder } from './product';

export * from './aws-base';

/**
 * The composition root for AWS Lambda, part two: the model (ONNX session from the model layer,
 * sharp from the native layer) and the indexer and query handlers. Configuration, clients and the
 * database come from aws-base.ts, which the migrate function uses alone.
 */
async function openModel(parts: AwsParts) {
  const spec = resolveModelSpec(parts.config.base.model);
  // The model first (from the layer, SHA-256 verified): a bad file fails before the store is touched.
  // The same transform as every runtime (flip / power by the embedder, DBA by the store: storeOptions),
  // so stored ids match across runtimes.
  const embedder = productEmbedder(await sharedEmbedder(spec, parts.config.base), spec, parts.config.base);
  const preprocessor = productPreprocessor(spec, parts.config.base);
  return { embedder, preprocessor };
}

export async function openIndexer(parts: AwsParts): Promise<IndexerDependencies> {
  const { embedder, preprocessor } = await openModel(parts);
  const store = await openStore(parts);
  return {
    indexer: new ObjectEventIndexer(store, embedder, preprocessor, {
      ignorePrefixes: [parts.config.uploadsPrefix],
    }),
    reader: new S3Objects(parts.clients.s3, { maxBytes: parts.config.base.maxImageBytes }),
  };
}

export async function openQueryApi(parts: AwsParts): Promise<ApiDependencies> {
  const { config } = parts;
  const { embedder, preprocessor } = await openModel(parts);
  const store = await openStore(parts);
  const objects = new S3Objects(parts.clients.s3, { maxBytes: config.base.maxImageBytes });
  return {
    search: new SearchService(store, embedder, preprocessor, { queryExpansion: config.base.queryExpansion }),
    modelId: embedder.modelId,
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
  };
}

/** The three Lambda handlers, each wired at module scope of its functions/ file. */
export function indexImagesHandler(parts: AwsParts = awsParts(loadAwsConfig())) {
  return createIndexHandler(
    once(() => openIndexer(parts)),
    logger,
  );
}

export function searchHandler(parts: AwsParts = awsParts(loadAwsConfig())) {
  return createApiHandler(
    once(() => openQueryApi(parts)),
    logger,
  );
}
