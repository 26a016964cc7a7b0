import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSRecord } from 'aws-lambda';
import type { PgVectorStore } from '../adapters/store/pg-vector-store';
import type { Config } from '../runtime/config';

/**
 * What the soak's driver (soak.ts) runs its batches against: the indexing handler in this process
 * (in-process-target.ts) or the deployed bundle through the Lambda runtime harness
 * (harness-target.ts). Each injects the same faults its own way; the driver plays S3 and SQS, and
 * checks the index against the bucket through `store` afterwards.
 */
export interface BatchFaults {
  /** The function's process dies part-way through the batch. */
  readonly crash: boolean;
  /** Keys whose next GetObject answers 503 SlowDown. */
  readonly failGets: ReadonlySet<string>;
  /** A database connection drops part-way through the batch. */
  readonly dropConnection: boolean;
  /** The database restarts while the batch runs (or, on PGlite, is reopened after it). */
  readonly restart: boolean;
}

export interface BatchResult {
  /** Message ids to retry (all of them when the invocation itself failed). */
  readonly failed: ReadonlySet<string>;
  /** The restart asked for really happened (a server whose start time changed, or a reopen). */
  readonly restarted: boolean;
  /** The crash asked for really happened (the batch may have ended before the kill). */
  readonly crashed?: boolean;
}

export interface FaultCounts {
  transientS3Error: number;
  slowResponse: number;
  databaseDrop: number;
}

export interface SoakTarget {
  readonly engine: 'pglite' | 'postgresql';
  /** What the handler runs as: 'in-process (Node 20)' or 'Lambda harness (Node 24, bundle)'. */
  readonly runtime: string;
  readonly bucket: string;
  /** The driver's own S3 client (never faulted). */
  readonly admin: S3Client;
  /** The store the handler writes, for the final check. */
  readonly store: PgVectorStore;
  /** The configuration the functions run with (the check re-embeds with it). */
  readonly config: Config;
  readonly counts: FaultCounts;
  /** Whether database restarts can be injected at all. */
  readonly canRestart: boolean;
  invoke(records: SQSRecord[], faults: BatchFaults): Promise<BatchResult>;
  close(): Promise<void>;
}
