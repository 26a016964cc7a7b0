import type { ObjectCheck } from './object-events';
import type { CatalogueEntry, IndexCatalogue, ReconcileRunCounts, VectorStore } from './ports';

/**
 * Reconciliation: bring a bucket's index back in line with the bucket when the event stream was not
 * enough (objects there before notifications worked, restored from a backup, events lost to the
 * dead-letter queue), and fill a new index after a model change (re-index without downtime).
 *
 * One pass lists the bucket page by page (S3 lists keys in UTF-8 byte order) and compares each page
 * with what the index holds in the same key range: a key listed but not held is missing, one held with
 * another ETag is changed, one held but not listed is gone. Each of them becomes a check on the
 * indexing queue (ObjectEventIndexer.check), whose writes are compare-and-set against the sequencers
 * already applied, so a pass is safe beside normal indexing and running it twice changes nothing.
 * Memory is one page: a bucket of millions of objects is listed, not loaded (for tens of millions,
 * S3 Inventory is the cheaper listing; not built).
 *
 * A building index switches to active when a complete pass finds nothing to enqueue: every listed
 * object is then held (indexed, or failed for that very version) and nothing held is gone.
 */
export interface ListedObject {
  readonly key: string;
  readonly etag: string;
}

/** A bucket listing in key order, a page at a time. */
export interface ObjectLister {
  pages(source: string): AsyncIterable<readonly ListedObject[]>;
}

/** The indexing queue, as reconciliation uses it. */
export interface CheckQueue {
  /** Send one check per message (a failing check is retried alone). */
  send(checks: readonly ObjectCheck[]): Promise<void>;
  /** Messages waiting or in flight (approximate, as SQS counts them). */
  depth(): Promise<number>;
}

export interface ReconcileOptions {
  /** Keys the indexer never indexes (the query-upload prefix). */
  readonly ignorePrefixes: readonly string[];
  /** Key suffixes the bucket notifies about (the stack's notification filter): the others are not listed. */
  readonly suffixes: readonly string[];
}

export type ReconcileTrigger = 'schedule' | 'command' | 'deploy' | 'follow-up';

export interface ReconcileReport {
  readonly runId: string | undefined;
  readonly modelId: string;
  /** Which index the pass compared: the active one, or the one being built. */
  readonly index: 'active' | 'building';
  readonly trigger: ReconcileTrigger;
  readonly counts: ReconcileRunCounts;
  /** The building index had caught up and answers queries from now on. */
  readonly switched: boolean;
  /** Set when the pass did not run: a building index waits for the queue to drain first. */
  readonly waitingForQueue?: number;
}

export class Reconciler {
  constructor(
    private readonly catalogue: IndexCatalogue,
    private readonly openIndex: (entry: CatalogueEntry) => Promise<VectorStore>,
    private readonly lister: ObjectLister,
    private readonly queue: CheckQueue,
    private readonly options: ReconcileOptions,
  ) {}

  /**
   * One pass over `source` for the building index if there is one, else the active one. While an
   * index is being built, a pass waits until the checks of the previous one have drained from the
   * queue (otherwise it would enqueue them again); `force` runs it anyway.
   */
  async run(source: string, trigger: ReconcileTrigger, force = false): Promise<ReconcileReport> {
    const entries = await this.catalogue.entries();
    const target = entries.find((e) => e.state === 'building') ?? entries.find((e) => e.state === 'active');
    if (!target)
      throw new Error('The stage has no index yet: deploy it first (the migrate step creates it).');
    const index = target.state === 'building' ? 'building' : 'active';
    const empty: ReconcileRunCounts = {
      listed: 0,
      missing: 0,
      changed: 0,
      gone: 0,
      unchanged: 0,
      enqueued: 0,
    };
    if (index === 'building' && !force) {
      const depth = await this.queue.depth();
      if (depth > 0) {
        return {
          runId: undefined,
          modelId: target.modelId,
          index,
          trigger,
          counts: empty,
          switched: false,
          waitingForQueue: depth,
        };
      }
    }
    const store = await this.openIndex(target);
    const runId = await this.catalogue.startRun(target.modelId, trigger);
    try {
      const counts = await this.pass(store, source);
      const switched =
        index === 'building' && counts.enqueued === 0 && (await this.catalogue.switchTo(target.modelId));
      await this.catalogue.finishRun(runId, counts, { switched });
      return { runId, modelId: target.modelId, index, trigger, counts, switched };
    } catch (error) {
      await this.catalogue
        .finishRun(runId, empty, { switched: false, error: (error as Error).message })
        .catch(() => undefined);
      throw error;
    }
  }

  private async pass(store: VectorStore, source: string): Promise<ReconcileRunCounts> {
    const counts = { listed: 0, missing: 0, changed: 0, gone: 0, unchanged: 0, enqueued: 0 };
    let after: string | undefined;
    const compare = async (page: readonly ListedObject[], upTo: string | undefined) => {
      const held = await store.indexedRange(source, after, upTo);
      const listed = new Set(page.map((o) => o.key));
      const checks: ObjectCheck[] = [];
      const heldByKey = new Map(held.map((h) => [h.key, h]));
      for (const object of page) {
        if (!this.indexable(object.key)) continue;
        counts.listed += 1;
        const etag = object.etag.replace(/^"|"$/g, '');
        const current = heldByKey.get(object.key);
        if (!current) counts.missing += 1;
        else if (current.etag !== etag) counts.changed += 1;
        else {
          counts.unchanged += 1;
          continue;
        }
        checks.push({ source, key: object.key, etag });
      }
      for (const h of held) {
        if (listed.has(h.key)) continue;
        counts.gone += 1;
        checks.push({ source, key: h.key });
      }
      if (checks.length > 0) await this.queue.send(checks);
      counts.enqueued += checks.length;
    };
    for await (const page of this.lister.pages(source)) {
      if (page.length === 0) continue;
      const last = page[page.length - 1]!.key;
      await compare(page, last);
      after = last;
    }
    // Whatever the index holds after the last listed key is gone.
    await compare([], undefined);
    return counts;
  }

  private indexable(key: string): boolean {
    return (
      !this.options.ignorePrefixes.some((prefix) => key.startsWith(prefix)) &&
      this.options.suffixes.some((suffix) => key.endsWith(suffix))
    );
  }
}

/** Suffixes the stack's bucket notifications select (S3 suffix filters are case-sensitive: both cases). */
export const IMAGE_KEY_SUFFIXES: readonly string[] = [
  '.jpg',
  '.jpeg',
  '.png',
  '.webp',
  '.gif',
  '.avif',
  '.tif',
  '.tiff',
].flatMap((s) => [s, s.toUpperCase()]);
