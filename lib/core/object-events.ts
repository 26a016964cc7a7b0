import {
  InvalidInputError,
  assertSameModel,
  type OmpfError,
  NotFoundError,
  TooLargeError,
  UnsupportedImageError,
} from './errors';
import { sha256Hex } from './indexing';
import type { Embedder, ImagePreprocessor, ImageRecord, VectorStore } from './ports';

/**
 * One change to one object of a bucket, as an object store reports it: already decoded (keys are
 * plain strings here, never URL-encoded). Events arrive at least once and in any order; the
 * `sequencer` orders the events of one key (greater = later).
 */
export interface ObjectEvent {
  readonly kind: 'created' | 'removed';
  /** The bucket. */
  readonly source: string;
  readonly key: string;
  readonly sequencer: string;
  readonly etag?: string | undefined;
  readonly versionId?: string | undefined;
  readonly size?: number | undefined;
}

export interface ObjectContent {
  readonly bytes: Uint8Array;
  readonly etag?: string | undefined;
  readonly versionId?: string | undefined;
}

/** Reads an object's current content. NotFoundError when it is gone; TooLargeError over the limit. */
export interface ObjectReader {
  read(source: string, key: string): Promise<ObjectContent>;
}

/** What applying one event did. Expected outcomes are returned; only retryable failures throw. */
export type ObjectEventOutcome =
  | { readonly status: 'indexed' }
  | { readonly status: 'removed'; readonly existed: boolean }
  /** An event at or before the newest one already applied to the key (duplicate or late). */
  | { readonly status: 'stale'; readonly applied: string }
  /** A key the indexer never indexes (the query-upload prefix). */
  | { readonly status: 'ignored'; readonly reason: string }
  /** The object was deleted after the event: its ObjectRemoved event settles the key. */
  | { readonly status: 'gone' }
  /** The object was overwritten after the event: the newer ObjectCreated event indexes it. */
  | { readonly status: 'superseded' }
  /** A reconciliation check found the index already holding the object's current version. */
  | { readonly status: 'unchanged' }
  /** The object is not an image we can index: recorded with its reason, never retried. */
  | { readonly status: 'failed'; readonly reason: string; readonly code: string };

/**
 * A reconciliation check of one key (lib/core/reconcile.ts): bring the index in line with the object
 * as it is now, whatever it holds. Unlike an event it carries no sequencer: its writes are
 * compare-and-set against the sequencers already applied, so an event applied meanwhile always wins.
 */
export interface ObjectCheck {
  readonly source: string;
  readonly key: string;
  /** The ETag the listing showed (undefined: the object was not listed, so is probably gone). */
  readonly etag?: string | undefined;
}

/**
 * Hex sequencers of one key, compared as S3 documents: right-pad the shorter with zeros, then compare
 * lexicographically (case-insensitively). Negative when `a` is older than `b`.
 */
export function compareSequencers(a: string, b: string): number {
  const x = normaliseSequencer(a);
  const y = normaliseSequencer(b);
  const width = Math.max(x.length, y.length);
  const left = x.padEnd(width, '0');
  const right = y.padEnd(width, '0');
  return left < right ? -1 : left > right ? 1 : 0;
}

export function normaliseSequencer(sequencer: string): string {
  if (!/^[0-9A-Fa-f]{1,64}$/.test(sequencer)) {
    throw new InvalidInputError(`'${sequencer}' is not an S3 sequencer (1 to 64 hex digits).`);
  }
  return sequencer.toUpperCase();
}

/** ETags are compared without the quotes S3 puts around them in GetObject responses. */
function sameEtag(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return true;
  return a.replace(/^"|"$/g, '') === b.replace(/^"|"$/g, '');
}

export interface ObjectEventIndexerOptions {
  /** Keys under these prefixes are never indexed (presigned query uploads live there). */
  readonly ignorePrefixes: readonly string[];
  /**
   * Other indexes of the same bucket (a cloud stage re-indexing for a new model keeps serving from the
   * old one): removals reach them too, so the index that answers queries never shows a deleted image.
   * Read at each event (the catalogue changes when the new index takes over).
   */
  readonly otherIndexes?: () => Promise<readonly VectorStore[]>;
}

/**
 * Applies object-store events to the vector store, one event at a time, so that a late event never
 * overwrites a newer state and a late ObjectCreated never resurrects a deleted key (the store keeps
 * the sequencer of every image and a tombstone for every deletion). Idempotent: a duplicate delivery
 * is 'stale' and costs one lookup. An image that cannot be decoded is recorded as a failure with its
 * reason and returned; database or object-store outages throw, so the caller retries the event.
 */
export class ObjectEventIndexer {
  constructor(
    private readonly store: VectorStore,
    private readonly embedder: Embedder,
    private readonly preprocessor: ImagePreprocessor,
    private readonly options: ObjectEventIndexerOptions,
  ) {
    assertSameModel(
      store.modelId,
      embedder.modelId,
      `Deploy with model ${store.modelId}, or re-index the bucket into a new store.`,
    );
  }

