/**
 * The API contract, served at GET /openapi.json by the cloud endpoint and the local server alike.
 * Paths marked x-ompf-runtime: local exist only on the local server.
 */
import { DEFAULT_HASH_BITS, HASH_CONFIRMED_CEILING, MAX_HASH_BITS } from '../core/duplicates';
import { MAX_RERANK_CANDIDATES } from '../core/reranking';

const RERANK_DESCRIPTION =
  "k-reciprocal re-ranking of the first this-many candidates (0: off); the deployment default when absent. Distances stay each image's own; only the order changes";

function rerankSchema() {
  return { type: 'integer', minimum: 0, maximum: MAX_RERANK_CANDIDATES };
}

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

const searchParameters = [
  {
    name: 'n',
    in: 'query',
    schema: { type: 'integer', minimum: 1, maximum: 100, default: 10 },
    description: 'number of results',
  },
  {
    name: 'prefix',
    in: 'query',
    schema: { type: 'string', maxLength: 1024 },
    description: 'only keys starting with this',
  },
  {
    name: 'metric',
    in: 'query',
    schema: { type: 'string', enum: ['cosine', 'euclidean'], default: 'cosine' },
  },
  {
    name: 'rerank',
    in: 'query',
    schema: rerankSchema(),
    description: RERANK_DESCRIPTION,
  },
];

const hashBitsParameter = {
  name: 'hashBits',
  in: 'query',
  schema: { type: 'integer', minimum: 0, maximum: MAX_HASH_BITS, default: DEFAULT_HASH_BITS },
  description: `perceptual-hash bits (of 64) within which two images whose vectors are up to ${HASH_CONFIRMED_CEILING} apart are duplicates too; 0: equal hashes only`,
};

const keyParameter = {
  name: 'key',
  in: 'path',
  required: true,
  schema: { type: 'string', maxLength: 1024 },
  description: 'image key, percent-encoded as one path segment (a "/" inside the key is %2F)',
};

const searchResults = {
  description: 'the nearest images, nearest first; ties ordered by key',
  content: { 'application/json': { schema: { $ref: '#/components/schemas/SearchResponse' } } },
};

