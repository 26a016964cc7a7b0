/**
 * The API contract, served at GET /openapi.json by the cloud endpoint and the local server alike.
 * Paths marked x-ompf-runtime: local exist only on the local server.
 */
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
];

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
          'The image as the body (image/* content type, up to the inline limit: about 4.5 MB in the cloud), or JSON with base64 "image", or JSON with the "uploadKey" of an image uploaded through POST /uploads.',
        parameters: searchParameters,
        requestBody: {
          required: true,
          content: {
            'image/jpeg': { schema: { type: 'string', format: 'binary' } },
            'image/png': { schema: { type: 'string', format: 'binary' } },
            'image/webp': { schema: { type: 'string', format: 'binary' } },
            'application/json': { schema: { $ref: '#/components/schemas/SearchRequest' } },
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
                  description: 'where to fetch the image (short-lived presigned URL in the cloud)',
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
