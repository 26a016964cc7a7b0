import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ModelFileError } from '../../core/errors';
import type { ModelSpec } from '../../core/model-spec';
import {
  DEFAULT_MODEL_BASE_URL,
  modelDownloadUrls,
  modelPath,
  placeByHandHint,
  verifyModelFile,
} from './model-registry';

/**
 * `ompf models pull`: download a model file, say in words what went wrong when the server sends
 * something else (an HTTP error, a Git LFS pointer, an HTML page, a truncated or different file), and
 * install nothing that is not exactly one of the files the spec accepts.
 */

export interface PullProgress {
  start(totalBytes: number | undefined, url: string): void;
  advance(bytes: number): void;
  stop(): void;
}

export interface PullOptions {
  /** Download base for built-in models (OMPF_MODEL_BASE_URL); Hugging Face's onnxmodelzoo by default. */
  readonly baseUrl?: string;
  readonly fetchImpl?: typeof fetch;
  /** Whole-download limit per URL. */
  readonly timeoutMs?: number;
}

/** What one URL served instead of the model; the message is shown to the user as is. */
class DownloadProblem extends Error {
  constructor(
    message: string,
    /** The server was never reached (DNS, refused, offline): the hint is about placing the file by hand. */
    readonly unreachable = false,
  ) {
    super(message);
  }
}

/** The first bytes kept to recognise an LFS pointer or an HTML page. */
const HEAD_BYTES = 1024;
const LFS_POINTER = 'version https://git-lfs.github.com/spec/';

/**
 * Download a model into the models directory. Tries each URL in turn; the file is written beside its
 * destination and renamed into place only once its size and SHA-256 match an accepted file.
 */
export async function pullModel(
  spec: ModelSpec,
  modelsDir: string,
  progress: PullProgress,
  options: PullOptions = {},
): Promise<{ path: string; alreadyPresent: boolean; sha256: string }> {
  const path = modelPath(spec, modelsDir);
  const baseUrl = options.baseUrl ?? DEFAULT_MODEL_BASE_URL;
  const urls = modelDownloadUrls(spec, baseUrl);
  if (existsSync(path)) {
    try {
      return { path, alreadyPresent: true, sha256: verifyModelFile(spec, modelsDir).file.sha256 };
    } catch {
      // A wrong or partial file: replaced below, once a good one has been downloaded.
    }
  }
  if (urls.length === 0) {
    throw new ModelFileError(`Model '${spec.id}' has no download URL.`, {
      hint: placeByHandHint(spec, path, undefined),
    });
  }
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  const failures: DownloadProblem[] = [];
  for (const url of urls) {
    try {
      const sha256 = await downloadTo(partial, url, spec, progress, options);
      renameSync(partial, path);
      return { path, alreadyPresent: false, sha256 };
    } catch (error) {
      failures.push(
        error instanceof DownloadProblem ? error : new DownloadProblem(describeFetchError(error), true),
      );
    } finally {
      rmSync(partial, { force: true });
    }
  }
  const details = urls.map((url, i) => `${url}: ${failures[i]!.message}`).join('; ');
  const offline = failures.every((failure) => failure.unreachable);
  throw new ModelFileError(`Could not download model '${spec.id}'. ${details}. Nothing was installed.`, {
    hint: offline
      ? `If this machine is offline: ${placeByHandHint(spec, path, urls[0])}`
      : `${baseUrl === DEFAULT_MODEL_BASE_URL ? '' : `OMPF_MODEL_BASE_URL is ${baseUrl}; check it, or unset it to use ${DEFAULT_MODEL_BASE_URL}. `}Or: ${placeByHandHint(spec, path, urls[0])}`,
    context: { path, urls },
  });
}