export const OPENAPI_DOCUMENT = {
  openapi: '3.0.3',
  info: {
    title: 'ompf image similarity search',
    version: '1',
    description:
      'Give it a picture, get the N most similar images of the gallery. Errors are JSON {"error": {code, message, hint}}.',
  },
  paths: {
    '/search': {
      post: {
        summary: 'Search by an image',
        description:
          'The image as the body (image/* content type, up to the inline limit: about 4.5 MB in the cloud), or a multipart/form-data form with the image as a file part, or JSON with base64 "image", or JSON with the "uploadKey" of an image uploaded through POST /uploads.',
        parameters: searchParameters,
        requestBody: {
          required: true,
          content: {
            'image/jpeg': { schema: { type: 'string', format: 'binary' } },
            'image/png': { schema: { type: 'string', format: 'binary' } },
            'image/webp': { schema: { type: 'string', format: 'binary' } },
            'application/json': { schema: { $ref: '#/components/schemas/SearchRequest' } },
            'multipart/form-data': {
              schema: {
                type: 'object',
                description: 'one file part (the query image) and optional n, prefix, metric, rerank fields',
                properties: {
                  image: { type: 'string', format: 'binary' },
                  n: { type: 'integer', minimum: 1, maximum: 100 },
                  prefix: { type: 'string' },
                  metric: { type: 'string', enum: ['cosine', 'euclidean'] },
                  rerank: rerankSchema(),
                },
              },
            },
          },
        },
        responses: {
          '200': searchResults,
          '400': errorResponse('bad input: empty body, invalid JSON or base64, n out of range'),
          '413': errorResponse('image too large: use POST /uploads'),
          '415': errorResponse('not an image, or an unsupported format (HEIC)'),
          '429': errorResponse('throttled'),
          '500': errorResponse('internal error (no details)'),
        },
      },
    },
    '/images/{key}/similar': {
      get: {
        summary: 'Search by an indexed image, without re-embedding it (the image itself is left out)',
        parameters: [keyParameter, ...searchParameters],
        responses: {
          '200': searchResults,
          '400': errorResponse('bad input'),
          '404': errorResponse('no indexed image has this key'),
          '429': errorResponse('throttled'),
        },
      },
    },
    '/uploads': {
      post: {
        summary: 'Get a short-lived presigned URL to upload a large query image',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/UploadRequest' } } },
        },
        responses: {
          '201': {
            description:
              'PUT the image to uploadUrl with the given headers, then POST /search {"uploadKey": key}',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/UploadTicket' } } },
          },
          '400': errorResponse('bad input'),
        },
      },
    },
    '/images/{key}': {
      'x-ompf-runtime': 'local',
      get: {
        summary: 'The image file itself (local server), or a WebP thumbnail with ?w=',
        parameters: [
          keyParameter,
          {
            name: 'w',
            in: 'query',
            schema: { type: 'integer', minimum: 16, maximum: 1024 },
            description: 'thumbnail width and height bound, in pixels',
          },
        ],
        responses: {
          '200': { description: 'the image bytes', content: { 'image/*': {} } },
          '304': { description: 'not modified (If-None-Match)' },
          '400': errorResponse('invalid key: "..", hidden or absolute paths, not an image extension'),
          '404': errorResponse('no such image in the gallery'),
        },
      },
      put: {
        summary: 'Write an image into the gallery under this key (replacing it), then index it',
        parameters: [keyParameter],
        requestBody: {
          required: true,
          content: { 'image/*': { schema: { type: 'string', format: 'binary' } } },
        },
        responses: {
          '202': {
            description: 'written and queued for indexing',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/UploadedImage' } } },
          },
          '400': errorResponse('invalid key or empty body'),
          '413': errorResponse('image over OMPF_MAX_IMAGE_BYTES'),
          '415': errorResponse('not an image, or an unsupported format (HEIC)'),
        },
      },
      delete: {
        summary: 'Delete an image from the gallery folder and the index',
        parameters: [keyParameter],
        responses: {
          '200': {
            description: 'deleted',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['key', 'deleted', 'file', 'index'],
                  properties: {
                    key: { type: 'string' },
                    deleted: { type: 'boolean' },
                    file: { type: 'boolean', description: 'a file was deleted' },
                    index: { type: 'boolean', description: 'an index entry was deleted' },
                  },
                },
              },
            },
          },
          '400': errorResponse('invalid key'),
          '404': errorResponse('neither a file nor an index entry has this key'),
        },
      },
    },
    '/images': {
      'x-ompf-runtime': 'local',
      post: {
        summary: 'Add images to the gallery (local server); they are indexed in the background',
        description:
          'multipart/form-data with up to 20 file parts and an optional "folder" field, or one image as the body with ?name=. Every file is decoded before any is written: a request adds all its images or none. A name already taken by other content gets a suffix (photo-2.jpg); identical content is reported as a duplicate.',
        parameters: [
          { name: 'folder', in: 'query', schema: { type: 'string' }, description: 'gallery sub-folder' },
          { name: 'name', in: 'query', schema: { type: 'string' }, description: 'file name for a raw body' },
        ],
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                properties: {
                  file: { type: 'array', items: { type: 'string', format: 'binary' } },
                  folder: { type: 'string' },
                },
              },
            },
            'image/*': { schema: { type: 'string', format: 'binary' } },
          },
        },
        responses: {
          '200': {
            description: 'every image was already in the gallery (duplicates)',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/UploadResult' } } },
          },
          '202': {
            description: 'written and queued for indexing',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/UploadResult' } } },
          },
          '400': errorResponse('empty file, no file, invalid folder'),
          '413': errorResponse('a file over OMPF_MAX_IMAGE_BYTES, or the request over its limit'),
          '415': errorResponse('not an image, or an unsupported format (HEIC)'),
        },
      },
    },
    '/status': {
      get: {
        summary:
          "Locally: indexing progress of the gallery (pending, indexed, failed with reasons: the Status schema). In the cloud: the index answering queries and any being built beside it (model, images, failures), the recent reconcile runs and the queues' depth",
        responses: {
          '200': {
            description: 'status',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Status' } } },
          },
        },
      },
    },
    '/duplicates': {
      get: {
        summary:
          'Groups of near-duplicates (the same picture re-saved, resized, cropped, re-encoded, lightly edited), largest first; byte-identical copies marked exact',
        parameters: [
          {
            name: 'threshold',
            in: 'query',
            schema: { type: 'number', minimum: 0, maximum: 0.5 },
            description:
              "cosine distance between the images' own vectors (default chosen by `ompf eval-duplicates`)",
          },
          hashBitsParameter,
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
          {
            name: 'cursor',
            in: 'query',
            schema: { type: 'string' },
            description: 'nextCursor of the previous page',
          },
        ],
        responses: {
          '200': {
            description:
              "{model, threshold, hashBits, basis, total, groups: [{members: [{source, key, distance, hashBits?, exact, width, height, bytes, url}]}], nextCursor?}; each group's first member is its largest image, distances (cosine, and perceptual-hash bits when both images have a hash) are from it",
          },
          '400': errorResponse('threshold, hashBits, limit or cursor out of range'),
        },
      },
    },
    '/images/{key}/duplicates': {
      get: {
        summary: 'The duplicate group of one indexed image (empty members when it has none)',
        parameters: [
          keyParameter,
          { name: 'threshold', in: 'query', schema: { type: 'number', minimum: 0, maximum: 0.5 } },
          hashBitsParameter,
        ],
        responses: {
          '200': {
            description: '{model, key, threshold, hashBits, members: [...]}, as one group of /duplicates',
          },
          '400': errorResponse('bad key, threshold or hashBits'),
          '404': errorResponse('no indexed image has this key'),
        },
      },
    },
    '/openapi.json': {
      get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3 document' } } },
    },
  },
  components: {
    schemas: {
      SearchRequest: {
        type: 'object',
        additionalProperties: false,
        properties: {
          image: {
            type: 'string',
            format: 'byte',
            description: 'base64 image (a data: URL prefix is accepted)',
          },
          uploadKey: { type: 'string', description: 'key returned by POST /uploads' },
          n: { type: 'integer', minimum: 1, maximum: 100, default: 10 },
          prefix: { type: 'string', maxLength: 1024 },
          metric: { type: 'string', enum: ['cosine', 'euclidean'], default: 'cosine' },
          rerank: { ...rerankSchema(), description: RERANK_DESCRIPTION },
        },
      },
      SearchResponse: {
        type: 'object',
        required: ['model', 'metric', 'n', 'hits'],
        properties: {
          model: { type: 'string', description: 'embedding model id' },
          metric: { type: 'string', enum: ['cosine', 'euclidean'] },
          n: { type: 'integer' },
          hits: {
            type: 'array',
            items: {
              type: 'object',
              required: ['key', 'distance', 'score', 'url'],
              properties: {
                key: { type: 'string' },
                distance: {
                  type: 'number',
                  description: 'cosine distance (0..2), or Euclidean between unit vectors',
                },
                score: { type: 'number', minimum: 0, maximum: 1, description: '1 - cosineDistance / 2' },
                url: {
                  type: 'string',
                  description:
                    'where to fetch the image: a short-lived presigned URL in the cloud, a path relative to the server (/images/{key}) locally',
                },
              },
            },
          },
        },
      },
      UploadRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['contentType'],
        properties: { contentType: { type: 'string', example: 'image/jpeg' } },
      },
      UploadTicket: {
        type: 'object',
        required: ['key', 'uploadUrl', 'method', 'headers', 'expiresInSeconds'],
        properties: {
          key: { type: 'string' },
          uploadUrl: { type: 'string' },
          method: { type: 'string', enum: ['PUT'] },
          headers: { type: 'object', additionalProperties: { type: 'string' } },
          expiresInSeconds: { type: 'integer' },
        },
      },
      UploadedImage: {
        type: 'object',
        required: ['key', 'status', 'url'],
        properties: {
          key: {
            type: 'string',
            description: 'where the image was stored (a suffix is added on a name clash)',
          },
          status: { type: 'string', enum: ['queued', 'duplicate'] },
          url: { type: 'string' },
        },
      },
      UploadResult: {
        type: 'object',
        required: ['images'],
        properties: { images: { type: 'array', items: { $ref: '#/components/schemas/UploadedImage' } } },
      },
      Status: {
        type: 'object',
        required: ['model', 'state', 'gallery', 'counts', 'failures', 'limits'],
        properties: {
          model: { type: 'string' },
          state: {
            type: 'string',
            enum: ['starting', 'scanning', 'indexing', 'idle', 'retrying', 'stopped'],
          },
          gallery: { type: 'string', description: 'absolute path of the gallery folder' },
          watching: { type: 'boolean' },
          counts: {
            type: 'object',
            properties: {
              pending: { type: 'integer' },
              indexed: { type: 'integer' },
              failed: { type: 'integer' },
            },
          },
          processed: {
            type: 'object',
            description: 'work done since the server started',
            properties: {
              indexed: { type: 'integer' },
              unchanged: { type: 'integer' },
              removed: { type: 'integer' },
              failed: { type: 'integer' },
            },
          },
          failures: {
            type: 'array',
            description: 'the first 100 failures, by key',
            items: {
              type: 'object',
              properties: {
                key: { type: 'string' },
                reason: { type: 'string' },
                failedAt: { type: 'string', format: 'date-time' },
              },
            },
          },
          lastError: {
            type: 'string',
            description: 'set while indexing is paused by an infrastructure error',
          },
          limits: {
            type: 'object',
            properties: {
              maxImageBytes: { type: 'integer' },
              maxRequestBytes: { type: 'integer' },
              maxResults: { type: 'integer' },
              maxUploadFiles: { type: 'integer' },
            },
          },
        },
      },
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: { type: 'string', example: 'invalid_input' },
              message: { type: 'string' },
              hint: { type: 'string', description: 'what to do next' },
            },
          },
        },
      },
    },
  },
} as const;
