import busboy from 'busboy';
import { z } from 'zod';
import { describeError, InvalidInputError, TooLargeError, UnsupportedImageError } from '../core/errors';
import type { DuplicateFinder } from '../core/duplicates';
import type { DistanceMetric } from '../core/ports';
import { MAX_RERANK_CANDIDATES } from '../core/reranking';
import { MAX_RESULTS, MIN_RESULTS, validateKey, type SearchHit, type SearchService } from '../core/search';
import { OPENAPI_DOCUMENT } from './openapi';

/**
 * The HTTP API, independent of any server: the query Lambda (API Gateway proxy events) and the local
 * server (node:http) both translate their requests into ApiRequest and their responses from
 * ApiResponse, so both serve exactly the same contract (described by OPENAPI_DOCUMENT).
 */
export interface ApiRequest {
  readonly method: string;
  /** Path as sent, still percent-encoded: each segment is decoded once, after routing. */
  readonly rawPath: string;
  readonly query: Readonly<Record<string, string | undefined>>;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body: Buffer | undefined;
}

export interface ApiResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | Buffer;
}

export interface UploadTicket {
  readonly key: string;
  readonly uploadUrl: string;
  readonly method: 'PUT';
  /** Headers the client must send with the PUT (the signed content type). */
  readonly headers: Readonly<Record<string, string>>;
  readonly expiresInSeconds: number;
}

export interface ApiDependencies {
  readonly search: SearchService;
  readonly modelId: string;
  /** The bucket or gallery folder whose images this API serves. */
  readonly source: string;
  /** A URL where the client can fetch the image (presigned GET in the cloud, /images/{key} locally). */
  imageUrl(key: string): Promise<string>;
  /** Largest image accepted inline in a request body (Lambda: about 4.5 MB once base64-encoded). */
  readonly maxInlineImageBytes: number;
  /** Told of every failure answered with a 5xx (for logs); the client sees no internals. */
  readonly reportError?: (error: unknown, request: ApiRequest) => void;
  /** Near-duplicate groups (GET /duplicates, GET /images/{key}/duplicates: duplicate-routes.ts). */
  readonly duplicates?: DuplicateFinder;
  /** GET /status in the cloud: the stage's indexes, counts, reconcile and re-index state, queues. */
  readonly status?: () => Promise<Record<string, unknown>>;
  /** Query images too large to send inline: presigned upload, then POST /search with uploadKey. */
  readonly uploads?: {
    create(contentType: string): Promise<UploadTicket>;
    /** Bytes of an uploaded query image; NotFoundError when absent or expired. */
    read(key: string): Promise<Uint8Array>;
  };
}

export interface SearchResponseBody {
  readonly model: string;
  readonly metric: DistanceMetric;
  readonly n: number;
  readonly hits: readonly { key: string; distance: number; score: number; url: string }[];
}

const IMAGE_CONTENT_TYPES = /^image\/(jpeg|png|webp|gif|avif|tiff|svg\+xml|heic|heif|bmp)$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const searchJsonSchema = z
  .strictObject({
    image: z.string().min(1).optional(),
    uploadKey: z.string().min(1).optional(),
    n: z.number().int().min(MIN_RESULTS).max(MAX_RESULTS).optional(),
    prefix: z.string().optional(),
    metric: z.enum(['cosine', 'euclidean']).optional(),
    rerank: z.number().int().min(0).max(MAX_RERANK_CANDIDATES).optional(),
  })
  .refine((body) => (body.image === undefined) !== (body.uploadKey === undefined), {
    message: 'give exactly one of "image" (base64) or "uploadKey"',
  });

const uploadJsonSchema = z.strictObject({
  contentType: z.string().regex(IMAGE_CONTENT_TYPES, 'must be an image content type'),
});

export type Handler = (
  request: ApiRequest,
  params: readonly string[],
  deps: ApiDependencies,
) => Promise<ApiResponse>;

export interface Route {
  readonly method: string;
  /** Literal segments, or null for a parameter (one percent-decoded path segment). */
  readonly segments: readonly (string | null)[];
  readonly handler: Handler;
}

