import {
  InvalidInputError,
  assertSameModel,
  NotFoundError,
  TooLargeError,
  UnsupportedImageError,
} from './errors';
import { sha256Hex } from './indexing';
import type { Embedder, ImagePreprocessor, VectorStore } from './ports';

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
  /** The object is not an image we can index: recorded with its reason, never retried. */
  | { readonly status: 'failed'; readonly reason: string };

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
      if (error instanceof TooLargeError) return this.fail(event, error.message);
      throw error;
    }
    if (!sameEtag(event.etag, content.etag)) return { status: 'superseded' };

    let image;
    try {
      image = await this.preprocessor.prepare(content.bytes);
    } catch (error) {
      if (error instanceof UnsupportedImageError || error instanceof TooLargeError) {
        return this.fail(event, error.message);
      }
      throw error;
    }
    const [embedding] = await this.embedder.embed([image]);
    if (!embedding) throw new Error('The embedder returned no vector.');
    const written = await this.store.upsertIfNewer({
      source: event.source,
      key: event.key,
      contentHash: sha256Hex(content.bytes),
      etag: event.etag ?? content.etag?.replace(/^"|"$/g, ''),
      versionId: event.versionId ?? content.versionId,
      sequencer: event.sequencer,
      width: image.width,
      height: image.height,
      bytes: content.bytes.byteLength,
      embedding,
    });
    return written.applied ? { status: 'indexed' } : { status: 'stale', applied: written.current };
  }

  /**
   * The object's current version cannot be indexed: whatever the index held for an older version no
   * longer describes the object, so it goes (with a tombstone at this event's sequencer, so a late
   * older event cannot bring it back or clear the failure), and the failure is recorded with its reason.
   */
  private async fail(event: ObjectEvent, reason: string): Promise<ObjectEventOutcome> {
    const removed = await this.store.removeIfNewer(event.source, event.key, event.sequencer);
    if (!removed.applied) return { status: 'stale', applied: removed.current };
    await this.store.recordFailure(event.source, event.key, reason);
    return { status: 'failed', reason };
  }
}
