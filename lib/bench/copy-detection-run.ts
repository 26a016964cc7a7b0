import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  byDistance,
  byDuplicateRule,
  byHash,
  chooseThreshold,
  operatingPoint,
  type CopyCandidate,
  type CopyQuery,
  type OperatingPoint,
} from '../core/copy-detection';
import { DEFAULT_HASH_BITS } from '../core/duplicates';
import type { Embedder, ImagePreprocessor } from '../core/ports';
import { ATTACKS, attackedCopies } from './copy-attacks';

/**
 * `ompf eval-duplicates`: the copy-detection protocol (copy-attacks.ts) measured three ways on the same
 * queries and gallery: the product's own image vectors alone (cosine distance between raw model
 * vectors), the perceptual hash alone (pHash from sharp-phash, 64-bit DCT hash of the decoded frame the
 * product stores, Hamming distance), and the product's duplicate rule, which combines them along the
 * `neighbours` nearest (lib/core/copy-detection.ts byDuplicateRule). Queries: every attacked copy of `originals` photos of DIR, plus a family of real
 * near-duplicates nobody made for us: caltech101's Faces_easy photos, whose originals are the
 * same-named Faces photos (the same pictures at another crop) when the distractor folder has them.
 * Gallery: the originals and the distractors (every photo of the distractor folder except Faces_easy).
 */
export interface CopyDetectionOptions {
  readonly dir: string;
  readonly distractorsDir: string | undefined;
  readonly originals: number;
  readonly distractors: number;
  readonly minPrecision: number;
  /** The store's neighbour-list length (OMPF_DBA): the product's candidates per image. */
  readonly neighbours: number;
  readonly hashBits?: number | undefined;
}

export interface CopyDetectionReport {
  readonly originals: number;
  readonly queries: number;
  readonly gallery: number;
  readonly attacks: readonly string[];
  readonly cnn: { readonly chosen: OperatingPoint; readonly curve: readonly OperatingPoint[] };
  readonly phash: {
    readonly at10Bits: OperatingPoint;
    readonly chosen: OperatingPoint;
    readonly curve: readonly OperatingPoint[];
  };
  /** The product's rule at `hashBits`, over the cosine threshold; and at the chosen one, over the bits. */
  readonly product: {
    readonly hashBits: number;
    readonly neighbours: number;
    readonly chosen: OperatingPoint;
    readonly curve: readonly OperatingPoint[];
    readonly byHashBits: readonly (OperatingPoint & { readonly hashBits: number })[];
  };
  readonly minPrecision: number;
}

const MAX_GRID_DISTANCE = 0.25;
const MAX_GRID_BITS = 24;
const IMAGE = /\.(jpe?g|png|webp)$/i;

function photosOf(dir: string, skip: (folder: string) => boolean = () => false): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) return skip(entry) ? [] : photosOf(path);
      return IMAGE.test(entry) ? [path] : [];
    });
}

/** Every k-th of `items`, `n` of them: spread over every class, the same on every run. */
function spread<T>(items: readonly T[], n: number): T[] {
  if (items.length <= n) return [...items];
  const step = items.length / n;
  return Array.from({ length: n }, (_, i) => items[Math.floor(i * step)]!);
}

