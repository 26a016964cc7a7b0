import { existsSync } from 'node:fs';
import { pullModel, type PullProgress } from '../adapters/models/model-download';
import { modelPath, resolveModelSpec } from '../adapters/models/model-registry';
import type { ModelSpec } from '../core/model-spec';
import type { Config } from '../runtime/config';
import { openLocalEngine, type LocalEngine } from '../runtime/local';
import { GalleryFiles } from './gallery-files';
import { startHttpServer } from './http-server';
import { IndexQueue } from './index-queue';
import { createLocalApi } from './local-api';

export interface ServeOptions {
  /** One line of human-readable news (start-up, indexing activity). */
  readonly log?: (line: string) => void;
  /** Download progress when the model must be pulled; defaults to a log line every 10%. */
  readonly progress?: PullProgress;
  readonly fetchImpl?: typeof fetch;
  /** Folder watching (on by default). */
  readonly watch?: boolean;
}

export interface LocalServer {
  readonly url: string;
  readonly engine: LocalEngine;
  readonly queue: IndexQueue;
  readonly gallery: string;
  close(): Promise<void>;
}

/**
 * Body limit of one request: the largest image, base64-encoded in JSON (4/3), plus room for the form or
 * JSON around it.
 */
export function maxRequestBytes(maxImageBytes: number): number {
  return Math.ceil((maxImageBytes * 4) / 3) + 64 * 1024;
}

/**
 * `ompf serve` / `npm start`: make sure the model is there (pull it, checksum verified, when missing),
 * open the engine, reconcile and watch the gallery, and serve the API and the page.
 */
export async function startLocalServer(config: Config, options: ServeOptions = {}): Promise<LocalServer> {
  const log = options.log ?? (() => undefined);
  const spec = resolveModelSpec(config.model);
  await ensureModel(spec, config, log, options.progress ?? logProgress(log), options.fetchImpl);
  const files = await GalleryFiles.open(config.galleryDir, config.maxImageBytes);
  const engine = await openLocalEngine(config);
  let queue: IndexQueue | undefined;
  try {
    queue = new IndexQueue(files, engine.store, engine.indexing, {
      log,
      ...(options.watch === undefined ? {} : { watch: options.watch }),
    });
    await queue.start();
    const limit = maxRequestBytes(config.maxImageBytes);
    const http = await startHttpServer({
      host: config.host,
      port: config.port,
      maxRequestBytes: limit,
      handle: createLocalApi({
        search: engine.search,
        store: engine.store,
        preprocessor: engine.preprocessor,
        modelId: engine.spec.id,
        files,
        queue,
        maxImageBytes: config.maxImageBytes,
        maxPixels: config.maxPixels,
        maxRequestBytes: limit,
      }),
    });
    const running = queue;
    return {
      url: http.url,
      engine,
      queue: running,
      gallery: files.root,
      close: async () => {
        await http.close();
        await running.close();
        await engine.close();
      },
    };
  } catch (error) {
    await queue?.close();
    await engine.close();
    throw error;
  }
}

/**
 * A missing model file is downloaded (checksum verified before it is installed). Offline, pullModel's
 * error says where to fetch the file, where to put it, and how to pick another model instead.
 */
export async function ensureModel(
  spec: ModelSpec,
  config: Pick<Config, 'modelsDir' | 'modelBaseUrl'>,
  log: (line: string) => void,
  progress: PullProgress,
  fetchImpl?: typeof fetch,
): Promise<void> {
  const path = modelPath(spec, config.modelsDir);
  if (existsSync(path)) return;
  const bytes = spec.accepted[0].sizeBytes;
  const size = bytes ? ` (${(bytes / 1e6).toFixed(0)} MB)` : '';
  log(`Model '${spec.id}' is not installed at ${path}; downloading it${size}, SHA-256 verified.`);
  await pullModel(spec, config.modelsDir, progress, {
    baseUrl: config.modelBaseUrl,
    ...(fetchImpl ? { fetchImpl } : {}),
  });
  log(`Installed model '${spec.id}'.`);
}

function logProgress(log: (line: string) => void): PullProgress {
  let total = 0;
  let received = 0;
  let lastDecile = 0;
  return {
    start: (bytes, url) => {
      total = bytes ?? 0;
      received = 0;
      lastDecile = 0;
      log(`  downloading ${url}`);
    },
    advance: (bytes) => {
      received += bytes;
      const decile = total > 0 ? Math.floor((received / total) * 10) : 0;
      if (decile > lastDecile) {
        lastDecile = decile;
        log(`  ${decile * 10}% (${(received / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB)`);
      }
    },
    stop: () => undefined,
  };
}
