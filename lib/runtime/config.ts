import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import envPaths from 'env-paths';
import { z } from 'zod';
import { DEFAULT_MODEL_BASE_URL } from '../adapters/models/model-registry';
import { BINARY_MIN_ROWS, BINARY_OVERSAMPLING } from '../adapters/store/pg-vector-store';
import { ConfigError } from '../core/errors';
import { FRAMINGS, type Framing } from '../core/model-spec';
import { DEFAULT_RERANK_CANDIDATES, MAX_RERANK_CANDIDATES } from '../core/reranking';
import { MAX_DBA_NEIGHBOURS, MAX_GEM_POWER } from '../core/retrieval';

const paths = envPaths('ompf', { suffix: '' });

/** Plain decimal digits only: '1e1', '0x10', ' 5', 'Infinity' and 'NaN' are mistakes, not numbers. */
export const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number written in digits')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/** Every environment variable ompf reads, in one place, validated once at start. */
const envSchema = z.object({
  OMPF_MODELS_DIR: z.string().min(1).default(join(paths.cache, 'models')),
  OMPF_MODEL: z.string().min(1).default('resnet50'),
  OMPF_MODEL_BASE_URL: z
    .string()
    .regex(/^https?:\/\/[^/\s]+/, 'must be an http:// or https:// URL')
    .default(DEFAULT_MODEL_BASE_URL),
  OMPF_DATA_DIR: z.string().min(1).default(join(paths.data, 'store')),
  OMPF_GALLERY_DIR: z.string().min(1).default(join(paths.data, 'gallery')),
  PORT: integer(0, 65_535).default(3000),
  OMPF_HOST: z.string().min(1).default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  OMPF_MAX_IMAGE_BYTES: integer(1, 2 ** 31).default(50 * 1024 * 1024),
  OMPF_MAX_PIXELS: integer(1, 1_000_000_000).default(100_000_000),
  OMPF_THREADS: integer(0, 256).default(0),
  OMPF_BATCH_SIZE: integer(1, 256).default(8),
  OMPF_INDEX_WORKERS: integer(0, 64).optional(),
  OMPF_HNSW_MIN_ROWS: integer(1, 1_000_000_000).default(10_000),
  OMPF_BINARY_MIN_ROWS: integer(1, 1_000_000_000).default(BINARY_MIN_ROWS),
  OMPF_BINARY_OVERSAMPLING: integer(1, 100).default(BINARY_OVERSAMPLING),
  OMPF_FLIP: z.enum(['0', '1']).default('0'),
  OMPF_POWER: z.coerce.number().gt(0).max(1).default(1),
  OMPF_QUERY_EXPANSION: integer(0, 10).default(0),
  OMPF_DBA: integer(0, MAX_DBA_NEIGHBOURS).default(3),
  OMPF_POOLING: z.enum(['average', 'gem']).default('gem'),
  OMPF_GEM_POWER: z.coerce.number().min(1).max(MAX_GEM_POWER).default(3),
  OMPF_FRAMING: z.enum(FRAMINGS as [Framing, ...Framing[]]).default('whole'),
  OMPF_RERANK: integer(0, MAX_RERANK_CANDIDATES).default(DEFAULT_RERANK_CANDIDATES),
  OMPF_INDEX_BUILD_MEMORY: z
    .string()
    .regex(/^\d+(kB|MB|GB)$/, "a PostgreSQL memory size such as '512MB'")
    .default('512MB'),
});