const routes: Route[] = [
  { method: 'POST', segments: ['search'], handler: searchByImage },
  { method: 'GET', segments: ['images', null, 'similar'], handler: searchByKey },
  { method: 'POST', segments: ['uploads'], handler: createUpload },
  { method: 'GET', segments: ['openapi.json'], handler: () => Promise.resolve(json(200, OPENAPI_DOCUMENT)) },
  { method: 'GET', segments: ['status'], handler: stageStatus },
];

async function stageStatus(_request: ApiRequest, _params: readonly string[], deps: ApiDependencies) {
  if (!deps.status) return errorResponse(404, 'no_such_route', 'No status is available here.');
  return json(200, await deps.status());
}

/** Route and run one request. Never throws: every failure becomes a JSON error response. */
export async function handleApiRequest(
  deps: ApiDependencies,
  request: ApiRequest,
  extraRoutes: readonly Route[] = [],
): Promise<ApiResponse> {
  try {
    const segments = request.rawPath.replace(/^\/+|\/+$/g, '').split('/');
    let pathMatched = false;
    for (const route of [...extraRoutes, ...routes]) {
      const params = matchRoute(route, segments);
      if (!params) continue;
      pathMatched = true;
      if (route.method === request.method.toUpperCase()) return await route.handler(request, params, deps);
    }
    if (pathMatched)
      return errorResponse(
        405,
        'method_not_allowed',
        `${request.method} is not allowed on ${request.rawPath}.`,
      );
    return errorResponse(
      404,
      'no_such_route',
      `No API route ${request.method} ${request.rawPath}.`,
      'See /openapi.json for the API.',
    );
  } catch (error) {
    const response = fromError(error);
    if (response.status >= 500) deps.reportError?.(error, request);
    return response;
  }
}

export function defineRoute(method: string, path: string, handler: Handler): Route {
  return {
    method,
    segments: path
      .split('/')
      .filter(Boolean)
      .map((s) => (s.startsWith('{') ? null : s)),
    handler,
  };
}

function matchRoute(route: Route, segments: readonly string[]): string[] | undefined {
  if (route.segments.length !== segments.length) return undefined;
  const params: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const expected = route.segments[i];
    const actual = segments[i]!;
    if (expected === null) params.push(decodeSegment(actual));
    else if (expected !== actual) return undefined;
  }
  return params;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidInputError('The path holds an invalid percent-encoding.', {
      hint: 'Encode keys with encodeURIComponent.',
    });
  }
}

async function searchByImage(
  request: ApiRequest,
  _params: readonly string[],
  deps: ApiDependencies,
): Promise<ApiResponse> {
  const contentType = mediaType(request);
  const body = request.body ?? Buffer.alloc(0);
  if (body.length === 0) {
    throw new InvalidInputError('The request body is empty.', {
      hint: 'Send the image as the body (Content-Type: image/jpeg, ...) or JSON {"image": "<base64>"}.',
    });
  }
  let image: Uint8Array;
  let options: QueryOptions;
  if (contentType === 'multipart/form-data') {
    const form = await parseMultipart(request, { maxFiles: 1, maxFileBytes: deps.maxInlineImageBytes });
    const file = form.files[0];
    if (!file) {
      throw new InvalidInputError('The form holds no file.', {
        hint: 'Send the query image as a file part (for example: curl -F image=@photo.jpg).',
      });
    }
    if (file.truncated) throw inlineTooLarge(deps, file.bytes.byteLength);
    image = file.bytes;
    options = queryOptions({ ...request, query: { ...request.query, ...form.fields } });
  } else if (contentType === 'application/json') {
    const parsed = parseJson(body, searchJsonSchema);
    image =
      parsed.image !== undefined ? decodeBase64(parsed.image) : await readUpload(deps, parsed.uploadKey!);
    options = parsed;
  } else if (IMAGE_CONTENT_TYPES.test(contentType)) {
    image = body;
    options = queryOptions(request);
  } else {
    throw new UnsupportedImageError(`Content type '${contentType || '(none)'}' is not an image.`, {
      hint: 'Send Content-Type image/jpeg, image/png, image/webp, image/gif or image/avif, or application/json with base64.',
    });
  }
  if (image.byteLength > deps.maxInlineImageBytes) throw inlineTooLarge(deps, image.byteLength);
  const hits = await deps.search.searchByImage(image, {
    limit: options.n,
    keyPrefix: options.prefix,
    metric: options.metric,
    rerank: options.rerank,
  });
  return json(200, await searchBody(deps, hits, options));
}

