import { createHash } from 'node:crypto';
import { isOmpfError, assertSameModel, NotFoundError, TooLargeError, UnsupportedImageError } from './errors';
import type { Embedder, ImagePreprocessor, ImageRecord, PreparedImage, VectorStore } from './ports';

/** One object of a gallery (a file under a folder, an object in a bucket). */
export interface GalleryItem {
  readonly key: string;
  /** Reads the current content. Throws NotFoundError when the object is gone. */
  read(): Promise<Uint8Array>;
  readonly etag?: string | undefined;
  readonly versionId?: string | undefined;
  readonly sequencer?: string | undefined;
}

export interface IndexFailureReport {
  readonly key: string;
  readonly reason: string;
}

export interface IndexSummary {
  readonly source: string;
  readonly indexed: number;
  readonly unchanged: number;
  readonly removed: number;
  readonly failed: readonly IndexFailureReport[];
  readonly seconds: number;
}

export interface IndexOptions {
  /** Remove stored entries of this source whose keys are not among `items`. */
  readonly prune?: boolean;
  /** Re-embed even when the content hash is unchanged. */
  readonly force?: boolean;
  /** Called after each item is settled (indexed, unchanged or failed). */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface IndexingOptions {
  /** Images per embedding call and per database write. */
  readonly batchSize: number;
}

type Outcome =
  | { kind: 'unchanged'; key: string }
  | { kind: 'failed'; key: string; reason: string }
  | { kind: 'ready'; item: GalleryItem; image: PreparedImage; contentHash: string; bytes: number };
type ReadyOutcome = Extract<Outcome, { kind: 'ready' }>;

/**
 * decode -> embed -> upsert, in batches. While one batch is being embedded, the next one is read and
 * decoded (and then embedded), so decoding (libuv pool) overlaps inference. Expected per-item
 * outcomes (bad image, vanished file) are recorded and reported, never thrown; infrastructure
 * failures (database down) abort the run so nothing is silently lost.
 */
export class IndexingService {
  constructor(
    private readonly store: VectorStore,
    private readonly embedder: Embedder,
    private readonly preprocessor: ImagePreprocessor,
    private readonly options: IndexingOptions,
  ) {
    assertSameModel(
      store.modelId,
      embedder.modelId,
      `Use --model ${store.modelId}, or re-index with \`ompf index DIR --reindex\`.`,
    );
  }

  async indexAll(
    source: string,
    items: readonly GalleryItem[],
    options: IndexOptions = {},
  ): Promise<IndexSummary> {
    const started = Date.now();
    const batches: GalleryItem[][] = [];
    for (let i = 0; i < items.length; i += this.options.batchSize) {
      batches.push(items.slice(i, i + this.options.batchSize));
    }
    let indexed = 0;
    let unchanged = 0;
    let done = 0;
    const failed: IndexFailureReport[] = [];

    type Embedded = { outcomes: Outcome[]; ready: ReadyOutcome[]; vectors: Float32Array[] };
    // One batch: read + decode, then embed as soon as decoded, without waiting for the batch before it.
    const embedBatch = (batch: readonly GalleryItem[]): Promise<Embedded> => {
      const embedded = this.prepareBatch(source, batch, options.force ?? false).then(async (outcomes) => {
        const ready = outcomes.filter((o): o is ReadyOutcome => o.kind === 'ready');
        return { outcomes, ready, vectors: await this.embedder.embed(ready.map((r) => r.image)) };
      });
      embedded.catch(() => undefined); // surfaced when awaited; avoid an unhandled rejection meanwhile
      return embedded;
    };
    // Two batches in flight: while batch b is embedded, b + 1 is decoded and then queued behind it, so
    // an embedder with several workers never idles at a batch boundary waiting for the slowest chunk.
    // At most one batch is being written meanwhile: PGlite's inserts run on this thread while
    // onnxruntime runs on its own, so the two overlap instead of taking turns. Writes keep batch order.
    let current = batches[0] ? embedBatch(batches[0]) : undefined;
    let writing: Promise<void> = Promise.resolve();
    for (let b = 0; b < batches.length; b++) {
      const next = batches[b + 1] ? embedBatch(batches[b + 1]!) : undefined;
      const { outcomes, ready, vectors } = await current!;
      current = next;
      // The hash runs on this thread (a 32 x 32 DCT) while the next batch is embedded on onnxruntime's.
      const hashes = await Promise.all(
        ready.map((r) => (r.image.perceptualHash ? r.image.perceptualHash() : Promise.resolve(undefined))),
      );
      const records: ImageRecord[] = ready.map((r, i) => ({
        source,
        key: r.item.key,
        contentHash: r.contentHash,
        etag: r.item.etag,
        versionId: r.item.versionId,
        sequencer: r.item.sequencer,
        width: r.image.width,
        height: r.image.height,
        bytes: r.bytes,
        perceptualHash: hashes[i],
        embedding: vectors[i]!,
      }));
      await writing;
      writing = (async () => {
        await this.store.upsertMany(records);
        indexed += records.length;
        for (const outcome of outcomes) {
          if (outcome.kind === 'unchanged') unchanged++;
          if (outcome.kind === 'failed') {
            failed.push({ key: outcome.key, reason: outcome.reason });
            await this.store.recordFailure(source, outcome.key, outcome.reason);
          }
        }
        done += outcomes.length;
        options.onProgress?.(done, items.length);
      })();
      writing.catch(() => undefined); // surfaced by the next await
    }
    await writing;

    let removed = 0;
    if (options.prune) {
      const present = new Set(items.map((item) => item.key));
      const gone = (await this.store.listKeys(source)).filter((key) => !present.has(key));
      removed = await this.store.remove(source, gone);
    }
    return { source, indexed, unchanged, removed, failed, seconds: (Date.now() - started) / 1000 };
  }

  private async prepareBatch(
    source: string,
    batch: readonly GalleryItem[],
    force: boolean,
  ): Promise<Outcome[]> {
    const contents = await Promise.all(batch.map((item) => readItem(item)));
    const known = force
      ? new Map<string, string>()
      : await this.store.contentHashes(
          source,
          batch.map((i) => i.key),
        );
    return Promise.all(
      batch.map(async (item, i): Promise<Outcome> => {
        const content = contents[i]!;
        if ('reason' in content) return { kind: 'failed', key: item.key, reason: content.reason };
        if (known.get(item.key) === content.contentHash) return { kind: 'unchanged', key: item.key };
        try {
          const image = await this.preprocessor.prepare(content.bytes);
          return {
            kind: 'ready',
            item,
            image,
            contentHash: content.contentHash,
            bytes: content.bytes.byteLength,
          };
        } catch (error) {
          if (error instanceof UnsupportedImageError || error instanceof TooLargeError) {
            return { kind: 'failed', key: item.key, reason: error.message };
          }
          throw error;
        }
      }),
    );
  }
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function readItem(
  item: GalleryItem,
): Promise<{ bytes: Uint8Array; contentHash: string } | { reason: string }> {
  try {
    const bytes = await item.read();
    return { bytes, contentHash: sha256Hex(bytes) };
  } catch (error) {
    if (
      error instanceof NotFoundError ||
      error instanceof TooLargeError ||
      (isOmpfError(error) && error.httpStatus < 500)
    ) {
      return { reason: error.message };
    }
    throw error;
  }
}
