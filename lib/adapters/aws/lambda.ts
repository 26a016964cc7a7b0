import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Logger } from '@aws-lambda-powertools/logger';
import type {
  APIGatewayProxyEvent,
  APIGatewayProxyResult,
  CloudFormationCustomResourceEvent,
  Context,
  SQSBatchResponse,
  SQSEvent,
  SQSRecord,
} from 'aws-lambda';
import {
  fromError,
  handleApiRequest,
  type ApiDependencies,
  type ApiRequest,
  type ApiResponse,
} from '../../api/http-api';
import { duplicateRoutes } from '../../api/duplicate-routes';
import { InvalidInputError } from '../../core/errors';
import type { ObjectEventIndexer, ObjectEventOutcome, ObjectReader } from '../../core/object-events';
import type { EventErrorRecord } from '../../core/ports';
import { METRIC_NAMES, type FunctionMetrics } from './metrics';
import { describeMessage, parseS3Message } from './s3-events';

/**
 * The Lambda shells: event shape in, core call, result shape out. Nothing here decides anything the
 * core or the HTTP API already decides; dependencies come from a provider that the composition root
 * (lib/runtime/aws.ts) creates once per container.
 */
export type Provider<T> = () => Promise<T>;

export interface IndexerDependencies {
  readonly indexer: ObjectEventIndexer;
  readonly reader: ObjectReader;
  /**
   * Where the last error of a record that threw is kept (by message id), for the dead-letter listing.
   * Best effort: when the database is what failed, nothing is written.
   */
  readonly eventErrors?: {
    record(error: EventErrorRecord): Promise<void>;
    clear(messageIds: readonly string[]): Promise<void>;
  };
}

/** Nothing measured (tests that do not look at metrics). */
export const NO_METRICS: FunctionMetrics = {
  count: () => undefined,
  countBy: () => undefined,
  milliseconds: () => undefined,
  flush: () => undefined,
};

const SKIPPED = new Set(['stale', 'ignored', 'gone', 'superseded', 'unchanged']);

function countOutcome(metrics: FunctionMetrics, outcome: ObjectEventOutcome): void {
  if (outcome.status === 'indexed') metrics.count(METRIC_NAMES.indexed);
  else if (outcome.status === 'removed') metrics.count(METRIC_NAMES.removed);
  else if (outcome.status === 'failed') metrics.countBy(METRIC_NAMES.failed, 'reason', outcome.code);
  else if (SKIPPED.has(outcome.status)) metrics.count(METRIC_NAMES.skipped);
}

/**
 * SQS (S3 notifications) -> ObjectEventIndexer, with a partial batch response: a record that throws
 * is reported in batchItemFailures and only it is retried (the event source mapping needs
 * ReportBatchItemFailures). Records run one after another: inference is CPU-bound and the pool small.
 */
export function createIndexHandler(
  dependencies: Provider<IndexerDependencies>,
  logger: Logger,
  metrics: FunctionMetrics = NO_METRICS,
): (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> {
  const processor = new BatchProcessor(EventType.SQS);
  const recordHandler = async (record: SQSRecord): Promise<void> => {
    const message = parseS3Message(record.body);
    if (message.kind === 'test') {
      logger.info('S3 test event: notifications are configured', { messageId: record.messageId });
      return;
    }
    if (message.kind === 'check') {
      const { indexer, reader } = await dependencies();
      const outcome = await indexer.check(message.check, reader);
      countOutcome(metrics, outcome);
      const fields = { messageId: record.messageId, check: true, ...message.check, ...outcome };
      if (outcome.status === 'failed') logger.warn('image not indexed', fields);
      else logger.info('object checked', fields);
      return;
    }
    if (message.events.length === 0) return;
    const { indexer, reader } = await dependencies();
    for (const event of message.events) {
      const outcome = await indexer.apply(event, reader);
      countOutcome(metrics, outcome);
      const fields = { messageId: record.messageId, ...event, ...outcome };
      if (outcome.status === 'failed') logger.warn('image not indexed', fields);
      else logger.info('object event applied', fields);
    }
  };
  const loggedRecordHandler = async (record: SQSRecord): Promise<void> => {
    try {
      await recordHandler(record);
      // A message that failed before has its recorded error cleared (one statement, retries only).
      if (Number(record.attributes.ApproximateReceiveCount) > 1) {
        await (await dependencies()).eventErrors?.clear([record.messageId]).catch(() => undefined);
      }
    } catch (error) {
      // The record goes back to the queue (and, after maxReceiveCount, to the dead-letter queue).
      metrics.count(METRIC_NAMES.retried);
      logger.error('record failed; it will be retried', {
        messageId: record.messageId,
        error: error as Error,
        cause: describeCause(error),
      });
      await recordEventError(record, error);
      throw error;
    }
  };
  const recordEventError = async (record: SQSRecord, error: unknown): Promise<void> => {
    try {
      const errors = (await dependencies()).eventErrors;
      const { keys } = describeMessage(record.body);
      const cause = describeCause(error);
      await errors?.record({
        messageId: record.messageId,
        source: undefined,
        key: keys.join(', ') || undefined,
        error: `${(error as Error).message ?? String(error)}${cause ? ` (${cause})` : ''}`,
      });
    } catch {
      // The database is down, most likely the very failure being recorded: the logs keep it.
    }
  };
  return async (event, context) => {
    try {
      return await processPartialResponse(event, loggedRecordHandler, processor, {
        context,
        processInParallel: false,
      });
    } finally {
      metrics.flush();
    }
  };
}

/** An API Gateway REST proxy event as the framework-independent ApiRequest. */
export function toApiRequest(event: APIGatewayProxyEvent): ApiRequest {
  // Rebuild the path from the resource template: path parameters arrive decoded, and a key holding
  // '/' must stay one segment, so each is re-encoded once (handleApiRequest decodes it once).
  const parameters = event.pathParameters ?? {};
  const rawPath = event.resource.replace(/\{([^}+]+)\+?\}/g, (_match, name: string) => {
    const value = parameters[name];
    if (value === undefined) throw new InvalidInputError(`The path parameter '${name}' is missing.`);
    return encodeURIComponent(value);
  });
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) {
    if (value !== undefined) headers[name.toLowerCase()] = value;
  }
  return {
    method: event.httpMethod,
    rawPath,
    query: { ...(event.queryStringParameters ?? {}) },
    headers,
    body:
      event.body === null || event.body === undefined
        ? undefined
        : Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8'),
  };
}