function inlineTooLarge(deps: ApiDependencies, bytes: number): TooLargeError {
  return new TooLargeError(
    `The image is ${bytes} bytes or more; inline queries are limited to ${deps.maxInlineImageBytes} bytes.`,
    {
      hint: deps.uploads
        ? 'Upload it first with POST /uploads, then POST /search {"uploadKey": ...}.'
        : 'Send a smaller image.',
    },
  );
}

export interface MultipartFile {
  readonly field: string;
  /** The file name the client sent (untrusted: never use it as a path unchecked). */
  readonly filename: string;
  readonly mimeType: string;
  readonly bytes: Buffer;
  /** True when the part was longer than maxFileBytes: `bytes` holds only the first maxFileBytes. */
  readonly truncated: boolean;
}

export interface MultipartForm {
  readonly files: readonly MultipartFile[];
  /** Text fields; the last value wins when a name repeats. */
  readonly fields: Readonly<Record<string, string>>;
}

/**
 * Parse a buffered multipart/form-data body (busboy). Malformed bodies, a missing boundary and more
 * files or fields than allowed are InvalidInputError; oversized parts are reported as truncated so the
 * caller can name the limit it enforces.
 */
export function parseMultipart(
  request: ApiRequest,
  limits: { maxFiles: number; maxFileBytes: number },
): Promise<MultipartForm> {
  const malformed = (detail: string) =>
    new InvalidInputError(`The multipart/form-data body is malformed: ${detail}.`, {
      hint: 'Send a form with a file part (curl -F image=@photo.jpg), or the image itself as the body.',
    });
  return new Promise<MultipartForm>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: { 'content-type': request.headers['content-type'] ?? '' },
        limits: {
          files: limits.maxFiles,
          fileSize: limits.maxFileBytes,
          fields: 20,
          fieldSize: 4096,
          parts: 40,
        },
      });
    } catch (error) {
      reject(
        malformed(error instanceof Error ? error.message.toLowerCase().replace(/\.$/, '') : 'unreadable'),
      );
      return;
    }
    const files: MultipartFile[] = [];
    const fields: Record<string, string> = {};
    let tooMany: string | undefined;
    parser.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      let truncated = false;
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => (truncated = true));
      stream.on('end', () =>
        files.push({
          field,
          filename: info.filename ?? '',
          mimeType: info.mimeType,
          bytes: Buffer.concat(chunks),
          truncated,
        }),
      );
    });
    parser.on('field', (name, value) => (fields[name] = value));
    parser.on('filesLimit', () => (tooMany = `more than ${limits.maxFiles} file(s)`));
    parser.on('fieldsLimit', () => (tooMany = 'too many fields'));
    parser.on('partsLimit', () => (tooMany = 'too many parts'));
    parser.on('error', (error: unknown) =>
      reject(
        malformed(error instanceof Error ? error.message.toLowerCase().replace(/\.$/, '') : 'unreadable'),
      ),
    );
    parser.on('close', () => {
      if (tooMany)
        reject(new InvalidInputError(`The form holds ${tooMany}; send at most ${limits.maxFiles}.`));
      else resolve({ files, fields });
    });
    parser.end(request.body ?? Buffer.alloc(0));
  });
}

async function searchByKey(
  request: ApiRequest,
  params: readonly string[],
  deps: ApiDependencies,
): Promise<ApiResponse> {
  const key = params[0]!;
  validateKey(key);
  const options = queryOptions(request);
  const hits = await deps.search.searchByKey(
    { key, source: deps.source },
    { limit: options.n, keyPrefix: options.prefix, metric: options.metric, rerank: options.rerank },
  );
  return json(200, await searchBody(deps, hits, options));
}

