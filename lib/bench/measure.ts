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

/** Deterministic unit vectors (xorshift), so every run and engine sees the same data. */
export function syntheticVectors(count: number, dimension: number, seed = 1): Float32Array[] {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) / 4294967296) * 2 - 1;
  };
  return Array.from({ length: count }, () => {
    const v = Float32Array.from({ length: dimension }, next);
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    return v.map((x) => x / norm);
  });
}