export function toProxyResult(response: ApiResponse): APIGatewayProxyResult {
  const { body } = response;
  return {
    statusCode: response.status,
    headers: { ...response.headers, 'cache-control': 'no-store' },
    body: Buffer.isBuffer(body) ? body.toString('base64') : body,
    isBase64Encoded: Buffer.isBuffer(body),
  };
}

/** API Gateway proxy -> handleApiRequest -> proxy result. Never throws: errors are JSON responses. */
export function createApiHandler(
  dependencies: Provider<ApiDependencies>,
  logger: Logger,
  metrics: FunctionMetrics = NO_METRICS,
): (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult> {
  return async (event) => {
    let response: ApiResponse;
    const started = performance.now();
    try {
      const request = toApiRequest(event);
      response = await handleApiRequest(await dependencies(), request, duplicateRoutes);
    } catch (error) {
      logger.error('request failed before routing', { error: error as Error });
      response = fromError(error);
    }
    if (SEARCH_RESOURCES.has(event.resource) && response.status === 200) {
      metrics.milliseconds(METRIC_NAMES.searchMs, performance.now() - started);
      metrics.count(METRIC_NAMES.searches);
      metrics.count(METRIC_NAMES.resultsReturned, countHits(response));
    }
    metrics.flush();
    const fields = { method: event.httpMethod, resource: event.resource, status: response.status };
    if (response.status < 500) {
      logger.info('request', fields);
      return toProxyResult(response);
    }
    // The details of a server-side failure (host names, driver messages) go to the logs, not the client.
    logger.error('request failed', { ...fields, body: response.body });
    return toProxyResult(withoutInternals(response));
  };
}

/** The routes that search (their time and result counts are metrics). */
const SEARCH_RESOURCES = new Set(['/search', '/images/{key}/similar']);

function countHits(response: ApiResponse): number {
  try {
    return (JSON.parse(String(response.body)) as { hits?: unknown[] }).hits?.length ?? 0;
  } catch {
    return 0;
  }
}

function withoutInternals(response: ApiResponse): ApiResponse {
  let code = 'internal_error';
  try {
    code = (JSON.parse(String(response.body)) as { error?: { code?: string } }).error?.code ?? code;
  } catch {
    // not JSON: keep the generic code
  }
  const message =
    response.status === 503
      ? 'A service the search depends on is unavailable; retry in a moment.'
      : 'Internal error.';
  return { ...response, body: JSON.stringify({ error: { code, message } }) };
}

export interface MigrationResult {
  readonly applied: readonly number[];
  readonly pgvector: string;
  /** The configured model's index: 'active', or 'building' beside the active one (a model change). */
  readonly index?: { readonly modelId: string; readonly state: string };
}

export interface MaintenanceResult {
  readonly strategy: string;
  readonly prunedTombstones: number;
  /** Retired indexes dropped (a re-index switched away from them). */
  readonly droppedIndexes?: readonly string[];
}

/**
 * The schema step of a deployment (a CloudFormation custom resource through the CDK provider
 * framework: a thrown error fails the deployment and rolls it back) and the scheduled maintenance
 * (ANN index build once the store is large enough, old tombstones pruned).
 */
export function createMigrateHandler(
  operations: { migrate(): Promise<MigrationResult>; maintain(): Promise<MaintenanceResult> },
  logger: Logger,
): (
  event: CloudFormationCustomResourceEvent | { readonly action: 'maintain' },
) => Promise<{ PhysicalResourceId?: string; Data?: Record<string, string> }> {
  return async (event) => {
    if ('action' in event) {
      const result = await operations.maintain();
      logger.info('maintenance done', { ...result });
      return {
        Data: {
          strategy: result.strategy,
          prunedTombstones: String(result.prunedTombstones),
          droppedIndexes: (result.droppedIndexes ?? []).join(','),
        },
      };
    }
    const physicalId = 'ompf-schema';
    // Deleting the stack never drops data: the database's own removal policy decides.
    if (event.RequestType === 'Delete') return { PhysicalResourceId: event.PhysicalResourceId };
    const result = await operations.migrate();
    logger.info('migrations applied', { ...result });
    return {
      PhysicalResourceId: physicalId,
      Data: {
        applied: result.applied.join(','),
        pgvector: result.pgvector,
        ...(result.index ? { indexModel: result.index.modelId, indexState: result.index.state } : {}),
      },
    };
  };
}

/** OmpfError's JSON form leaves its cause out; logs need it (the SDK or driver error behind it). */
function describeCause(error: unknown): string | undefined {
  const cause = (error as { cause?: unknown }).cause;
  if (cause === undefined) return undefined;
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : JSON.stringify(cause);
}