async function createUpload(
  request: ApiRequest,
  _params: readonly string[],
  deps: ApiDependencies,
): Promise<ApiResponse> {
  if (!deps.uploads) return errorResponse(404, 'no_such_route', 'Uploads are not available here.');
  const { contentType } = parseJson(request.body ?? Buffer.alloc(0), uploadJsonSchema);
  return json(201, await deps.uploads.create(contentType));
}

async function readUpload(deps: ApiDependencies, key: string): Promise<Uint8Array> {
  if (!deps.uploads)
    throw new InvalidInputError('"uploadKey" is not supported here.', { hint: 'Send the image inline.' });
  validateKey(key, 'uploadKey');
  return deps.uploads.read(key);
}

async function searchBody(
  deps: ApiDependencies,
  hits: readonly SearchHit[],
  options: { n?: number | undefined; metric?: DistanceMetric | undefined },
): Promise<SearchResponseBody> {
  return {
    model: deps.modelId,
    metric: options.metric ?? 'cosine',
    n: options.n ?? 10,
    hits: await Promise.all(
      hits.map(async (hit) => ({
        key: hit.key,
        distance: hit.distance,
        score: hit.score,
        url: await deps.imageUrl(hit.key),
      })),
    ),
  };
}

interface QueryOptions {
  n?: number | undefined;
  prefix?: string | undefined;
  metric?: DistanceMetric | undefined;
  rerank?: number | undefined;
}

/** n, prefix, metric and rerank from the query string, strictly: "1e1", "NaN", "Infinity", "" are errors. */
function queryOptions(request: ApiRequest): QueryOptions {
  const { n, prefix, metric, rerank } = request.query;
  const options: QueryOptions = {};
  if (rerank !== undefined) {
    if (!/^\d{1,3}$/.test(rerank) || Number(rerank) > MAX_RERANK_CANDIDATES) {
      throw new InvalidInputError(
        `rerank must be a whole number from 0 (off) to ${MAX_RERANK_CANDIDATES}; got '${rerank}'.`,
        { context: { rerank } },
      );
    }
    options.rerank = Number(rerank);
  }
  if (n !== undefined) {
    if (!/^\d{1,3}$/.test(n) || Number(n) < MIN_RESULTS || Number(n) > MAX_RESULTS) {
      throw new InvalidInputError(
        `n must be a whole number from ${MIN_RESULTS} to ${MAX_RESULTS}; got '${n}'.`,
        {
          context: { n },
        },
      );
    }
    options.n = Number(n);
  }
  if (prefix !== undefined) options.prefix = prefix;
  if (metric !== undefined) {
    if (metric !== 'cosine' && metric !== 'euclidean') {
      throw new InvalidInputError(`metric must be 'cosine' or 'euclidean'; got '${metric}'.`);
    }
    options.metric = metric;
  }
  return options;
}

function parseJson<T>(body: Buffer, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new InvalidInputError('The request body is not valid JSON.', { hint: 'Check the JSON syntax.' });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new InvalidInputError(`Invalid request: ${problems.join('; ')}.`, { context: { problems } });
  }
  return parsed.data;
}

function decodeBase64(text: string): Buffer {
  const compact = text.replace(/^data:[^;,]+;base64,/, '').replace(/\s+/g, '');
  if (compact.length % 4 === 1 || !BASE64.test(compact)) {
    throw new InvalidInputError('"image" is not valid base64.', {
      hint: 'Send standard base64 (RFC 4648), optionally as a data: URL.',
    });
  }
  return Buffer.from(compact, 'base64');
}

function mediaType(request: ApiRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

export function json(status: number, body: unknown): ApiResponse {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: JSON.stringify(body),
  };
}

export function errorResponse(status: number, code: string, message: string, hint?: string): ApiResponse {
  return json(status, { error: { code, message, ...(hint ? { hint } : {}) } });
}

/** The one mapping from errors to HTTP responses; internals (stacks, SQL, paths) never leak. */
export function fromError(error: unknown): ApiResponse {
  const { httpStatus, body } = describeError(error);
  return json(httpStatus, { error: body });
}
