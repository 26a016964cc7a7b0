/**
 * The product's error vocabulary. Every error a caller can see is an OmpfError: it names what failed,
 * says what to do next (`hint`), and maps to exactly one HTTP status and one CLI exit code. Anything
 * else that escapes is a bug and is reported as an internal error without its stack.
 */
export interface ErrorDetails {
  /** What to do next, in one sentence a user can act on. */
  readonly hint?: string;
  readonly cause?: unknown;
  /** Machine-readable context (the key, the limit, the value received). */
  readonly context?: Readonly<Record<string, unknown>>;
}

export abstract class OmpfError extends Error {
  /** Stable identifier for scripts and JSON error bodies. */
  abstract readonly code: string;
  abstract readonly httpStatus: number;
  abstract readonly exitCode: number;
  readonly hint: string | undefined;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.hint = details.hint;
    this.context = details.context ?? {};
  }

  toJSON(): { code: string; message: string; hint?: string; context?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(Object.keys(this.context).length === 0 ? {} : { context: { ...this.context } }),
    };
  }
}

/** A request or argument that can never succeed as given (N out of range, bad key, malformed body). */
export class InvalidInputError extends OmpfError {
  readonly code = 'invalid_input';
  readonly httpStatus = 400;
  readonly exitCode = 2;
}

/** Configuration (environment variables, model spec files) that is missing or invalid. */
export class ConfigError extends OmpfError {
  readonly code = 'invalid_config';
  readonly httpStatus = 500;
  readonly exitCode = 78; // EX_CONFIG
}

/** The image or key asked for is not in the index, or a path does not exist. */
export class NotFoundError extends OmpfError {
  readonly code = 'not_found';
  readonly httpStatus = 404;
  readonly exitCode = 66; // EX_NOINPUT
}

/** Input bigger than a configured limit (bytes or pixels). */
export class TooLargeError extends OmpfError {
  readonly code = 'too_large';
  readonly httpStatus = 413;
  readonly exitCode = 65; // EX_DATAERR
}

/** Bytes that are not an image we can decode: corrupt, truncated, empty, or an unsupported format. */
export class UnsupportedImageError extends OmpfError {
  readonly code = 'unsupported_image';
  readonly httpStatus = 415;
  readonly exitCode = 65; // EX_DATAERR
}

/** The store was built with another model (or transformation); its vectors cannot be compared. */
export class ModelMismatchError extends OmpfError {
  readonly code = 'model_mismatch';
  readonly httpStatus = 409;
  readonly exitCode = 75;
}

/** A model file is missing, cannot be downloaded, or fails its checksum. */
export class ModelFileError extends OmpfError {
  readonly code = 'model_unavailable';
  readonly httpStatus = 503;
  readonly exitCode = 69; // EX_UNAVAILABLE
}

/** A dependency we cannot do without (database, object store) is unreachable: retry later. */
export class DependencyUnavailableError extends OmpfError {
  readonly code = 'dependency_unavailable';
  readonly httpStatus = 503;
  readonly exitCode = 69; // EX_UNAVAILABLE
}

/** A cloud stage's operation (reconcile, redrive...) ran and failed there; its logs say why. */
export class OperationFailedError extends OmpfError {
  readonly code = 'operation_failed';
  readonly httpStatus = 502;
  readonly exitCode = 70; // EX_SOFTWARE
}

/**
 * Vectors of two models (or two embedding transforms) are never compared: every service that pairs a
 * store with an embedder checks this once, at construction. `hint` says how to fix it in that runtime.
 */
export function assertSameModel(storeModelId: string, embedderModelId: string, hint: string): void {
  if (storeModelId !== embedderModelId) {
    throw new ModelMismatchError(
      `The store holds '${storeModelId}' vectors but the model is '${embedderModelId}'.`,
      {
        hint,
        context: { storeModel: storeModelId, requestedModel: embedderModelId },
      },
    );
  }
}

export function isOmpfError(value: unknown): value is OmpfError {
  return value instanceof OmpfError;
}

/** What a caller (HTTP client, CLI user) may see of any thrown value. Internals never leak. */
export function describeError(error: unknown): {
  httpStatus: number;
  exitCode: number;
  body: ReturnType<OmpfError['toJSON']>;
} {
  if (isOmpfError(error)) {
    return { httpStatus: error.httpStatus, exitCode: error.exitCode, body: error.toJSON() };
  }
  return {
    httpStatus: 500,
    exitCode: 70, // EX_SOFTWARE
    body: {
      code: 'internal_error',
      message: 'Internal error.',
      hint: 'This is a bug in ompf; run again with OMPF_DEBUG=1 to see details and report it.',
    },
  };
}
