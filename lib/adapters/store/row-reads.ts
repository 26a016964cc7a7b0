import { decodeHalfvec } from './halfvec-binary';
import type { SqlClient } from './sql-client';

/**
 * Reads of single rows and keys: content hashes (for skipping unchanged files), key listings, a row's
 * raw and searched vectors, the sources holding a key. Read-only: must not write anything.
 */
export class RowReads {
  constructor(private readonly client: SqlClient) {}

  async contentHashes(source: string, keys: readonly string[]): Promise<Map<string, string>> {
    if (keys.length === 0) return new Map();
    const rows = await this.client.query<{ key: string; content_hash: string }>(
      'SELECT key, content_hash FROM images WHERE source = $1 AND key = ANY($2::text[])',
      [source, keys],
    );
    return new Map(rows.map((row) => [row.key, row.content_hash]));
  }

  async listKeys(source: string): Promise<string[]> {
    const rows = await this.client.query<{ key: string }>(
      'SELECT key FROM images WHERE source = $1 ORDER BY key',
      [source],
    );
    return rows.map((row) => row.key);
  }

  /** The model's output for the image (with DBA on, the raw vector, not the augmented one). */
  async getEmbedding(source: string, key: string): Promise<Float32Array | undefined> {
    const [row] = await this.client.query<{ embedding: Uint8Array }>(
      'SELECT halfvec_send(coalesce(raw_embedding, embedding)) AS embedding FROM images WHERE source = $1 AND key = $2',
      [source, key],
    );
    return row ? decodeHalfvec(row.embedding) : undefined;
  }

  /** The vector searches compare queries with (with DBA on, the augmented one). */
  async getSearchedEmbedding(source: string, key: string): Promise<Float32Array | undefined> {
    const [row] = await this.client.query<{ embedding: Uint8Array }>(
      'SELECT halfvec_send(embedding) AS embedding FROM images WHERE source = $1 AND key = $2',
      [source, key],
    );
    return row ? decodeHalfvec(row.embedding) : undefined;
  }

  async findSources(key: string): Promise<string[]> {
    const rows = await this.client.query<{ source: string }>(
      'SELECT source FROM images WHERE key = $1 ORDER BY source',
      [key],
    );
    return rows.map((row) => row.source);
  }
}
