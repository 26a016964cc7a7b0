import { InvalidInputError, NotFoundError } from './errors';
import type { DuplicateGraph, DuplicateRule, VectorStore } from './ports';
import { validateKey } from './search';

/**
 * Near-duplicate groups: the same picture re-saved, resized, cropped, re-encoded or lightly edited.
 * Two images are duplicates when their own (raw) vectors are within `threshold` cosine distance; or
 * when their perceptual hashes differ in at most `hashBits` of 64 bits while their vectors are within
 * HASH_CONFIRMED_CEILING (the hash catches what degrades the model's view but keeps the picture's
 * layout: heavy JPEG, small resizes, blur, text overlays, colour shifts; the ceiling and the neighbour
 * lists keep two flat, unrelated pictures with similar hashes apart); or their files are
 * byte-identical (same content hash: marked `exact`). Groups are the connected
 * components of that relation (union-find), so a chain of close copies is one group. The edges come
 * from the store: the neighbour lists database-side augmentation keeps up to date as images arrive and
 * leave (each image's k nearest, k = OMPF_DBA), plus equal content hashes; so groups cost no search at
 * query time, and an image joins or leaves its group with the write that adds or removes it. With DBA
 * off only exact copies are found.
 */

/**
 * The default cutoff, cosine distance between the images' own vectors. Chosen on the copy-detection
 * protocol (`ompf eval --duplicates`, README "Near duplicates"); a caller may pass any value up to
 * MAX_DUPLICATE_THRESHOLD.
 */
export const DEFAULT_DUPLICATE_THRESHOLD = 0.08;
export const MAX_DUPLICATE_THRESHOLD = 0.5;
/**
 * Perceptual hashes at most this many bits apart (of 64) confirm a pair the vectors place up to
 * HASH_CONFIRMED_CEILING apart. Chosen on the same protocol: 10 to 16 bits all keep the precision of
 * the vectors alone (README "Near duplicates"); 12 sits in the middle. 0 accepts only equal hashes.
 */
export const DEFAULT_HASH_BITS = 12;
export const MAX_HASH_BITS = 24;
export const HASH_CONFIRMED_CEILING = 0.5;
export const MAX_DUPLICATE_GROUPS_PAGE = 200;

export interface DuplicateMember {
  readonly source: string;
  readonly key: string;
  /** Cosine distance from the group's first member (the largest image). */
  readonly distance: number;
  /** Perceptual-hash bits (of 64) that differ from the first member's; absent without both hashes. */
  readonly hashBits?: number;
  /** Byte-identical to another member. */
  readonly exact: boolean;
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
}

export interface DuplicateGroup {
  /** Members, the largest image (most pixels, then most bytes, then key) first. */
  readonly members: readonly DuplicateMember[];
}

export interface DuplicatePage {
  readonly threshold: number;
  readonly hashBits: number;
  /** 'neighbour lists and content hashes', or 'content hashes only' when DBA is off. */
  readonly basis: string;
  readonly total: number;
  readonly groups: readonly DuplicateGroup[];
  /** Pass back as `cursor` for the next page; absent on the last one. */
  readonly nextCursor?: string;
}

export function validateThreshold(threshold: number | undefined): number {
  const value = threshold ?? DEFAULT_DUPLICATE_THRESHOLD;
  if (!Number.isFinite(value) || value < 0 || value > MAX_DUPLICATE_THRESHOLD) {
    throw new InvalidInputError(
      `The duplicate threshold must be a cosine distance from 0 to ${MAX_DUPLICATE_THRESHOLD}; got ${String(threshold)}.`,
      { hint: `The default, ${DEFAULT_DUPLICATE_THRESHOLD}, is chosen on the copy-detection protocol.` },
    );
  }
  return value;
}

export function validateHashBits(bits: number | undefined): number {
  const value = bits ?? DEFAULT_HASH_BITS;
  if (!Number.isInteger(value) || value < 0 || value > MAX_HASH_BITS) {
    throw new InvalidInputError(
      `The perceptual-hash tolerance must be a whole number of bits from 0 to ${MAX_HASH_BITS}; got ${String(bits)}.`,
      { hint: `The default, ${DEFAULT_HASH_BITS}, is chosen on the copy-detection protocol.` },
    );
  }
  return value;
}

/** The rule for a threshold and hash tolerance given by a caller (undefined: the defaults). */
export function duplicateRule(threshold: number | undefined, hashBits: number | undefined): DuplicateRule {
  const cutoff = validateThreshold(threshold);
  return {
    threshold: cutoff,
    hashBits: validateHashBits(hashBits),
    hashCeiling: Math.max(cutoff, HASH_CONFIRMED_CEILING),
  };
}

export interface DuplicateOptions {
  readonly threshold?: number | undefined;
  readonly hashBits?: number | undefined;
}

export class DuplicateFinder {
  constructor(private readonly store: VectorStore) {}

