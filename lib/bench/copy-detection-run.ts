import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import phash from 'sharp-phash';
import phashDistance from 'sharp-phash/distance';
import { chooseThreshold, operatingPoint, type CopyQuery, type OperatingPoint } from '../core/copy-detection';
import type { Embedder, ImagePreprocessor } from '../core/ports';
import { ATTACKS, attackedCopies } from './copy-attacks';

/**
 * `ompf eval-duplicates`: the copy-detection protocol (copy-attacks.ts) measured with the product's own
 * image vectors (cosine distance between raw model vectors, as duplicate groups use them) and, in the
 * same run, a perceptual hash (pHash from sharp-phash: 64-bit DCT hash, Hamming distance) on the same
 * queries and gallery. Queries: every attacked copy of `originals` photos of DIR, plus a family of real
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
  readonly minPrecision: number;
}

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
    const [vector] = await embedder.embed([await preprocessor.prepare(bytes)]);
    const hash = await phash(Buffer.from(bytes));
    progress(++done, total);
    return { vector: vector!, hash };
  };
  const gallery: { vector: Float32Array; hash: string }[] = [];
  for (const bytes of galleryBytes) gallery.push(await describe(bytes));
  const queries = [];
  for (const q of queryBytes) queries.push({ ...q, ...(await describe(q.bytes)) });

  const cosine = (a: Float32Array, b: Float32Array) => {
    let dot = 0;
    for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
    return 1 - dot;
  };
  const cnnQueries: CopyQuery[] = queries.map((q) => ({
    family: q.family,
    positive: cosine(q.vector, gallery[q.original]!.vector),
    negatives: gallery.flatMap((g, j) => (j === q.original ? [] : [cosine(q.vector, g.vector)])),
  }));
  const hashQueries: CopyQuery[] = queries.map((q) => ({
    family: q.family,
    positive: phashDistance(q.hash, gallery[q.original]!.hash),
    negatives: gallery.flatMap((g, j) => (j === q.original ? [] : [phashDistance(q.hash, g.hash)])),
  }));
  const cnnGrid = Array.from({ length: 201 }, (_, i) => Math.round(i * 0.0025 * 10_000) / 10_000);
  const bitGrid = Array.from({ length: 33 }, (_, i) => i);
  return {
    originals: originals.length,
    queries: queries.length,
    gallery: gallery.length,
    attacks: ATTACKS.map((a) => a.name),
    cnn: {
      chosen: chooseThreshold(cnnQueries, cnnGrid, options.minPrecision, ['strong']),
      curve: cnnGrid.filter((_, i) => i % 4 === 0).map((t) => operatingPoint(cnnQueries, t)),
    },
    phash: {
      at10Bits: operatingPoint(hashQueries, 10),
      chosen: chooseThreshold(hashQueries, bitGrid, options.minPrecision, ['strong']),
      curve: bitGrid.filter((b) => b % 2 === 0).map((b) => operatingPoint(hashQueries, b)),
    },
    minPrecision: options.minPrecision,
  };
}