/** Streams one URL into `target`; returns the SHA-256 of an accepted file or throws a DownloadProblem. */
async function downloadTo(
  target: string,
  url: string,
  spec: ModelSpec,
  progress: PullProgress,
  options: PullOptions,
): Promise<string> {
  const fetchImpl = options.fetchImpl ?? fetch;
  const response = await fetchImpl(url, {
    redirect: 'follow',
    signal: AbortSignal.timeout(options.timeoutMs ?? 30 * 60_000),
  });
  if (!response.ok) throw new DownloadProblem(describeHttpStatus(response));
  if (!response.body) throw new DownloadProblem(`HTTP ${response.status} with an empty body`);
  // A length is only the file's length when the body is not content-encoded (fetch decodes it).
  const encoded = (response.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const declared = encoded ? undefined : Number(response.headers.get('content-length')) || undefined;
  const sizes = spec.accepted.map((file) => file.sizeBytes);
  const known = sizes.filter((size): size is number => size !== undefined);
  const largest = known.length === sizes.length ? Math.max(...known) : undefined;

  const hash = createHash('sha256');
  const head: Uint8Array[] = [];
  let headLength = 0;
  let received = 0;
  const file = await open(target, 'w');
  progress.start(declared ?? spec.accepted[0].sizeBytes, url);
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      if (headLength < HEAD_BYTES) {
        head.push(chunk.subarray(0, HEAD_BYTES - headLength));
        headLength += Math.min(chunk.byteLength, HEAD_BYTES - headLength);
      }
      received += chunk.byteLength;
      if (largest !== undefined && received > largest) {
        throw new DownloadProblem(
          `the server sent more than ${largest} bytes, more than any accepted file of '${spec.id}': a different file`,
        );
      }
      hash.update(chunk);
      await file.write(chunk);
      progress.advance(chunk.byteLength);
    }
  } catch (error) {
    if (error instanceof DownloadProblem) throw error;
    throw new DownloadProblem(
      `the download broke off after ${received}${declared ? ` of ${declared}` : ''} bytes (${describeFetchError(error)})`,
    );
  } finally {
    await file.close();
    progress.stop();
  }

  const start = new TextDecoder('utf-8', { fatal: false }).decode(Buffer.concat(head)).trimStart();
  if (start.startsWith(LFS_POINTER)) throw new DownloadProblem(describeLfsPointer(start, received));
  const contentType = response.headers.get('content-type') ?? '';
  if (/^text\/html/i.test(contentType) || /^<(!doctype html|html[\s>])/i.test(start)) {
    const title = /<title[^>]*>([^<]{1,120})/i.exec(start)?.[1]?.trim();
    throw new DownloadProblem(
      `the server sent an HTML page${title ? ` ("${title}")` : ''} of ${received} bytes instead of the model: a login, error or proxy page`,
    );
  }
  if (declared !== undefined && received < declared) {
    throw new DownloadProblem(`the download ended after ${received} of ${declared} bytes: truncated`);
  }
  if (sizes.every((size) => size !== undefined && size !== received)) {
    throw new DownloadProblem(
      `the file is ${received} bytes; '${spec.id}' is ${sizes.join(' or ')} bytes${received < largest! ? ': truncated or a different file' : ': a different file'}`,
    );
  }
  const actual = hash.digest('hex');
  if (!spec.accepted.some((accepted) => accepted.sha256 === actual)) {
    throw new DownloadProblem(
      `the file has SHA-256 ${actual}, expected ${spec.accepted.map((f) => f.sha256).join(' or ')}: a different file`,
    );
  }
  return actual;
}

function describeHttpStatus(response: Response): string {
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
  if (response.status === 404) return `${status}: no file at this address`;
  if (response.status === 401 || response.status === 403) {
    return `${status}: the server refuses access (a private or gated repository, or a proxy)`;
  }
  if (response.status === 429) return `${status}: rate limited; try again later`;
  if (response.status >= 500) return `${status}: the server failed; try again later`;
  return status;
}

/** A Git LFS pointer names the object it stands for: say whether it is the right one. */
function describeLfsPointer(text: string, received: number): string {
  const oid = /^oid sha256:([0-9a-f]{64})$/m.exec(text)?.[1];
  const size = /^size (\d+)$/m.exec(text)?.[1];
  const names = oid ? ` (it names sha256:${oid}${size ? `, ${size} bytes` : ''})` : '';
  return `the server sent a Git LFS pointer of ${received} bytes${names} instead of the model: the file's content is not served at this address`;
}

const NETWORK_ERRORS: Readonly<Record<string, string>> = {
  ENOTFOUND: 'the host name does not resolve (offline, or no DNS)',
  EAI_AGAIN: 'the host name does not resolve (offline, or no DNS)',
  ECONNREFUSED: 'the connection was refused',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the connection timed out',
  ENETUNREACH: 'the network is unreachable',
};

interface ErrorLike {
  readonly name?: string;
  readonly message?: string;
  readonly code?: string;
  readonly cause?: { readonly code?: string; readonly message?: string };
}

/** Duck-typed: fetch's errors may come from another realm (a test VM), where instanceof fails. */
function describeFetchError(error: unknown): string {
  if (typeof error !== 'object' || error === null) return String(error);
  const { name, message, code: ownCode, cause } = error as ErrorLike;
  if (name === 'TimeoutError') return 'timed out';
  const code = cause?.code ?? ownCode;
  if (code) return NETWORK_ERRORS[code] ? `${code}: ${NETWORK_ERRORS[code]}` : code;
  return cause?.message ?? message ?? 'unknown error';
}
