import { z } from 'zod';
import { DEFAULT_RERANK_CANDIDATES, MAX_RERANK_CANDIDATES } from '../core/reranking';
import { MAX_GEM_POWER } from '../core/retrieval';

/**
 * Per-stage settings, kept in cdk.json under context "ompf:stages" and picked with `-c stage=NAME`.
 * Validated once at synth: a typo fails `cdk synth` with every problem listed, not a deployment.
 */
const stageSchema = z.strictObject({
  /** Built-in model name (resnet50, resnet50-int8, mobilenetv2-int8). */
  model: z.string().min(1),
  architecture: z.enum(['x86_64', 'arm64']),
  removalPolicy: z.enum(['destroy', 'retain']),
  logRetentionDays: z.number().int().positive(),
  indexer: z.strictObject({
    memoryMiB: z.number().int().min(1024).max(10_240),
    timeoutSeconds: z.number().int().min(10).max(900),
    batchSize: z.number().int().min(1).max(10_000),
    batchingWindowSeconds: z.number().int().min(0).max(300),
    /** Event source mapping maxConcurrency (2..1000): how many indexers may write to the database at once. */
    maxConcurrency: z.number().int().min(2).max(1000),
    maxReceiveCount: z.number().int().min(1).max(1000),
  }),
  query: z.strictObject({
    memoryMiB: z.number().int().min(1024).max(10_240),
    /** API Gateway REST integrations time out at 29 s. */
    timeoutSeconds: z.number().int().min(3).max(29),
  }),
  api: z.strictObject({
    rateLimit: z.number().positive(),
    burstLimit: z.number().int().positive(),
    quotaPerDay: z.number().int().positive(),
    corsOrigins: z.array(z.string().min(1)).min(1),
  }),
  database: z.strictObject({
    engineVersion: z.string().regex(/^1[67]\.\d+$/, 'PostgreSQL 16.x or 17.x'),
    instanceType: z.string().regex(/^[a-z0-9]+\.[a-z0-9]+$/, 'such as t4g.micro'),
    allocatedStorageGiB: z.number().int().min(20),
    maxAllocatedStorageGiB: z.number().int().min(20),
    multiAz: z.boolean(),
    backupRetentionDays: z.number().int().min(1).max(35),
    port: z.number().int().min(1150).max(65535),
    minPgvector: z.string().regex(/^\d+\.\d+\.\d+$/),
  }),
  /**
   * The model the stage ran before a change of `model` (a built-in name): shipped to the query function
   * too, so queries by image keep being answered from the old index while the new one is built.
   * Remove it once `ompf cloud status` shows the new index active.
   */
  previousModel: z.string().min(1).optional(),
  /**
   * The embedding transform (the stored model id records it: a change re-indexes the stage, beside
   * the index that keeps answering queries). Context `-c dba=N` / `-c flip=true` override it. The
   * descriptor (gemPower 0 = the model's average pool; framing) is part of it too; `rerank` (query time,
   * candidates re-ranked, 0 = off) is not, and changes no index.
   */
  embedding: z
    .strictObject({
      dba: z.number().int().min(0).max(10).default(3),
      flip: z.boolean().default(false),
      gemPower: z.number().min(0).max(MAX_GEM_POWER).default(3),
      framing: z.enum(['crop', 'squash', 'whole']).default('whole'),
      rerank: z.number().int().min(0).max(MAX_RERANK_CANDIDATES).default(DEFAULT_RERANK_CANDIDATES),
    })
    .default({
      dba: 3,
      flip: false,
      gemPower: 3,
      framing: 'whole',
      rerank: DEFAULT_RERANK_CANDIDATES,
    }),
  /** X-Ray tracing of the functions and the API stage (adds an X-Ray VPC endpoint). */
  tracing: z.boolean().default(false),
  operations: z
    .strictObject({
      /** EventBridge schedule of the full reconcile ('rate(1 day)', 'cron(0 3 * * ? *)') or 'off'. */
      reconcileSchedule: z
        .string()
        .regex(/^(rate\(.+\)|cron\(.+\)|off)$/, "an EventBridge schedule expression or 'off'")
        .default('rate(1 day)'),
      /** While a new index is built, a follow-up pass this often (it switches when caught up). */
      reindexPollMinutes: z.number().int().min(1).max(60).default(5),
    })
    .default({ reconcileSchedule: 'rate(1 day)', reindexPollMinutes: 5 }),
  alarms: z.strictObject({
    oldestMessageSeconds: z.number().int().positive(),
    email: z.string().email().optional(),
  }),
});

export type StageConfig = z.infer<typeof stageSchema>;

export const UPLOADS_PREFIX = 'query-uploads/';

export function parseStageConfig(stage: string, raw: unknown): StageConfig {
  if (raw === undefined) {
    throw new Error(`Unknown stage '${stage}': add it to "ompf:stages" in cdk.json.`);
  }
  const parsed = stageSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new Error(`Invalid settings for stage '${stage}' in cdk.json: ${problems.join('; ')}.`);
  }
  return parsed.data;
}
