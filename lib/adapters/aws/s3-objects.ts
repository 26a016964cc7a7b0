import { randomUUID } from 'node:crypto';
import { GetObjectCommand, paginateListObjectsV2, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { UploadTicket } from '../../api/http-api';
import {
  DependencyUnavailableError,
  InvalidInputError,
  NotFoundError,
  TooLargeError,
} from '../../core/errors';
import type { ObjectContent, ObjectReader } from '../../core/object-events';
import type { ListedObject, ObjectLister } from '../../core/reconcile';

export interface S3ObjectsOptions {
  /** Objects larger than this are refused before their body is read. */
  readonly maxBytes: number;
}

/** Reads and lists objects and signs short-lived URLs for one S3 client. */
export class S3Objects implements ObjectReader, ObjectLister {
  constructor(
    private readonly s3: S3Client,
    private readonly options: S3ObjectsOptions,
  ) {}

  async read(bucket: string, key: string): Promise<ObjectContent> {
    let response;
    try {
      response = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    } catch (error) {
      throw translateS3Error(error, bucket, key);
    }
    const size = response.ContentLength;
    if (size !== undefined && size > this.options.maxBytes) {
      (response.Body as { destroy?: () => void } | undefined)?.destroy?.();
      throw new TooLargeError(
        `s3://${bucket}/${key} is ${size} bytes; the limit is ${this.options.maxBytes} bytes.`,
        { hint: 'Shrink the image, or raise OMPF_MAX_IMAGE_BYTES.', context: { bytes: size } },
      );
    }
    if (!response.Body) throw new NotFoundError(`s3://${bucket}/${key} has no body.`);
    const bytes = await response.Body.transformToByteArray();
    return { bytes, etag: response.ETag, versionId: response.VersionId };
  }

  /** ListObjectsV2, 1,000 keys a page, in UTF-8 byte order (as S3 lists them). */
  async *pages(bucket: string): AsyncIterable<readonly ListedObject[]> {
    try {
      for await (const page of paginateListObjectsV2(
        { client: this.s3, pageSize: 1000 },
        { Bucket: bucket },
      )) {
        yield (page.Contents ?? []).flatMap((o) =>
          o.Key === undefined ? [] : [{ key: o.Key, etag: (o.ETag ?? '').replace(/^"|"$/g, '') }],
        );
      }
    } catch (error) {
      throw translateS3Error(error, bucket, '');
    }
  }

  /** A GET URL for one object, valid for `seconds`. */
  presignGet(bucket: string, key: string, seconds: number): Promise<string> {
    return getSignedUrl(this.s3, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: seconds });
  }

  /** A PUT URL for one new object with the signed content type, valid for `seconds`. */
  presignPut(bucket: string, key: string, contentType: string, seconds: number): Promise<string> {
    return getSignedUrl(
      this.s3,
      new PutObjectCommand({ Bucket: bucket, Key: key, ContentType: contentType }),
      // The content type is signed, so the client must send the one it asked for.
      { expiresIn: seconds, signableHeaders: new Set(['content-type']) },
    );
  }
}

export interface QueryUploadsOptions {
  readonly bucket: string;
  /** Where query uploads go; the indexer never indexes keys under it. Ends with '/'. */
  readonly prefix: string;
  readonly expiresInSeconds: number;
}

/** Presigned uploads of query images too large for Lambda's 6 MB payload (POST /uploads). */
export function queryUploads(
  objects: S3Objects,
  options: QueryUploadsOptions,
): {
  create(contentType: string): Promise<UploadTicket>;
  read(key: string): Promise<Uint8Array>;
} {
  return {
    async create(contentType) {
      const key = `${options.prefix}${randomUUID()}`;
      return {
        key,
        uploadUrl: await objects.presignPut(options.bucket, key, contentType, options.expiresInSeconds),
        method: 'PUT',
        headers: { 'content-type': contentType },
        expiresInSeconds: options.expiresInSeconds,
      };
    },
    async read(key) {
      // Only keys this API handed out: an uploadKey never reads an arbitrary object of the bucket.
      const id = key.startsWith(options.prefix) ? key.slice(options.prefix.length) : '';
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
        throw new InvalidInputError(`'${key}' is not an upload key returned by POST /uploads.`, {
          hint: 'Call POST /uploads, PUT the image to its uploadUrl, then search with its key.',
        });
      }
      try {
        return (await objects.read(options.bucket, key)).bytes;
      } catch (error) {
        if (error instanceof NotFoundError) {
          throw new NotFoundError(`No uploaded image has the key '${key}' (not uploaded yet, or expired).`, {
            hint: 'PUT the image to the uploadUrl first; uploads are deleted after a day.',
            context: { key },
          });
        }
        throw error;
      }
    },
  };
}

function translateS3Error(error: unknown, bucket: string, key: string): Error {
  const name = (error as { name?: unknown }).name;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return new NotFoundError(`s3://${bucket}/${key} does not exist.`, { context: { bucket, key } });
  }
  if (status === undefined || status >= 500 || name === 'SlowDown' || name === 'TimeoutError') {
    return new DependencyUnavailableError(`S3 could not be reached for s3://${bucket}/${key}.`, {
      cause: error,
      hint: 'Retry later.',
    });
  }
  return error instanceof Error ? error : new Error(String(error));
}
