import type { IndexFailure, StoreStats } from '../../core/ports';
import type { SearchStrategies } from './search-strategies';
import type { StoreContext } from './store-context';

/**
 * Images that could not be indexed (`index_failures`, with their reason) and the store's counts.
 * Owns the failure rows' inserts and reads; the writes that clear a failure (a later good write or a
 * removal) live with those writes.
 */
export class FailuresAndStats {
  constructor(
    private readonly context: StoreContext,
    private readonly search: SearchStrategies,
  ) {}

  async recordFailure(source: string, key: string, reason: string, etag?: string): Promise<void> {
    await this.context.client.query(
      `INSERT INTO index_failures (source, key, reason, etag) VALUES ($1, $2, $3, $4)
       ON CONFLICT (source, key) DO UPDATE SET reason = EXCLUDED.reason, etag = EXCLUDED.etag, failed_at = now()`,
      [source, key, reason, etag ?? null],
    );
  }

  async listFailures(source?: string): Promise<IndexFailure[]> {
    const rows = await this.context.client.query<{
      source: string;
      key: string;
      reason: string;
      failed_at: Date;
    }>(
      'SELECT source, key, reason, failed_at FROM index_failures WHERE $1::text IS NULL OR source = $1 ORDER BY source, key',
      [source ?? null],
    );
    return rows.map((row) => ({
      source: row.source,
      key: row.key,
      reason: row.reason,
      failedAt: new Date(row.failed_at),
    }));
  }

  async stats(): Promise<StoreStats> {
    const sources = await this.context.client.query<{ source: string; images: number }>(
      'SELECT source, count(*)::integer AS images FROM images GROUP BY source ORDER BY source',
    );
    const [failures] = await this.context.client.query<{ count: number }>(
      'SELECT count(*)::integer AS count FROM index_failures',
    );
    return {
      modelId: this.context.options.modelId,
      dimension: this.context.options.dimension,
      images: sources.reduce((sum, s) => sum + s.images, 0),
      failures: failures?.count ?? 0,
      sources,
      engine: this.context.client.engine,
      searchStrategy: this.search.current,
    };
  }
}
