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
import { InvalidInputError } from '../../core/errors';
import type { ObjectEventIndexer, ObjectReader } from '../../core/object-events';
import { parseS3Message } from './s3-events';

/**
 * The Lambda shells: event shape in, core call, result shape out. Nothing here decides anything the
 * core or the HTTP API already decides; dependencies come from a provider that the composition root
 * (lib/runtime/aws.ts) creates once per container.
 */
export type Provider<T> = () => Promise<T>;

export interface IndexerDependencies {
  readonly indexer: ObjectEventIndexer;
  readonly reader: ObjectReader;
}

/**
 * SQS (S3 notifications) -> ObjectEventIndexer, with a partial batch response: a record that throws
 * is reported in batchItemFailures and only it is retried (the event source mapping needs
 * ReportBatchItemFailures). Records run one after another: inference is CPU-bound and the pool small.
 */
export function createIndexHandler(
  dependencies: Provider<IndexerDependencies>,
  logger: Logger,
): (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> {
  const processor = new BatchProcessor(EventType.SQS);
  const recordHandler = async (record: SQSRecord): Promise<void> => {
    const message = parseS3Message(record.body);
    if (message.kind === 'test') {
      logger.info('S3 test event: notifications are configured', { messageId: record.messageId });
      return;
    }
    if (message.events.length === 0) return;
    const { indexer, reader } = await dependencies();
    for (const event of message.events) {
      const outcome = await indexer.apply(event, reader);
      const fields = { messageId: record.messageId, ...event, ...outcome };
      if (outcome.status === 'failed') logger.warn('image not indexed', fields);
      else logger.info('object event applied', fields);
    }
  };
  const loggedRecordHandler = async (record: SQSRecord): Promise<void> => {
    try {
      await recordHandler(record);
    } catch (error) {
      // The record goes back to the queue (and, after maxReceiveCount, to the dead-letter queue).
      logger.error('record failed; it will be retried', {
        messageId: record.messageId,
        error: error as Error,
        cause: describeCause(error),
      });
      throw error;
    }
  };
  return (event, context) =>
    processPartialResponse(event, loggedRecordHandler, processor, { context, processInParallel: false });
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
): (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult> {
  return async (event) => {
    let response: ApiResponse;
    try {
      const request = toApiRequest(event);
      response = await handleApiRequest(await dependencies(), request);
    } catch (error) {
      logger.error('request failed before routing', { error: error as Error });
      response = fromError(error);
    }
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
}

export interface MaintenanceResult {
  readonly strategy: string;
  readonly prunedTombstones: number;
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
      return { Data: { strategy: result.strategy, prunedTombstones: String(result.prunedTombstones) } };
    }
    const physicalId = 'ompf-schema';
    // Deleting the stack never drops data: the database's own removal policy decides.
    if (event.RequestType === 'Delete') return { PhysicalResourceId: event.PhysicalResourceId };
    const result = await operations.migrate();
    logger.info('migrations applied', { ...result });
    return {
      PhysicalResourceId: physicalId,
      Data: { applied: result.applied.join(','), pgvector: result.pgvector },
    };
  };
}

/** OmpfError's JSON form leaves its cause out; logs need it (the SDK or driver error behind it). */
function describeCause(error: unknown): string | undefined {
  const cause = (error as { cause?: unknown }).cause;
  if (cause === undefined) return undefined;
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : JSON.stringify(cause);
}