  async apply(event: ObjectEvent, reader: ObjectReader): Promise<ObjectEventOutcome> {
    const ignoredBy = this.options.ignorePrefixes.find((prefix) => event.key.startsWith(prefix));
    if (ignoredBy !== undefined) {
      return { status: 'ignored', reason: `keys under '${ignoredBy}' are query uploads` };
    }
    normaliseSequencer(event.sequencer);
    if (event.kind === 'removed') {
      for (const other of (await this.options.otherIndexes?.()) ?? []) {
        await other.removeIfNewer(event.source, event.key, event.sequencer);
      }
      const result = await this.store.removeIfNewer(event.source, event.key, event.sequencer);
      return result.applied
        ? { status: 'removed', existed: result.existed }
        : { status: 'stale', applied: result.current };
    }

    // A cheap check first: a duplicate or late event costs no download and no inference.
    const applied = await this.store.latestSequencer(event.source, event.key);
    if (applied !== undefined && compareSequencers(event.sequencer, applied) <= 0) {
      return { status: 'stale', applied };
    }
    let content: ObjectContent;
    try {
      content = await reader.read(event.source, event.key);
    } catch (error) {
      if (error instanceof NotFoundError) return { status: 'gone' };
      if (error instanceof TooLargeError) return this.fail(event, error);
      throw error;
    }
    if (!sameEtag(event.etag, content.etag)) return { status: 'superseded' };

    const record = await this.embedContent(event, content);
    if (record instanceof Error) return this.fail(event, record);
    const written = await this.store.upsertIfNewer({
      ...record,
      etag: event.etag ?? record.etag,
      versionId: event.versionId ?? content.versionId,
      sequencer: event.sequencer,
    });
    return written.applied ? { status: 'indexed' } : { status: 'stale', applied: written.current };
  }

  /**
   * Reconcile one key with the object as it is now (see ObjectCheck): index it when the index lacks
   * its current version, remove it when the object is gone, nothing when they agree. Every write is
   * compare-and-set on the sequencer read first, so an event applied meanwhile wins ('stale').
   */
  async check(check: ObjectCheck, reader: ObjectReader): Promise<ObjectEventOutcome> {
    const ignoredBy = this.options.ignorePrefixes.find((prefix) => check.key.startsWith(prefix));
    if (ignoredBy !== undefined) {
      return { status: 'ignored', reason: `keys under '${ignoredBy}' are query uploads` };
    }
    const expected = await this.store.latestSequencer(check.source, check.key);
    const held = await this.store.indexedKey(check.source, check.key);
    let content: ObjectContent;
    try {
      content = await reader.read(check.source, check.key);
    } catch (error) {
      if (error instanceof NotFoundError) {
        for (const other of (await this.options.otherIndexes?.()) ?? []) {
          await other.removeIfUnchanged(
            check.source,
            check.key,
            await other.latestSequencer(check.source, check.key),
          );
        }
        if (!held) return { status: 'gone' };
        const removed = await this.store.removeIfUnchanged(check.source, check.key, expected);
        return removed.applied
          ? { status: 'removed', existed: removed.existed }
          : { status: 'stale', applied: removed.current };
      }
      if (error instanceof TooLargeError) return this.failUnlessChanged(check, expected, error, undefined);
      throw error;
    }
    const etag = unquote(content.etag);
    if (held && held.etag !== undefined && held.etag === etag) return { status: 'unchanged' };
    const record = await this.embedContent(check, content);
    if (record instanceof Error) return this.failUnlessChanged(check, expected, record, content);
    const written = await this.store.upsertIfUnchanged({ ...record, versionId: content.versionId }, expected);
    return written.applied ? { status: 'indexed' } : { status: 'stale', applied: written.current };
  }

  /** Decode and embed; an image we cannot index is returned as its error (recorded, never retried). */
  private async embedContent(
    at: { readonly source: string; readonly key: string },
    content: ObjectContent,
  ): Promise<ImageRecord | UnsupportedImageError | TooLargeError> {
    let image;
    try {
      image = await this.preprocessor.prepare(content.bytes);
    } catch (error) {
      if (error instanceof UnsupportedImageError || error instanceof TooLargeError) return error;
      throw error;
    }
    const [embedding, perceptualHash] = await Promise.all([
      this.embedder.embed([image]).then(([vector]) => vector),
      image.perceptualHash?.(),
    ]);
    if (!embedding) throw new Error('The embedder returned no vector.');
    return {
      source: at.source,
      key: at.key,
      contentHash: sha256Hex(content.bytes),
      etag: unquote(content.etag),
      width: image.width,
      height: image.height,
      bytes: content.bytes.byteLength,
      perceptualHash,
      embedding,
    };
  }

  /**
   * The object's current version cannot be indexed: whatever the index held for an older version no
   * longer describes the object, so it goes (with a tombstone at this event's sequencer, so a late
   * older event cannot bring it back or clear the failure), and the failure is recorded with its reason.
   */
  private async fail(event: ObjectEvent, error: OmpfError): Promise<ObjectEventOutcome> {
    const removed = await this.store.removeIfNewer(event.source, event.key, event.sequencer);
    if (!removed.applied) return { status: 'stale', applied: removed.current };
    await this.store.recordFailure(event.source, event.key, error.message, unquote(event.etag));
    return { status: 'failed', reason: error.message, code: error.code };
  }

  private async failUnlessChanged(
    check: ObjectCheck,
    expected: string | undefined,
    error: OmpfError,
    content: ObjectContent | undefined,
  ): Promise<ObjectEventOutcome> {
    const removed = await this.store.removeIfUnchanged(check.source, check.key, expected);
    if (!removed.applied) return { status: 'stale', applied: removed.current };
    await this.store.recordFailure(
      check.source,
      check.key,
      error.message,
      unquote(content?.etag) ?? unquote(check.etag),
    );
    return { status: 'failed', reason: error.message, code: error.code };
  }
}

function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^"|"$/g, '');
}
