import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type {
  APIGatewayProxyEvent,
  CloudFormationCustomResourceEvent,
  Context,
  SQSEvent,
  SQSRecord,
} from 'aws-lambda';
import { startLoopbackS3 } from '../../lib/soak/loopback-s3';
import { PgliteSqlClient, PostgresSqlClient, type SqlClient } from '../../lib/adapters/store/sql-client';
import { MODELS_DIR, testDatabaseUrl } from '../helpers/shared';

/**
 * Real event shapes (as AWS documents them) and a real S3-speaking server on loopback (s3rver), for
 * the Lambda handler tests. Only the AWS edge we cannot reach is replaced: the bucket is s3rver, the
 * database is PGlite or a real PostgreSQL.
 */
export const BUCKET = 'ompf-gallery-test';

export interface S3Server {
  readonly endpoint: string;
  readonly client: S3Client;
  put(key: string, body: Uint8Array | string, contentType?: string): Promise<{ etag: string }>;
  close(): Promise<void>;
}

/** What the Lambda runtime provides: credentials and region in the environment. Logs stay quiet. */
export function setLambdaRuntimeEnvironment(): void {
  Object.assign(process.env, {
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
  });
}

export async function startS3(): Promise<S3Server> {
  const s3 = await startLoopbackS3(BUCKET);
  const endpoint = s3.endpoint;
  const client = new S3Client(s3.clientConfig);
  return {
    endpoint,
    client,
    async put(key, body, contentType = 'image/jpeg') {
      const result = await client.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentType: contentType }),
      );
      return { etag: (result.ETag ?? '').replace(/"/g, '') };
    },
    async close() {
      client.destroy();
      await s3.close();
    },
  };
}

/** The environment the stack gives the functions, pointed at the loopback S3 server. */
export function lambdaEnv(s3: S3Server, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    OMPF_BUCKET: BUCKET,
    OMPF_MODEL: 'mobilenetv2-int8',
    OMPF_MODELS_DIR: MODELS_DIR,
    OMPF_S3_ENDPOINT: s3.endpoint,
    OMPF_UPLOADS_PREFIX: 'query-uploads/',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    ...extra,
  };
}

/** S3 sends keys form-encoded: percent-encoding with '+' for a space. */
export function s3EncodeKey(key: string): string {
  return encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/');
}

export interface NotificationInput {
  readonly eventName: string;
  readonly key: string;
  readonly sequencer: string;
  readonly etag?: string;
  readonly size?: number;
  readonly bucket?: string;
}

/** An S3 event notification (event structure version 2.1), as S3 writes it into an SQS message. */
export function s3Notification(...records: NotificationInput[]): string {
  return JSON.stringify({
    Records: records.map((r) => ({
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'eu-west-1',
      eventTime: '2026-01-15T10:00:00.000Z',
      eventName: r.eventName,
      userIdentity: { principalId: 'AWS:AIDAEXAMPLE' },
      requestParameters: { sourceIPAddress: '203.0.113.7' },
      responseElements: {
        'x-amz-request-id': 'C3D13FE58DE4C810',
        'x-amz-id-2': 'FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD',
      },
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: 'ompf-images',
        bucket: {
          name: r.bucket ?? BUCKET,
          ownerIdentity: { principalId: 'A3NL1KOZZKExample' },
          arn: `arn:aws:s3:::${r.bucket ?? BUCKET}`,
        },
        object: {
          key: s3EncodeKey(r.key),
          ...(r.eventName.startsWith('ObjectCreated')
            ? { size: r.size ?? 1024, eTag: r.etag ?? 'unknown' }
            : {}),
          sequencer: r.sequencer,
        },
      },
    })),
  });
}

export const TEST_EVENT = JSON.stringify({
  Service: 'Amazon S3',
  Event: 's3:TestEvent',
  Time: '2026-01-15T09:59:00.000Z',
  Bucket: BUCKET,
  RequestId: '5582815E1AEA5ADF',
  HostId: '8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE',
});

let messageCounter = 0;

export function sqsRecord(body: string): SQSRecord {
  messageCounter += 1;
  return {
    messageId: `059f36b4-87a3-44ab-83d2-${String(messageCounter).padStart(12, '0')}`,
    receiptHandle: `AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a-${messageCounter}`,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: '1736935200000',
      SenderId: 'AIDAIENQZJOLO23YVJ4VO',
      ApproximateFirstReceiveTimestamp: '1736935200010',
    },
    messageAttributes: {},
    md5OfBody: 'e4e68fb7bd0e697a0ae8f1bb342846b3',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:ompf-dev-events',
    awsRegion: 'eu-west-1',
  };
}

