import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Embedder, VectorStore } from '../../core/ports';

/**
 * The functions' metrics, in CloudWatch's embedded metric format through Powertools for AWS Lambda
 * (Metrics): each flush writes one JSON log line that CloudWatch turns into metrics, so publishing
 * costs no API call and needs no VPC endpoint. Namespace `ompf`, dimension `service` = ompf-<stage>
 * (POWERTOOLS_SERVICE_NAME); the stack's dashboard reads exactly these names (METRIC_NAMES).
 */
export const METRIC_NAMESPACE = 'ompf';

export const METRIC_NAMES = {
  indexed: 'ImagesIndexed',
  removed: 'ImagesRemoved',
  /** Stale, ignored, gone, superseded or unchanged: nothing to write. */
  skipped: 'ImagesSkipped',
  /** Not an image we can index (dimension `reason`: unsupported_image, too_large). */
  failed: 'ImagesFailed',
  /** A record that threw and goes back to the queue (database or S3 unavailable). */
  retried: 'EventsRetried',
  embeddingMs: 'EmbeddingMs',
  databaseMs: 'DatabaseMs',
  searchMs: 'SearchMs',
  searches: 'Searches',
  resultsReturned: 'ResultsReturned',
  reconcileEnqueued: 'ReconcileEnqueued',
} as const;

export interface FunctionMetrics {
  count(name: string, value?: number): void;
  /** A count with one extra dimension (published as its own metric line). */
  countBy(name: string, dimension: string, value: string): void;
  milliseconds(name: string, ms: number): void;
  /** Write what was gathered (once per invocation). */
  flush(): void;
}

export function powertoolsMetrics(): FunctionMetrics {
  const metrics = new Metrics({ namespace: METRIC_NAMESPACE });
  // Flushed only when something was gathered: Powertools warns about an empty flush.
  let pending = 0;
  return {
    count: (name, value = 1) => {
      pending += 1;
      metrics.addMetric(name, MetricUnit.Count, value);
    },
    countBy: (name, dimension, value) =>
      metrics.singleMetric().addDimension(dimension, value).addMetric(name, MetricUnit.Count, 1),
    milliseconds: (name, ms) => {
      pending += 1;
      metrics.addMetric(name, MetricUnit.Milliseconds, ms);
    },
    flush: () => {
      if (pending === 0) return;
      pending = 0;
      metrics.publishStoredMetrics();
    },
  };
}

/** The embedder, with the time of each call recorded as EmbeddingMs. */
export function timedEmbedder(embedder: Embedder, metrics: FunctionMetrics): Embedder {
  return {
    modelId: embedder.modelId,
    dimension: embedder.dimension,
    embed: async (images) => {
      const started = performance.now();
      try {
        return await embedder.embed(images);
      } finally {
        metrics.milliseconds(METRIC_NAMES.embeddingMs, performance.now() - started);
      }
    },
  };
}

/** The store, with the time of every call that returns a promise recorded as DatabaseMs. */
export function timedStore<T extends VectorStore>(store: T, metrics: FunctionMetrics): T {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function' || property === 'close') return value;
      return (...args: unknown[]) => {
        const started = performance.now();
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) {
          return result.finally(() =>
            metrics.milliseconds(METRIC_NAMES.databaseMs, performance.now() - started),
          );
        }
        return result;
      };
    },
  });
}