  /** Every group, largest first (then by its first member's key), a page at a time. */
  async groups(
    options: DuplicateOptions & { limit?: number | undefined; cursor?: string | undefined } = {},
  ): Promise<DuplicatePage> {
    const rule = duplicateRule(options.threshold, options.hashBits);
    const limit = options.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_DUPLICATE_GROUPS_PAGE) {
      throw new InvalidInputError(
        `limit must be 1 to ${MAX_DUPLICATE_GROUPS_PAGE} groups; got ${String(options.limit)}.`,
      );
    }
    const offset = decodeCursor(options.cursor);
    const graph = await this.store.duplicateGraph(rule);
    const components = componentsOf(graph);
    const page = components.slice(offset, offset + limit);
    const groups = await Promise.all(page.map((ids) => this.describe(graph, ids)));
    return {
      threshold: rule.threshold,
      hashBits: rule.hashBits,
      basis: graph.nearDuplicates
        ? 'neighbour lists, perceptual hashes and content hashes'
        : 'content hashes only (OMPF_DBA=0)',
      total: components.length,
      groups,
      ...(offset + limit < components.length ? { nextCursor: encodeCursor(offset + limit) } : {}),
    };
  }

  /** The group of one image; NotFoundError when it is not indexed, an empty group when it has no copies. */
  async groupOf(
    source: string | undefined,
    key: string,
    options: DuplicateOptions = {},
  ): Promise<DuplicateGroup> {
    validateKey(key);
    const rule = duplicateRule(options.threshold, options.hashBits);
    const graph = await this.store.duplicateGraph(rule);
    const index = graph.images.findIndex(
      (i) => i.key === key && (source === undefined || i.source === source),
    );
    if (index < 0) {
      const sources = await this.store.findSources(key);
      if (sources.length === 0) {
        throw new NotFoundError(`No indexed image has the key '${key}'.`, {
          hint: 'Check the key (keys are paths relative to the gallery root), or index the image first.',
          context: { key },
        });
      }
      return { members: [] };
    }
    const component = componentsOf(graph).find((c) => c.includes(index));
    return component ? this.describe(graph, component) : { members: [] };
  }

  private async describe(graph: DuplicateGraph, ids: readonly number[]): Promise<DuplicateGroup> {
    const images = ids.map((i) => graph.images[i]!);
    const ordered = [...images].sort(
      (a, b) => b.width * b.height - a.width * a.height || b.bytes - a.bytes || byteOrder(a.key, b.key),
    );
    const first = ordered[0]!;
    const distances = await this.store.distancesFrom(
      { source: first.source, key: first.key },
      ordered.map((i) => ({ source: i.source, key: i.key })),
    );
    const hashes = new Map<string, number>();
    for (const image of images) hashes.set(image.contentHash, (hashes.get(image.contentHash) ?? 0) + 1);
    return {
      members: ordered.map((image, n) => ({
        source: image.source,
        key: image.key,
        distance: n === 0 ? 0 : Math.max(0, distances[n] ?? Number.NaN),
        ...hashBitsBetween(first.perceptualHash, image.perceptualHash),
        exact: (hashes.get(image.contentHash) ?? 0) > 1,
        width: image.width,
        height: image.height,
        bytes: image.bytes,
      })),
    };
  }
}

function hashBitsBetween(a: string | undefined, b: string | undefined): { hashBits?: number } {
  if (a === undefined || b === undefined || a.length !== b.length) return {};
  let bits = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) bits += 1;
  return { hashBits: bits };
}

/** Connected components of two or more images, largest first, then by smallest key. */
function componentsOf(graph: DuplicateGraph): number[][] {
  const parent = graph.images.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]!]!;
      i = parent[i]!;
    }
    return i;
  };
  for (const { a, b } of graph.edges) {
    const x = find(a);
    const y = find(b);
    if (x !== y) parent[Math.max(x, y)] = Math.min(x, y);
  }
  const byRoot = new Map<number, number[]>();
  graph.images.forEach((_, i) => {
    const root = find(i);
    byRoot.set(root, [...(byRoot.get(root) ?? []), i]);
  });
  const firstKey = (c: number[]) =>
    c.map((i) => `${graph.images[i]!.source}/${graph.images[i]!.key}`).sort()[0]!;
  return [...byRoot.values()]
    .filter((c) => c.length > 1)
    .sort((p, q) => q.length - p.length || byteOrder(firstKey(p), firstKey(q)));
}

/** Code-unit order: the same on every machine, whatever its locale. */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function encodeCursor(offset: number): string {
  return Buffer.from(`g:${offset}`).toString('base64url');
}

function decodeCursor(cursor: string | undefined): number {
  if (cursor === undefined || cursor === '') return 0;
  const match = /^g:(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new InvalidInputError('The cursor is not one a previous page returned.');
  return Number(match[1]);
}
