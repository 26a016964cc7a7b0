import { ModelMismatchError } from '../../core/errors';
import { splitModelId } from '../../core/retrieval';
import { migrate } from './migrator';
import type { SqlClient } from './sql-client';
import type { StoreOptions } from './store-context';

/**
 * Opening a store: migrations, and the identity check that keeps vectors of two models (or two
 * embedding transforms) apart. Owns `ompf_store`'s model_id and dimension and the DROP of `recreate`;
 * must not touch rows, strategies or augmentation.
 */

/**
 * Migrate, then refuse a store created for another model or dimension: its vectors cannot be compared
 * with this model's. Returns halfvec's type OID, which binary halfvec[] parameters need.
 */
export async function openSchema(client: SqlClient, options: StoreOptions): Promise<number> {
  await migrate(client, { modelId: options.modelId, dimension: options.dimension });
  const [meta] = await client.query<{ model_id: string; dimension: number }>(
    'SELECT model_id, dimension FROM ompf_store',
  );
  if (!meta || meta.model_id !== options.modelId || meta.dimension !== options.dimension) {
    // Model and transform named apart: `--model` takes the model name, the transform comes from
    // OMPF_FLIP / OMPF_POWER / OMPF_DBA.
    const stored = splitModelId(meta?.model_id ?? '?');
    const wanted = splitModelId(options.modelId);
    throw new ModelMismatchError(
      `This store was built with model '${stored.model}'${describeTransform(stored.transform)} (${meta?.dimension ?? '?'}-d); the configured model is '${wanted.model}'${describeTransform(wanted.transform)} (${options.dimension}-d). Vectors of different models or transforms cannot be compared.`,
      {
        hint: `Re-index with the new model or transform (\`ompf index DIR --reindex\`), use --model ${stored.model}${stored.transform ? ` with the transform settings it was built with (OMPF_FLIP, OMPF_POWER, OMPF_DBA)` : ''}, or point OMPF_DATA_DIR/DATABASE_URL at another store.`,
        context: { storeModel: meta?.model_id, requestedModel: options.modelId },
      },
    );
  }
  const [halfvec] = await client.query<{ oid: number }>("SELECT 'halfvec'::regtype::oid::integer AS oid");
  return halfvec!.oid;
}

/** Drop everything a store holds, so that `openSchema` recreates it (re-index after a model change). */
export async function dropSchema(client: SqlClient): Promise<void> {
  await client.exec(
    'DROP TABLE IF EXISTS images, index_failures, image_tombstones, ompf_store, ompf_migrations',
  );
}

function describeTransform(suffix: string): string {
  return suffix ? ` with transform '${suffix}'` : '';
}