export interface Config {
  readonly modelsDir: string;
  readonly model: string;
  /** Where built-in models download from: `<base>/<repo>/resolve/<revision>/<file>`. */
  readonly modelBaseUrl: string;
  readonly dataDir: string;
  /** The local server's gallery folder: watched, indexed, and where uploads are written. */
  readonly galleryDir: string;
  /** The local server's port (0: any free port) and address (loopback unless set otherwise). */
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string | undefined;
  readonly maxImageBytes: number;
  readonly maxPixels: number;
  readonly threads: number;
  readonly batchSize: number;
  /**
   * Worker threads that embed batches (indexing, evaluation), one onnxruntime session each; 0 embeds
   * batches on the in-process session. Single images (queries) always use the in-process session.
   */
  readonly indexWorkers: number;
  readonly hnswMinRows: number;
  /** PGlite: binary candidates + exact re-ranking from this many images on. */
  readonly binaryMinRows: number;
  /** PGlite binary search: Hamming candidates re-ranked per requested result (at least 64). */
  readonly binaryOversampling: number;
  readonly indexBuildMemory: string;
  /** Embedding transform (part of the stored model id; changing it means re-indexing). */
  readonly flip: boolean;
  readonly power: number;
  /** Default alpha-query-expansion neighbours for searches; 0 = off. */
  readonly queryExpansion: number;
  /**
   * Database-side augmentation neighbours, maintained by the store (part of the stored model id,
   * '+dba3'; changing it means re-indexing); 0 = off.
   */
  readonly dba: number;
  /**
   * The descriptor (part of the stored model id, '+whole+gem3'; changing it means re-indexing): GeM
   * pooling with this exponent of the last convolutional map (0 = the model's own average pool) and how
   * the picture is framed for the network.
   */
  readonly gemPower: number;
  readonly framing: Framing;
  /** Default k-reciprocal re-ranking of the first N candidates of a search (query time); 0 = off. */
  readonly rerank: number;
}

/**
 * One embedding worker per core, up to 4 (each holds a copy of the model's weights: about 100 MB for
 * ResNet50); none on a single core, where a worker would only add a thread to switch to.
 */
export function defaultIndexWorkers(cores = availableParallelism()): number {
  return cores >= 2 ? Math.min(cores, 4) : 0;
}

/** Intra-op threads of each embedding worker: the cores split evenly between the workers, at least 1. */
export function threadsPerIndexWorker(workers: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / Math.max(1, workers)));
}

/** Read and validate configuration once; every bad variable is reported in one error. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  // Empty strings mean "unset" (a common way to blank a variable in shells and .env files).
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}.`, {
      hint: 'Fix or unset the variables listed; see "Configuration" in the README.',
      context: { problems },
    });
  }
  const e = parsed.data;
  const config: Config = {
    modelsDir: e.OMPF_MODELS_DIR,
    model: e.OMPF_MODEL,
    modelBaseUrl: e.OMPF_MODEL_BASE_URL,
    dataDir: e.OMPF_DATA_DIR,
    galleryDir: e.OMPF_GALLERY_DIR,
    port: e.PORT,
    host: e.OMPF_HOST,
    databaseUrl: e.DATABASE_URL,
    maxImageBytes: e.OMPF_MAX_IMAGE_BYTES,
    maxPixels: e.OMPF_MAX_PIXELS,
    threads: e.OMPF_THREADS,
    batchSize: e.OMPF_BATCH_SIZE,
    indexWorkers: e.OMPF_INDEX_WORKERS ?? defaultIndexWorkers(),
    hnswMinRows: e.OMPF_HNSW_MIN_ROWS,
    binaryMinRows: e.OMPF_BINARY_MIN_ROWS,
    binaryOversampling: e.OMPF_BINARY_OVERSAMPLING,
    indexBuildMemory: e.OMPF_INDEX_BUILD_MEMORY,
    flip: e.OMPF_FLIP === '1',
    power: e.OMPF_POWER,
    queryExpansion: e.OMPF_QUERY_EXPANSION,
    dba: e.OMPF_DBA,
    gemPower: e.OMPF_POOLING === 'gem' ? e.OMPF_GEM_POWER : 0,
    framing: e.OMPF_FRAMING,
    rerank: e.OMPF_RERANK,
  };
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined));
  return { ...config, ...defined };
}
