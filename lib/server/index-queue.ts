import { watch, type FSWatcher } from 'chokidar';
import { describeError } from '../core/errors';
import type { IndexingService } from '../core/indexing';
import type { IndexFailure, VectorStore } from '../core/ports';
import { isImageKey, keyOf, type GalleryFiles } from './gallery-files';

export type QueueState = 'starting' | 'scanning' | 'indexing' | 'idle' | 'retrying' | 'stopped';

export interface QueueStatus {
  readonly state: QueueState;
  readonly gallery: string;
  readonly watching: boolean;
  readonly counts: { readonly pending: number; readonly indexed: number; readonly failed: number };
  /** Work done since the server started. */
  readonly processed: {
    readonly indexed: number;
    readonly unchanged: number;
    readonly removed: number;
    readonly failed: number;
  };
  /** Failures of this gallery with their reasons (the first `failureLimit`, by key). */
  readonly failures: readonly { key: string; reason: string; failedAt: string }[];
  /** Set while the worker retries after an infrastructure error (database unavailable, ...). */
  readonly lastError: string | undefined;
}

export interface IndexQueueOptions {
  /** Keys handed to the indexing core per run: small enough for new events and progress to interleave. */
  readonly chunkSize?: number;
  /** Watch the folder (on by default). Off, only the start scan and explicit marks feed the queue. */
  readonly watch?: boolean;
  readonly log?: (line: string) => void;
  /** Optimise the store once the queue runs dry after this many rows written (default 100). */
  readonly optimiseAfterWrites?: number;
}

/**
 * The local indexing queue. The gallery folder itself is the durable queue: a key is "dirty" when its
 * file may differ from the index, and the worker reconciles each dirty key with the disk (file present:
 * index it, unchanged content skipped by hash; file gone: remove it and its failure record). At start
 * every key on disk or in the store is dirty, so a file added, changed or deleted while the server was
 * down is picked up; while running, the watcher and the API mark keys dirty. Nothing acknowledged to a
 * client lives only in memory: uploads are on disk before they are queued.
 */
export class IndexQueue {
  private readonly dirty = new Set<string>();
  private readonly inFlight = new Set<string>();
  /** Keys of the in-flight chunk already settled by the indexing core (for a live pending count). */
  private inFlightDone = 0;
  private state: QueueState = 'starting';
  private watcher: FSWatcher | undefined;
  private wake: (() => void) | undefined;
  private closed = false;
  private loop: Promise<void> | undefined;
  private lastError: string | undefined;
  private idleWaiters: (() => void)[] = [];
  private readonly processed = { indexed: 0, unchanged: 0, removed: 0, failed: 0 };
  private readonly chunkSize: number;
  private readonly log: (line: string) => void;
  /** Rows written (indexed or removed) since the store was last optimised. */
  private writesSinceOptimise = 0;

  constructor(
    private readonly files: GalleryFiles,
    private readonly store: VectorStore,
    private readonly indexing: IndexingService,
    private readonly options: IndexQueueOptions = {},
  ) {
    this.chunkSize = options.chunkSize ?? 32;
    this.log = options.log ?? (() => undefined);
  }

  get source(): string {
    return this.files.root;
  }

  /** Start watching, then queue the start-up reconciliation; returns once the watcher is ready. */
  async start(): Promise<void> {
    if (this.options.watch !== false) await this.startWatcher();
    this.loop = this.run();
  }

  /** Mark keys for reconciliation with the disk (after an upload, a delete, a watcher event). */
  mark(keys: Iterable<string>): void {
    for (const key of keys) this.dirty.add(key);
    this.wake?.();
  }

  /** Forget a key already reconciled by the caller (a delete through the API). */
  forget(key: string): void {
    this.dirty.delete(key);
  }

  /** Resolves when nothing is pending or in flight (for tests and graceful shutdown). */
  whenIdle(): Promise<void> {
    const settled = this.dirty.size === 0 && this.inFlight.size === 0 && this.state === 'idle';
    if (settled || this.state === 'stopped') return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async status(failureLimit = 100): Promise<QueueStatus> {
    const [stats, failures] = await Promise.all([this.store.stats(), this.store.listFailures(this.source)]);
    return {
      state: this.state,
      gallery: this.source,
      watching: this.watcher !== undefined,
      counts: {
        pending: this.dirty.size + this.inFlight.size - this.inFlightDone,
        indexed: stats.sources.find((s) => s.source === this.source)?.images ?? 0,
        failed: failures.length,
      },
      processed: { ...this.processed },
      failures: failures.slice(0, failureLimit).map((f: IndexFailure) => ({
        key: f.key,
        reason: f.reason,
        failedAt: f.failedAt.toISOString(),
      })),
      lastError: this.lastError,
    };
  }

  /** Stop watching, let the current chunk finish, stop the worker. Pending keys are re-found at start. */
  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.watcher?.close();
    this.watcher = undefined;
    await this.loop;
    this.state = 'stopped';
    this.releaseIdleWaiters();
  }

