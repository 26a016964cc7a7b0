import { queueDepth } from '../adapters/aws/sqs-queues';
import { PgIndexCatalogue } from '../adapters/store/index-catalogue';
import { PgVectorStore } from '../adapters/store/pg-vector-store';
import { readCatalogue, readerOptions, type AwsParts } from './aws-base';

/**
 * What GET /status (the query function) and `ompf cloud status` (the operations function) answer
 * for a cloud stage: the index answering queries and the one being built beside it, with their
 * counts; the recent reconcile runs; the queues' depths. Read-only; a queue that cannot be read is
 * reported as such, not as a failure of the whole status.
 */
export async function stageStatus(parts: AwsParts): Promise<Record<string, unknown>> {
  const entries = (await readCatalogue(parts)) ?? [];
  const indexes = await Promise.all(
    entries
      .filter((e) => e.state !== 'retired')
      .map(async (entry) => {
        const store = await PgVectorStore.open(
          await parts.sqlFor(entry.schema),
          readerOptions(entry, parts.config.base),
        );
        const stats = await store.stats();
        return {
          model: entry.modelId,
          state: entry.state,
          images: stats.images,
          failures: stats.failures,
          searchStrategy: stats.searchStrategy,
          createdAt: entry.createdAt.toISOString(),
          activatedAt: entry.activatedAt?.toISOString() ?? null,
        };
      }),
  );
  const active = indexes.find((i) => i.state === 'active');
  const building = indexes.find((i) => i.state === 'building');
  const runs = entries.length > 0 ? await new PgIndexCatalogue(await parts.sql()).recentRuns(5) : [];
  const depth = async (url: string | undefined) => {
    if (!url) return null;
    return queueDepth(parts.clients.sqs, url).catch(() => 'unavailable');
  };
  return {
    model: active?.model ?? null,
    images: active?.images ?? 0,
    failures: active?.failures ?? 0,
    indexes,
    reindex: building
      ? {
          state: 'building',
          from: active?.model ?? null,
          to: building.model,
          indexed: building.images + building.failures,
          of: active ? active.images + active.failures : null,
        }
      : { state: 'none' },
    reconcile: runs.map((run) => ({
      id: run.id,
      model: run.modelId,
      trigger: run.trigger,
      startedAt: run.startedAt.toISOString(),
      finishedAt: run.finishedAt?.toISOString() ?? null,
      ...run.counts,
      switched: run.switched,
      ...(run.error ? { error: run.error } : {}),
    })),
    queues: {
      indexing: await depth(parts.config.queueUrl),
      deadLetters: await depth(parts.config.deadLetters?.url),
    },
  };
}
