/**
 * API Gateway (REST, proxy integration) -> the HTTP API of lib/api/http-api.ts: POST /search,
 * GET /images/{key}/similar, POST /uploads, GET /openapi.json.
 */
import { searchHandler } from '../lib/runtime/aws';

export const handler = searchHandler();
