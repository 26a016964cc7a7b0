import { createHash } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { SoakTarget } from './soak-target';

/**
 * The soak's invariant, checked against the bucket itself (not the driver's bookkeeping): every
 * object has exactly one row holding its current content and that content's embedding, no row
 * outlives its object, every corrupt object is listed as failed and has no row, and only poison
 * messages are in the dead-letter queue.
 */
export interface DriverRecord {
  /** Keys the driver left in the bucket. */
  readonly present: ReadonlySet<string>;
  /** SHA-256 of every corrupt or truncated body written. */
  readonly corruptHashes: ReadonlySet<string>;
  readonly deadLetters: readonly { readonly id: string; readonly poison: boolean }[];
  readonly poisonIds: ReadonlySet<string>;
}

const MODEL = 'mobilenetv2-int8';
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / Math.sqrt(na * nb);
}

export async function checkIndex(
  target: SoakTarget,
  driver: DriverRecord,
): Promise<{ objects: number; rows: number; failures: number; mismatches: string[] }> {
  const { resolveModelSpec } = await import('../adapters/models/model-registry');
  const { productEmbedder, productPreprocessor, sharedEmbedder } = await import('../runtime/product');
  const { admin, bucket, store } = target;
  const { present, corruptHashes, deadLetters, poisonIds } = driver;
  const mismatches: string[] = [];
  const objects = new Map<string, Uint8Array>();
  let token: string | undefined;
  do {
    const page = await admin.send(
      new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }),
    );
    for (const object of page.Contents ?? []) {
      const got = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key! }));
      objects.set(object.Key!, await got.Body!.transformToByteArray());
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  if (objects.size !== present.size || [...present].some((k) => !objects.has(k))) {
    mismatches.push(`bucket listing (${objects.size}) differs from the driver's (${present.size})`);
  }

  const rows = await store.listKeys(bucket);
  const hashes = await store.contentHashes(bucket, rows);
  const failures = new Map((await store.listFailures(bucket)).map((f) => [f.key, f.reason]));
  const spec = resolveModelSpec(MODEL);
  const config = target.config;
  const embedder = productEmbedder(await sharedEmbedder(spec, config), spec, config);
  const preprocessor = productPreprocessor(spec, config);
  for (const key of rows) {
    if (!objects.has(key)) mismatches.push(`row for deleted object '${key}'`);
  }
  for (const [key, bytes] of objects) {
    const hash = sha256(bytes);
    if (corruptHashes.has(hash)) {
      if (!failures.get(key)) mismatches.push(`corrupt object '${key}' not listed as failed`);
      if (hashes.has(key)) mismatches.push(`corrupt object '${key}' has a row (of older content)`);
      continue;
    }
    const stored = hashes.get(key);
    if (stored === undefined) {
      mismatches.push(`object '${key}' has no row`);
      continue;
    }
    if (stored !== hash) {
      mismatches.push(`row of '${key}' holds another content (${stored.slice(0, 8)} != ${hash.slice(0, 8)})`);
      continue;
    }
    const [expected] = await embedder.embed([await preprocessor.prepare(bytes)]);
    const actual = await store.getEmbedding(bucket, key);
    if (!expected || !actual || cosine(expected, actual) < 0.999) {
      mismatches.push(`embedding of '${key}' is not that of its current content`);
    }
  }
  const dead = new Set(deadLetters.map((m) => m.id));
  for (const message of deadLetters) {
    if (!message.poison) mismatches.push(`healthy message ${message.id} ended in the dead-letter queue`);
  }
  for (const id of poisonIds) {
    if (!dead.has(id)) mismatches.push(`poison message ${id} did not end in the dead-letter queue`);
  }
  return { objects: objects.size, rows: rows.length, failures: failures.size, mismatches };
}
