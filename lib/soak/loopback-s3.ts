import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3ClientConfig } from '@aws-sdk/client-s3';

/**
 * A real S3-speaking server (s3rver) on loopback with one bucket, for the soak and the Lambda handler
 * tests: the only stand-in for AWS is the server, never the client. s3rver is a dev dependency.
 */
export interface LoopbackS3 {
  readonly endpoint: string;
  /** Options for an S3Client talking to this server (path-style, its fixed credentials). */
  readonly clientConfig: S3ClientConfig;
  /**
   * Calls `listener` for each object created or removed, from inside the request (before the client
   * has its answer), with what S3 puts in a notification. The key is the object's key, not encoded.
   */
  onChange(listener: (change: BucketChange) => void): void;
  /** Stop the server and delete its files. */
  close(): Promise<void>;
}

export interface BucketChange {
  readonly eventName: string;
  readonly bucket: string;
  readonly key: string;
  readonly size?: number;
  readonly eTag?: string;
}

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
  on(event: 'event', listener: (event: S3rverEvent) => void): void;
}

/** s3rver's notification (lib/models/event.js): its key is raw and its sequencer a clock reading. */
interface S3rverEvent {
  readonly Records: readonly {
    readonly eventName: string;
    readonly s3: {
      readonly bucket: { readonly name: string };
      readonly object: { readonly key: string; readonly size?: number; readonly eTag?: string };
    };
  }[];
}
type S3rverConstructor = new (options: {
  port: number;
  address: string;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverInstance;

/**
 * `credentials`: more access keys the server accepts (it checks each request's SigV4 signature
 * against the key's secret), such as the made-up credentials of the Lambda harness's functions.
 */
export async function startLoopbackS3(
  bucket: string,
  credentials: readonly { readonly accessKeyId: string; readonly secretAccessKey: string }[] = [],
): Promise<LoopbackS3> {
  // s3rver ships no type declarations; the constructor's shape is declared above.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const S3rver = require('s3rver') as S3rverConstructor;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const accounts = require('s3rver/lib/models/account') as {
    DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void };
  };
  for (const key of credentials) accounts.DUMMY_ACCOUNT.createKeyPair(key.accessKeyId, key.secretAccessKey);
  const directory = mkdtempSync(join(tmpdir(), 'ompf-s3rver-'));
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    clientConfig: {
      endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    },
    onChange(listener) {
      server.on('event', (event) => {
        for (const record of event.Records) {
          const { key, size, eTag } = record.s3.object;
          listener({
            eventName: record.eventName,
            bucket: record.s3.bucket.name,
            key,
            ...(size === undefined ? {} : { size }),
            ...(eTag === undefined ? {} : { eTag }),
          });
        }
      });
    },
    async close() {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