export function sqsEvent(...records: SQSRecord[]): SQSEvent {
  return { Records: records };
}

export function lambdaContext(name = 'ompf-dev-index-images'): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:eu-west-1:123456789012:function:${name}`,
    memoryLimitInMB: '2048',
    awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: '2026/01/15/[$LATEST]abcdef',
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** An API Gateway REST API proxy event (payload 1.0), as the query Lambda receives it. */
export function apiEvent(init: {
  method: string;
  resource: string;
  pathParameters?: Record<string, string>;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer | string;
}): APIGatewayProxyEvent {
  const binary = Buffer.isBuffer(init.body);
  const path = init.resource.replace(/\{(\w+)\}/g, (_m, name: string) =>
    encodeURIComponent(init.pathParameters?.[name] ?? ''),
  );
  return {
    resource: init.resource,
    path,
    httpMethod: init.method,
    headers: { Host: 'abc123.execute-api.eu-west-1.amazonaws.com', 'X-Api-Key': 'test-key', ...init.headers },
    multiValueHeaders: {},
    queryStringParameters: init.query ?? null,
    multiValueQueryStringParameters: null,
    pathParameters: init.pathParameters ?? null,
    stageVariables: null,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      authorizer: null,
      protocol: 'HTTP/1.1',
      httpMethod: init.method,
      identity: {
        accessKey: null,
        accountId: null,
        apiKey: 'test-key',
        apiKeyId: 'k1',
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: '203.0.113.7',
        user: null,
        userAgent: 'curl/8.5.0',
        userArn: null,
      },
      path: `/dev${path}`,
      stage: 'dev',
      requestId: 'c6af9ac6-7b61-11e6-9a41-93e8deadbeef',
      requestTimeEpoch: 1736935200000,
      resourceId: 'r1',
      resourcePath: init.resource,
    },
    body:
      init.body === undefined
        ? null
        : binary
          ? (init.body as Buffer).toString('base64')
          : (init.body as string),
    isBase64Encoded: binary,
  };
}

/** The database engines every handler test runs on: PGlite always, PostgreSQL when CI provides one. */
/** The fields every CloudFormation request to the migrate custom resource carries. */
export const MIGRATE_EVENT_BASE = {
  ServiceToken: 'arn:aws:lambda:eu-west-1:123456789012:function:ompf-dev-MigrateProvider',
  ResponseURL: 'https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x',
  StackId: 'arn:aws:cloudformation:eu-west-1:123456789012:stack/Ompf-dev/1',
  RequestId: 'r1',
  LogicalResourceId: 'Schema',
  ResourceType: 'AWS::CloudFormation::CustomResource',
  ResourceProperties: { ServiceToken: 'x', migrations: 'abc', model: 'mobilenetv2-int8' },
};

/** A CloudFormation Create request to the migrate custom resource (the first deploy). */
export const MIGRATE_CREATE_EVENT = {
  ...MIGRATE_EVENT_BASE,
  RequestType: 'Create',
} as CloudFormationCustomResourceEvent;

export interface Engine {
  readonly name: string;
  connect(): Promise<SqlClient>;
  /** A DATABASE_URL for the functions/ modules themselves (PostgreSQL only). */
  readonly url?: string;
  drop(): Promise<void>;
}

/**
 * PGlite and PostgreSQL (always: jest's globalSetup starts one; a suite run without it fails at import,
 * saying what to do). Each PostgreSQL engine works in a schema of its own.
 */
export function engines(prefix: string): Engine[] {
  const admin = testDatabaseUrl();
  const schema = `${prefix}_${process.pid}_${Date.now()}`;
  const url = new URL(admin);
  url.searchParams.set('options', `-c search_path=${schema},public`);
  return [
    { name: 'PGlite', connect: () => PgliteSqlClient.open(undefined), drop: () => Promise.resolve() },
    {
      name: 'PostgreSQL',
      url: url.toString(),
      async connect() {
        const client = PostgresSqlClient.connect(admin);
        await client.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
        await client.close();
        return PostgresSqlClient.connect(url.toString());
      },
      async drop() {
        const client = PostgresSqlClient.connect(admin);
        await client.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await client.close();
      },
    },
  ];
}
