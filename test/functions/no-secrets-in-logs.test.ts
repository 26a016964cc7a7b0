import { ConfigError } from '../../lib/core/errors';
import {
  awsParts,
  closeAwsResources,
  indexImagesHandler,
  loadAwsConfig,
  logger,
  searchHandler,
} from '../../lib/runtime/aws';
import { jpeg } from '../helpers/images';
import {
  apiEvent,
  lambdaContext,
  lambdaEnv,
  s3Notification,
  setLambdaRuntimeEnvironment,
  sqsEvent,
  sqsRecord,
  startS3,
  type S3Server,
} from './fixtures';

setLambdaRuntimeEnvironment();

/**
 * No secret in logs or answers: with a database password in the connection settings and the
 * database down, the indexer's and the query API's logs (at DEBUG, everything they write) and the
 * API's answer never contain the password.
 */
const PASSWORD = 'S3cr3t-Pa55w0rd-never-logged';
const DATABASE_URL = `postgres://ompf_admin:${PASSWORD}@127.0.0.1:1/ompf`;

describe('secrets stay out of logs and answers', () => {
  let s3: S3Server;
  let written: string[];
  const spies: jest.SpyInstance[] = [];
  const level = logger.getLevelName();

  beforeAll(async () => {
    s3 = await startS3();
  });
  beforeEach(() => {
    written = [];
    logger.setLogLevel('DEBUG');
    const capture = (...args: unknown[]) => {
      written.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
      return true;
    };
    for (const stream of [process.stdout, process.stderr]) {
      spies.push(jest.spyOn(stream, 'write').mockImplementation(capture));
    }
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      spies.push(jest.spyOn(console, method).mockImplementation(capture));
    }
  });
  afterEach(async () => {
    for (const spy of spies.splice(0)) spy.mockRestore();
    logger.setLogLevel(level);
    await closeAwsResources();
  });
  afterAll(() => s3.close());

  it('the indexer logs the failed records without the password', async () => {
    // Prepare
    const handler = indexImagesHandler(awsParts(loadAwsConfig(lambdaEnv(s3, { DATABASE_URL }))));
    const { etag } = await s3.put('a.jpg', await jpeg(64, 64));
    // Act
    const response = await handler(
      sqsEvent(
        sqsRecord(s3Notification({ eventName: 'ObjectCreated:Put', key: 'a.jpg', sequencer: '01', etag })),
      ),
      lambdaContext(),
    ).catch((error: unknown) => ({ error: String(error) }));
    // Assess: something was logged (the scan is not vacuous), and no line holds the password.
    expect(written.join('\n')).toMatch(/record failed|unreachable/);
    expect(written.filter((line) => line.includes(PASSWORD))).toEqual([]);
    expect(JSON.stringify(response)).not.toContain(PASSWORD);
  });

  it('the query API answers 503 and logs the cause without the password', async () => {
    // Prepare
    const api = searchHandler(awsParts(loadAwsConfig(lambdaEnv(s3, { DATABASE_URL }))));
    // Act
    const result = await api(
      apiEvent({ method: 'GET', resource: '/images/{key}/similar', pathParameters: { key: 'a.jpg' } }),
    );
    // Assess
    expect(result.statusCode).toBe(503);
    expect(result.body).not.toContain(PASSWORD);
    expect(written.length).toBeGreaterThan(0);
    expect(written.filter((line) => line.includes(PASSWORD))).toEqual([]);
  });

  it('a configuration error about the database URL does not repeat the password', () => {
    let error: unknown;
    try {
      loadAwsConfig(lambdaEnv(s3, { DATABASE_URL: `mysql://ompf_admin:${PASSWORD}@db/ompf` }));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(JSON.stringify({ message: (error as Error).message, ...(error as object) })).not.toContain(
      PASSWORD,
    );
  });
});
