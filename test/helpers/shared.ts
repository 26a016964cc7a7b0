import { spawnSync } from 'node:child_process';
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
/** Distractors: 6,745 photos of 63 other categories (Faces and Faces_easy: the same photos at two crops). */
export const OTHER_DIR = join(DATASET_DIR, 'caltech101-other');

/** Debian's chromium, for the search page's end-to-end test; jest's globalSetup installs it. */
export const CHROMIUM = '/usr/bin/chromium';

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

/**
 * Fails at once, with what to do, when `url` names a TCP host and port where nothing accepts a
 * connection within `timeoutMs` (synchronous, so a suite fails at import instead of every test
 * waiting out the pool's connection timeout). Unix-socket URLs (no host) are not checked.
 */
export function assertDatabaseListening(url: string, timeoutMs = 2_000): void {
  let host: string;
  let port: number;
  try {
    const parsed = new URL(url);
    host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
    port = parsed.port ? Number(parsed.port) : 5432;
  } catch {
    throw new Error('OMPF_TEST_DATABASE_URL is not a URL (postgres://user@host:port/database).');
  }
  if (!host) return;
  const probe = [
    `const s = require('node:net').connect(${port}, ${JSON.stringify(host)});`,
    `s.setTimeout(${timeoutMs}, () => { process.stderr.write('no answer in ${timeoutMs} ms'); process.exit(2); });`,
    `s.on('connect', () => process.exit(0));`,
    `s.on('error', (e) => { process.stderr.write(String(e.code || e.message)); process.exit(1); });`,
  ].join('\n');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const result = spawnSync(process.execPath, ['-e', probe], {
    env,
    encoding: 'utf8',
    timeout: timeoutMs + 3_000,
  });
  if (result.status === 0) return;
  const reason = result.stderr?.trim() || result.error?.message || `probe exited ${String(result.status)}`;
  throw new Error(
    `OMPF_TEST_DATABASE_URL is set, but no PostgreSQL listens on ${host}:${port} (${reason}): ` +
      'unset it (npm test then starts its own), or start one with ' +
      '`export OMPF_TEST_DATABASE_URL=$(bash scripts/ci/start-postgres.sh | tail -1)`.',
  );
}

/** An error jest reports as its message alone: one line saying what to do, no stack. */
export function oneLineError(message: string): Error {
  const error = new Error(message);
  error.stack = message;
  return error;
}

let checkedUrl: string | undefined;

/**
 * PostgreSQL + pgvector for the contract, handler and soak suites, which always run on it as well as
 * on PGlite: jest's globalSetup (test/setup) starts a private cluster and sets OMPF_TEST_DATABASE_URL.
 * Called at a suite's import: unset (globalSetup bypassed), or set with no server behind it, the suite
 * fails in about a second with one line saying what to do.
 */
export function testDatabaseUrl(): string {
  const url = process.env.OMPF_TEST_DATABASE_URL;
  if (!url) {
    throw oneLineError(
      'OMPF_TEST_DATABASE_URL is not set: run the tests with `npm test` (one file: `npm test -- <file>`; its ' +
        'globalSetup starts PostgreSQL), or set OMPF_TEST_DATABASE_URL=$(bash scripts/ci/start-postgres.sh | tail -1).',
    );
  }
  if (url !== checkedUrl) {
    try {
      assertDatabaseListening(url);
    } catch (error) {
      throw oneLineError((error as Error).message);
    }
    checkedUrl = url;
  }
  return url;
}