  private async startWatcher(): Promise<void> {
    const root = this.files.root;
    const watcher = watch(root, {
      ignoreInitial: true,
      followSymlinks: false,
      // Hidden files and folders (and our staging folder) are not part of the gallery.
      ignored: (path: string) => path !== root && keyOf(root, path) === undefined,
      // A file being copied in is indexed once it stops growing, not half-written.
      awaitWriteFinish: { stabilityThreshold: 400, pollInterval: 100 },
    });
    const onFile = (path: string) => {
      const key = keyOf(root, path);
      if (key !== undefined && isImageKey(key)) this.mark([key]);
    };
    watcher.on('add', onFile).on('change', onFile).on('unlink', onFile);
    watcher.on('unlinkDir', (path: string) => {
      const key = keyOf(root, path);
      if (key !== undefined) void this.markStoredUnder(`${key}/`);
    });
    watcher.on('error', (error: unknown) => {
      this.log(`watcher error: ${error instanceof Error ? error.message : String(error)}; rescanning`);
      void this.markEverything().catch(() => undefined);
    });
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.watcher = watcher;
  }

  /** Every key on disk, in the index or in the failure list: the start-up reconciliation. */
  private async markEverything(): Promise<void> {
    const [onDisk, stored, failures] = await Promise.all([
      this.files.listKeys(),
      this.store.listKeys(this.source),
      this.store.listFailures(this.source),
    ]);
    this.mark([...onDisk, ...stored, ...failures.map((f) => f.key)]);
  }

  private async markStoredUnder(prefix: string): Promise<void> {
    const [stored, failures] = await Promise.all([
      this.store.listKeys(this.source),
      this.store.listFailures(this.source),
    ]);
    this.mark([...stored, ...failures.map((f) => f.key)].filter((key) => key.startsWith(prefix)));
  }

  private async run(): Promise<void> {
    let backoffMs = 500;
    let scanned = false;
    while (!this.closed) {
      try {
        if (!scanned) {
          this.state = 'scanning';
          await this.markEverything();
          scanned = true;
          if (this.dirty.size > 0) this.log(`start-up scan: ${this.dirty.size} keys to reconcile`);
        }
        if (this.dirty.size === 0 && this.writesSinceOptimise >= (this.options.optimiseAfterWrites ?? 100)) {
          // What `ompf index` does after a run: pick the search strategy for the new size (binary
          // candidates on PGlite past OMPF_BINARY_MIN_ROWS, HNSW on PostgreSQL), ANALYZE, and on PGlite
          // (no autovacuum) VACUUM the versions that rewrites left. Only when the queue runs dry, so it
          // never delays an upload's indexing, and only after enough writes to matter.
          const strategy = await this.store.optimise();
          this.writesSinceOptimise = 0;
          this.log(`store optimised: ${strategy} search`);
          continue;
        }
        if (this.dirty.size === 0) {
          this.state = 'idle';
          this.releaseIdleWaiters();
          await this.sleep(Number.POSITIVE_INFINITY);
          continue;
        }
        this.state = 'indexing';
        await this.reconcile(this.takeChunk());
        backoffMs = 500;
        this.lastError = undefined;
      } catch (error) {
        // An infrastructure failure (database unavailable, disk error): keep the keys, retry later.
        for (const key of this.inFlight) this.dirty.add(key);
        this.inFlight.clear();
        this.inFlightDone = 0;
        this.lastError = describeError(error).body.message;
        this.state = 'retrying';
        this.log(`indexing paused: ${this.lastError}; retrying in ${backoffMs / 1000} s`);
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  }

  private takeChunk(): string[] {
    const chunk: string[] = [];
    for (const key of this.dirty) {
      if (chunk.length >= this.chunkSize) break;
      chunk.push(key);
    }
    for (const key of chunk) {
      this.dirty.delete(key);
      this.inFlight.add(key);
    }
    return chunk;
  }

  private async reconcile(keys: readonly string[]): Promise<void> {
    const present: string[] = [];
    const gone: string[] = [];
    for (const key of keys) {
      if (isImageKey(key) && (await this.files.exists(key).catch(() => false))) present.push(key);
      else gone.push(key);
    }
    if (gone.length > 0) {
      const removed = await this.store.remove(this.source, gone);
      this.inFlightDone = gone.length;
      this.processed.removed += removed;
      this.writesSinceOptimise += removed;
      if (removed > 0)
        this.log(`removed ${removed}: ${gone.slice(0, 3).join(', ')}${gone.length > 3 ? ', ...' : ''}`);
    }
    if (present.length > 0) {
      const summary = await this.indexing.indexAll(
        this.source,
        present.map((key) => this.files.item(key)),
        { onProgress: (done) => (this.inFlightDone = gone.length + done) },
      );
      this.processed.indexed += summary.indexed;
      this.writesSinceOptimise += summary.indexed;
      this.processed.unchanged += summary.unchanged;
      this.processed.failed += summary.failed.length;
      if (summary.indexed > 0 || summary.failed.length > 0) {
        this.log(
          `indexed ${summary.indexed}, unchanged ${summary.unchanged}, failed ${summary.failed.length}`,
        );
      }
      for (const failure of summary.failed) this.log(`  failed: ${failure.key}: ${failure.reason}`);
    }
    for (const key of keys) this.inFlight.delete(key);
    this.inFlightDone = 0;
  }

  private releaseIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Wait for `ms` or until woken (new work, close); returns at once when closed. */
  private async sleep(ms: number): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(resolve, ms) : undefined;
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
  }
}
