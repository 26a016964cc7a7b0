import type { DuplicateGraph, DuplicateRule } from '../../core/ports';
import { ownDistances, refKey, type RowReads } from './row-reads';
import { dbaNeighbours, type StoreContext } from './store-context';

/**
 * The store's side of duplicate detection (lib/core/duplicates.ts): pairs read from the DBA neighbour
 * lists (each row's k nearest by raw cosine distance, kept exact on exact stores by augmentation.ts
 * with every write) whose distance is within the threshold, or whose perceptual hashes are within the
 * rule's bits while the distance is within its ceiling, plus rows with equal content hashes; and raw
 * distances between given rows. Read-only: owns no column, writes nothing.
 */
export class DuplicatePairs {
  constructor(
    private readonly context: StoreContext,
    private readonly reads: RowReads,
  ) {}

  async graph(rule: DuplicateRule): Promise<DuplicateGraph> {
    const near = dbaNeighbours(this.context.options) > 0;
    const edges = await this.context.client.query<{ a: string; b: string }>(
      `SELECT i.id::text AS a, n.id::text AS b
         FROM images i CROSS JOIN LATERAL unnest(i.dba_neighbours, i.dba_distances) AS n(id, distance)
         LEFT JOIN images j ON j.id = n.id AND n.distance > $2 AND n.distance <= $4
        WHERE $1::boolean
          AND (n.distance <= $2 OR bit_count(i.perceptual_hash # j.perceptual_hash) <= $3)
       UNION
       SELECT x.id::text, y.id::text FROM images x JOIN images y ON x.content_hash = y.content_hash AND x.id < y.id`,
      [near, rule.threshold, rule.hashBits, rule.hashCeiling],
    );
    const ids = [...new Set(edges.flatMap((e) => [e.a, e.b]))];
    const rows =
      ids.length === 0
        ? []
        : await this.context.client.query<{
            id: string;
            source: string;
            key: string;
            content_hash: string;
            perceptual_hash: string | null;
            width: number;
            height: number;
            bytes: number;
          }>(
            `SELECT id::text AS id, source, key, content_hash, perceptual_hash::text AS perceptual_hash, width, height, bytes
               FROM images
              WHERE id = ANY($1::bigint[]) ORDER BY source, key`,
            [ids],
          );
    const index = new Map(rows.map((r, i) => [r.id, i]));
    return {
      images: rows.map((r) => ({
        source: r.source,
        key: r.key,
        contentHash: r.content_hash,
        perceptualHash: r.perceptual_hash ?? undefined,
        width: r.width,
        height: r.height,
        bytes: r.bytes,
      })),
      edges: edges.flatMap((e) => {
        const a = index.get(e.a);
        const b = index.get(e.b);
        return a === undefined || b === undefined ? [] : [{ a, b }];
      }),
      nearDuplicates: near,
    };
  }

  async distancesFrom(
    from: { readonly source: string; readonly key: string },
    to: readonly { readonly source: string; readonly key: string }[],
  ): Promise<number[]> {
    if (to.length === 0) return [];
    const origin = await this.reads.getEmbedding(from.source, from.key);
    const distances = origin
      ? await ownDistances(this.context.client, origin, to)
      : new Map<string, number>();
    return to.map((t) => distances.get(refKey(t)) ?? Number.NaN);
  }
}
