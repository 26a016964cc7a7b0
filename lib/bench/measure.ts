/** Measurement helpers for `npm run bench`. Figures are reported, never asserted. */

/** Peak resident set size while a stage runs, sampled every 20 ms (process-wide maxRSS never resets). */
export class RssSampler {
  private peak = 0;
  private timer: NodeJS.Timeout | undefined;

  start(): void {
    this.peak = process.memoryUsage.rss();
    this.timer = setInterval(() => {
      this.peak = Math.max(this.peak, process.memoryUsage.rss());
    }, 20);
    this.timer.unref();
  }

  /** Peak RSS in MiB. */
  stop(): number {
    clearInterval(this.timer);
    this.peak = Math.max(this.peak, process.memoryUsage.rss());
    return Math.round(this.peak / 1024 / 1024);
  }
}

export async function withPeakRss<T>(work: () => Promise<T>): Promise<{ result: T; peakRssMiB: number }> {
  const sampler = new RssSampler();
  sampler.start();
  try {
    const result = await work();
    return { result, peakRssMiB: sampler.stop() };
  } catch (error) {
    sampler.stop();
    throw error;
  }
}

/** Run `once` repeatedly for at least `minMs` (after one warm-up call); returns ms per call. */
export async function timeRepeated(
  once: () => Promise<unknown>,
  minMs: number,
  minCalls = 2,
): Promise<number> {
  await once();
  const started = performance.now();
  let calls = 0;
  while (calls < minCalls || performance.now() - started < minMs) {
    await once();
    calls++;
  }
  return (performance.now() - started) / calls;
}

export interface Percentiles {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
}

export function percentiles(samples: readonly number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/**
 * Unit vectors shaped like CNN embeddings, for recall at a scale the labelled set cannot reach:
 * non-negative and sparse (ReLU features), gathered around `clusters` centres (images of one kind),
 * each point its centre plus noise. Uniform random vectors are a poor stand-in: in 2,048 dimensions
 * they are all nearly equidistant, which no real gallery is, and graph indexes do badly on them.
 * Returns a generator: every call draws `count` points from the same centres (`seed` picks which).
 */
export function clusteredVectors(
  dimension: number,
  clusters: number,
  clusterSeed: number,
): (count: number, seed: number) => Float32Array[] {
  const centres = uniform(clusterSeed);
  const centre = Array.from({ length: clusters }, () =>
    Float32Array.from({ length: dimension }, () => Math.max(0, centres())),
  );
  return (count, seed) => {
    const next = uniform(seed);
    return Array.from({ length: count }, () => {
      const c = centre[Math.floor(((next() + 1) / 2) * clusters) % clusters]!;
      return unit(c.map((x) => Math.max(0, x + 0.6 * next())));
    });
  };
}

/** xorshift32 in [-1, 1): reproducible from a seed. */
function uniform(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) / 4294967296) * 2 - 1;
  };
}

function unit(v: Float32Array): Float32Array {
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm) || 1;
  return v.map((x) => x / norm);
}

/** Mean fraction of each exact top-k found by the approximate search (same queries, same order). */
export function recallAtK(
  found: readonly (readonly { key: string }[])[],
  exact: readonly (readonly { key: string }[])[],
): number {
  let hits = 0;
  let total = 0;
  exact.forEach((truth, i) => {
    const keys = new Set((found[i] ?? []).map((n) => n.key));
    hits += truth.filter((t) => keys.has(t.key)).length;
    total += truth.length;
  });
  return total === 0 ? 0 : round(hits / total, 4);
}
