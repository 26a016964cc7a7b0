import type { IndexedKey } from '../../core/ports';
import { decodeHalfvec, encodeHalfvec } from './halfvec-binary';
import type { SqlClient } from './sql-client';

/** `source` and `key` joined, as the maps of ownDistances are keyed. */
export function refKey(ref: { readonly source: string; readonly key: string }): string {
  return `${ref.source}\u0000${ref.key}`;
}

/**
 * Cosine distances from `vector` to the own (raw, never DBA-augmented) vectors of the given images,
 * by refKey; an image not stored is absent. Float arithmetic on both sides (half -> float is exact).
 */
export async function ownDistances(
  client: SqlClient,
  vector: Float32Array,
  refs: readonly { readonly source: string; readonly key: string }[],
): Promise<Map<string, number>> {
  if (refs.length === 0) return new Map();
  const rows = await client.query<{ source: string; key: string; distance: number }>(
    `SELECT source, key, coalesce(raw_embedding, embedding)::vector <=> $1::halfvec::vector AS distance
       FROM images
      WHERE (source, key) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
    [encodeHalfvec(vector), refs.map((r) => r.source), refs.map((r) => r.key)],
  );
  return new Map(rows.map((r) => [refKey(r), r.distance]));
}

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

  async getSearchedEmbeddings(
    refs: readonly { readonly source: string; readonly key: string }[],
  ): Promise<(Float32Array | undefined)[]> {
    if (refs.length === 0) return [];
    const rows = await this.client.query<{ source: string; key: string; embedding: Uint8Array }>(
      `SELECT source, key, halfvec_send(embedding) AS embedding
         FROM images
        WHERE (source, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [refs.map((r) => r.source), refs.map((r) => r.key)],
    );
    const found = new Map(rows.map((r) => [refKey(r), decodeHalfvec(r.embedding)]));
    return refs.map((ref) => found.get(refKey(ref)));
  }

  /** The image or failure held for one key. */
  async indexedKey(source: string, key: string): Promise<IndexedKey | undefined> {
    const [row] = await this.client.query<{ etag: string | null; failed: boolean }>(
      `SELECT etag, false AS failed FROM images WHERE source = $1 AND key = $2
       UNION ALL
       SELECT etag, true AS failed FROM index_failures WHERE source = $1 AND key = $2
       ORDER BY failed LIMIT 1`,
      [source, key],
    );
    return row ? { key, etag: row.etag ?? undefined, failed: row.failed } : undefined;
  }

  /** Images and failures of `source` in (after, upTo], in byte order (the bucket listing's). */
  async indexedRange(
    source: string,
    after: string | undefined,
    upTo: string | undefined,
  ): Promise<IndexedKey[]> {
    const rows = await this.client.query<{ key: string; etag: string | null; failed: boolean }>(
      `SELECT key, etag, failed FROM (
       SELECT key, etag, false AS failed FROM images
       WHERE source = $1 AND ($2::text IS NULL OR key COLLATE "C" > $2) AND ($3::text IS NULL OR key COLLATE "C" <= $3)
       UNION ALL
       SELECT f.key, f.etag, true AS failed FROM index_failures f
       WHERE f.source = $1 AND ($2::text IS NULL OR f.key COLLATE "C" > $2) AND ($3::text IS NULL OR f.key COLLATE "C" <= $3)
         AND NOT EXISTS (SELECT 1 FROM images i WHERE i.source = f.source AND i.key = f.key)
       ) AS held ORDER BY key COLLATE "C"`,
      [source, after ?? null, upTo ?? null],
    );
    return rows.map((row) => ({ key: row.key, etag: row.etag ?? undefined, failed: row.failed }));
  }

  async findSources(key: string): Promise<string[]> {
    const rows = await this.client.query<{ source: string }>(
      'SELECT source FROM images WHERE key = $1 ORDER BY source',
      [key],
    );
    return rows.map((row) => row.source);
  }
}