export async function runCopyDetection(
  embedder: Embedder,
  preprocessor: ImagePreprocessor,
  options: CopyDetectionOptions,
  progress: (done: number, total: number) => void = () => undefined,
): Promise<CopyDetectionReport> {
  const originals = spread(photosOf(options.dir), options.originals).map((p) => readFileSync(p));
  const distractorPaths = options.distractorsDir
    ? spread(
        photosOf(options.distractorsDir, (folder) => folder === 'Faces_easy'),
        options.distractors,
      )
    : [];
  const facesEasy = options.distractorsDir ? join(options.distractorsDir, 'Faces_easy') : undefined;
  const facePairs = (() => {
    if (!facesEasy) return [];
    let easy: string[];
    try {
      easy = photosOf(facesEasy);
    } catch {
      return [];
    }
    const byName = new Map(distractorPaths.filter((p) => p.includes('/Faces/')).map((p) => [basename(p), p]));
    return easy
      .filter((p) => byName.has(basename(p)))
      .map((p) => ({ query: p, original: byName.get(basename(p))! }));
  })();

  const galleryBytes = [...originals, ...distractorPaths.map((p) => readFileSync(p))];
  const galleryIndexOf = new Map(distractorPaths.map((p, i) => [p, originals.length + i]));
  const queryBytes: { bytes: Uint8Array; family: string; original: number }[] = [];
  for (const [i, original] of originals.entries()) {
    const copies = await attackedCopies(original);
    copies.forEach((bytes, a) => queryBytes.push({ bytes, family: ATTACKS[a]!.family, original: i }));
  }
  for (const pair of facePairs) {
    queryBytes.push({
      bytes: readFileSync(pair.query),
      family: 'faces (real)',
      original: galleryIndexOf.get(pair.original)!,
    });
  }

  const total = galleryBytes.length + queryBytes.length;
  let done = 0;
  const describe = async (bytes: Uint8Array) => {
    const prepared = await preprocessor.prepare(bytes);
    const [vector] = await embedder.embed([prepared]);
    if (!prepared.perceptualHash) throw new Error('The preprocessor computes no perceptual hash.');
    const hash = await prepared.perceptualHash();
    progress(++done, total);
    // Two 32-bit halves: Hamming distance by XOR and popcount.
    const half = (bits: string) => Number.parseInt(bits, 2) | 0;
    return { vector: vector!, hash: [half(hash.slice(0, 32)), half(hash.slice(32))] as const };
  };
  const gallery: { vector: Float32Array; hash: readonly [number, number] }[] = [];
  for (const bytes of galleryBytes) gallery.push(await describe(bytes));
  const queries = [];
  for (const q of queryBytes) queries.push({ ...q, ...(await describe(q.bytes)) });

  const cosine = (a: Float32Array, b: Float32Array) => {
    let dot = 0;
    for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
    return 1 - dot;
  };
  const bitsBetween = (a: readonly [number, number], b: readonly [number, number]) =>
    popcount32(a[0] ^ b[0]) + popcount32(a[1] ^ b[1]);
  const copyQueries: CopyQuery[] = queries.map((q) => {
    const all = gallery.map((g, j) => ({
      distance: cosine(q.vector, g.vector),
      hashBits: bitsBetween(q.hash, g.hash),
      original: j === q.original,
    }));
    const order = all.map((_, j) => j).sort((a, b) => all[a]!.distance - all[b]!.distance);
    const rank = new Array<number>(all.length);
    order.forEach((j, r) => (rank[j] = r));
    // Only candidates some rule on the grids below can accept (most of the gallery is within 0.5 of
    // any photo by these vectors, so the grids stop where precision has long collapsed).
    const candidates: CopyCandidate[] = all
      .map((c, j) => ({ ...c, rank: rank[j]! }))
      .filter(
        (c) => c.rank < options.neighbours || c.distance <= MAX_GRID_DISTANCE || c.hashBits <= MAX_GRID_BITS,
      );
    return { family: q.family, candidates };
  });
  const cnnGrid = Array.from({ length: 101 }, (_, i) => Math.round(i * 0.0025 * 10_000) / 10_000);
  const bitGrid = Array.from({ length: MAX_GRID_BITS + 1 }, (_, i) => i);
  const hashBits = options.hashBits ?? DEFAULT_HASH_BITS;
  const productRule = byDuplicateRule(hashBits, options.neighbours);
  const excluded = ['strong'];
  const productChosen = chooseThreshold(copyQueries, cnnGrid, productRule, options.minPrecision, excluded);
  return {
    originals: originals.length,
    queries: queries.length,
    gallery: gallery.length,
    attacks: ATTACKS.map((a) => a.name),
    cnn: {
      chosen: chooseThreshold(copyQueries, cnnGrid, byDistance, options.minPrecision, excluded),
      curve: cnnGrid.filter((_, i) => i % 4 === 0).map((t) => operatingPoint(copyQueries, t, byDistance)),
    },
    phash: {
      at10Bits: operatingPoint(copyQueries, 10, byHash),
      chosen: chooseThreshold(copyQueries, bitGrid, byHash, options.minPrecision, excluded),
      curve: bitGrid.filter((b) => b % 2 === 0).map((b) => operatingPoint(copyQueries, b, byHash)),
    },
    product: {
      hashBits,
      neighbours: options.neighbours,
      chosen: productChosen,
      curve: cnnGrid.filter((_, i) => i % 4 === 0).map((t) => operatingPoint(copyQueries, t, productRule)),
      byHashBits: [0, 4, 8, 10, 12, 14, 16, 20, 24].map((bits) => ({
        hashBits: bits,
        ...operatingPoint(copyQueries, productChosen.threshold, byDuplicateRule(bits, options.neighbours)),
      })),
    },
    minPrecision: options.minPrecision,
  };
}

function popcount32(value: number): number {
  let v = value - ((value >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
