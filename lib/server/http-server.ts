import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { errorResponse, fromError, type ApiRequest, type ApiResponse } from '../api/http-api';
import { ConfigError } from '../core/errors';

export interface HttpServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Largest request body accepted; larger ones get 413 without being buffered. */
  readonly maxRequestBytes: number;
  readonly handle: (request: ApiRequest) => Promise<ApiResponse>;
  /** Folder of the web page's static files (index.html, app.js, app.css). */
  readonly webDir?: string;
  /**
   * Slow-client limits (slowloris): headers must arrive within `headersMs` (default 15 s) and the whole
   * request within `requestMs` (default 120 s; a 50 MiB upload over loopback takes well under a second),
   * checked every `checkEveryMs` (default 1 s; Node's own default is 30 s). Late clients get 408.
   */
  readonly timeouts?: {
    readonly headersMs?: number;
    readonly requestMs?: number;
    readonly checkEveryMs?: number;
  };
}

export interface RunningHttpServer {
  /** http://host:port, with the real port when 0 was asked for. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export const WEB_DIR = join(__dirname, 'web');

const STATIC_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

/** Every response: no sniffing, no referrer; the page may load nothing but its own origin. */
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
};

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * The node:http shell around the API: it translates node's request into an ApiRequest (body buffered up
 * to the limit) and the ApiResponse back, serves the page's static files, and does nothing else.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const webDir = options.webDir ?? WEB_DIR;
  const assets = new Map(
    Object.entries(STATIC_FILES).map(([path, { file, type }]) => [
      path,
      { type, body: readFileSync(join(webDir, file)) },
    ]),
  );
  const loopback = LOOPBACK_NAMES.has(options.host);

  const server = createServer(
    {
      headersTimeout: options.timeouts?.headersMs ?? 15_000,
      requestTimeout: options.timeouts?.requestMs ?? 120_000,
      connectionsCheckingInterval: options.timeouts?.checkEveryMs ?? 1_000,
    },
    (req, res) => {
      void serve(req, res).catch(() => {
        if (!res.headersSent) send(res, fromError(new Error('unexpected')));
        else res.destroy();
      });
    },
  );

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const forbidden = refuseForeign(req, method, loopback);
    if (forbidden) {
      req.resume();
      send(res, forbidden);
      return;
    }
    const asset = assets.get(url.pathname);
    if (asset && (method === 'GET' || method === 'HEAD')) {
      req.resume();
      send(res, {
        status: 200,
        headers: { 'content-type': asset.type, 'cache-control': 'no-cache' },
        body: asset.body,
      });
      return;
    }
    const body = BODY_METHODS.has(method) ? await readBody(req, options.maxRequestBytes) : undefined;
    if (body === 'too-large') {
      send(
        res,
        errorResponse(
          413,
          'too_large',
          `The request body is larger than the ${options.maxRequestBytes}-byte limit.`,
          'Send a smaller image (the limit follows OMPF_MAX_IMAGE_BYTES).',
        ),
        true,
      );
      return;
    }
    if (!BODY_METHODS.has(method)) req.resume();
    const query: Record<string, string> = {};
    for (const [name, value] of url.searchParams) if (!(name in query)) query[name] = value;
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string') headers[name] = value;
      else if (Array.isArray(value)) headers[name] = value.join(', ');
    }
    const response = await options.handle({ method, rawPath: url.pathname, query, headers, body });
    send(res, method === 'HEAD' ? { ...response, body: '' } : response);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') {
        reject(
          new ConfigError(`Port ${options.port} on ${options.host} is already in use.`, {
            hint: `Stop the program using it, or start on another port: PORT=${options.port + 1} npm start.`,
          }),
        );
      } else if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND') {
        reject(
          new ConfigError(`Cannot listen on ${options.host}: no such local address.`, {
            hint: 'Unset OMPF_HOST to listen on 127.0.0.1.',
          }),
        );
      } else reject(error);
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return { url: `http://${host}:${port}`, port, close: () => closeServer(server) };
}

/**
 * Refuse requests a web page on another site could make to this loopback server: a Host header other
 * than a loopback name (DNS rebinding), or a cross-origin write (a form posted from elsewhere).
 */
function refuseForeign(req: IncomingMessage, method: string, loopback: boolean): ApiResponse | undefined {
  const host = req.headers.host ?? '';
  if (loopback) {
    const hostname = host.replace(/:\d+$/, '').toLowerCase();
    if (!LOOPBACK_NAMES.has(hostname)) {
      return errorResponse(403, 'forbidden', `Requests for host '${host}' are not served here.`);
    }
  }
  const origin = req.headers.origin;
  if (origin !== undefined && method !== 'GET' && method !== 'HEAD') {
    let originHost: string;
    try {
      originHost = new URL(origin).host;
    } catch {
      originHost = '';
    }
    if (originHost !== host) {
      return errorResponse(403, 'forbidden', `Cross-origin ${method} requests from ${origin} are refused.`);
    }
  }
  return undefined;
}

/**
 * Buffer the body up to `limit` bytes. An over-limit body is read to its end and discarded (so the client
 * gets the 413 instead of a reset connection), unless it is absurdly large, then the connection is cut.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  const declared = Number(req.headers['content-length']);
  const discardCap = Math.max(limit * 4, 256 * 1024 * 1024);
  return new Promise((resolve, reject) => {
    if (Number.isFinite(declared) && declared > discardCap) {
      resolve('too-large');
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.byteLength;
      if (received <= limit) chunks.push(chunk);
      else if (received > discardCap) {
        req.destroy();
        resolve('too-large');
      }
    });
    req.on('end', () => resolve(received > limit ? 'too-large' : Buffer.concat(chunks, received)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, response: ApiResponse, closeConnection = false): void {
  if (res.destroyed) return;
  const body = typeof response.body === 'string' ? Buffer.from(response.body) : response.body;
  res.writeHead(response.status, {
    ...SECURITY_HEADERS,
    ...response.headers,
    'content-length': String(body.byteLength),
    ...(closeConnection ? { connection: 'close' } : {}),
  });
  res.end(body);
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
