import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * Model files and the labelled image set live outside the repository (never committed). Tests read
 * them from OMPF_MODELS_DIR and OMPF_DATASET_DIR, defaulting to ../shared beside the checkout.
 * A missing directory fails the test run loudly; nothing is skipped.
 */
const sharedRoot = resolve(__dirname, '..', '..', '..', 'shared');

export const MODELS_DIR = resolve(process.env.OMPF_MODELS_DIR ?? join(sharedRoot, 'models'));
export const DATASET_DIR = resolve(process.env.OMPF_DATASET_DIR ?? join(sharedRoot, 'data'));
export const CALTECH_DIR = join(DATASET_DIR, 'caltech101-animals-dev');

export function requirePath(path: string, what: string): string {
  if (!existsSync(path)) {
    throw new Error(
      `${what} not found at ${path}. Set OMPF_MODELS_DIR / OMPF_DATASET_DIR (see README, "Tests").`,
    );
  }
  return path;
}

export const MOBILENET_FILE = 'mobilenetv2-12-int8.onnx';
export const LIGHT_RESNET50_FILE = 'light_resnet50.onnx';
export const LIGHT_RESNET50_SHA256 = '05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4';

/** PostgreSQL + pgvector for the contract suite; .ci/run starts one and sets this. */
export const TEST_DATABASE_URL = process.env.OMPF_TEST_DATABASE_URL;
