import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadConfig, type Config } from '../../lib/runtime/config';
import { startLocalServer, type LocalServer } from '../../lib/server/serve';
import { CALTECH_DIR, MODELS_DIR, requirePath } from '../helpers/shared';

/** A Caltech photo by class and number (1-based): photo('okapi', 3) is okapi/image_0003.jpg. */
export function photo(cls: string, n: number): string {
  return join(CALTECH_DIR, cls, `image_${String(n).padStart(4, '0')}.jpg`);
}

/** A fresh work folder with a gallery/ (filled from `files`: key -> source path) and a store/. */
export function workDir(files: Record<string, string> = {}): { dir: string; gallery: string; data: string } {
  requirePath(CALTECH_DIR, 'Dataset');
  const dir = mkdtempSync(join(tmpdir(), 'ompf-server-'));
  const gallery = join(dir, 'gallery');
  mkdirSync(gallery);
  for (const [key, source] of Object.entries(files)) {
    mkdirSync(dirname(join(gallery, key)), { recursive: true });
    copyFileSync(source, join(gallery, key));
  }
  return { dir, gallery, data: join(dir, 'store') };
}

export function testConfig(
  work: { gallery: string; data: string },
  env: Record<string, string> = {},
): Config {
  return loadConfig({
    OMPF_MODELS_DIR: MODELS_DIR,
    OMPF_MODEL: 'mobilenetv2-int8',
    OMPF_DATA_DIR: work.data,
    OMPF_GALLERY_DIR: work.gallery,
    PORT: '0',
    ...env,
  });
}

export async function startTestServer(
  work: { gallery: string; data: string },
  env: Record<string, string> = {},
): Promise<LocalServer> {
  const server = await startLocalServer(testConfig(work, env));
  await server.queue.whenIdle();
  return server;
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly bytes: Buffer;
  json<T = Record<string, unknown>>(): T;
}

/** One HTTP request to the running server, over a real socket. */
export async function call(
  server: { url: string },
  method: string,
  path: string,
  init: { headers?: Record<string, string>; body?: Buffer | FormData | string } = {},
): Promise<Reply> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    ...(init.headers ? { headers: init.headers } : {}),
    ...(init.body === undefined ? {} : { body: init.body }),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  return {
    status: response.status,
    headers: response.headers,
    bytes,
    json: <T>() => JSON.parse(bytes.toString('utf8')) as T,
  };
}

export function form(
  files: { name: string; bytes: Buffer; type?: string }[],
  fields: Record<string, string> = {},
): FormData {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) data.append(name, value);
  for (const file of files) {
    data.append('file', new Blob([file.bytes], { type: file.type ?? 'image/jpeg' }), file.name);
  }
  return data;
}

/** Retry `check` until it stops throwing (watcher events arrive after the write settles). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

export interface StatusBody {
  state: string;
  gallery: string;
  counts: { pending: number; indexed: number; failed: number };
  failures: { key: string; reason: string }[];
  limits: { maxImageBytes: number; maxRequestBytes: number };
}
