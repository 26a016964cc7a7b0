import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { ConfigError } from '../../lib/core/errors';
import { databasePoolConfig, loadAwsConfig } from '../../lib/runtime/aws';
import { MODELS_DIR } from '../helpers/shared';

/**
 * How the Lambdas log in to PostgreSQL. The indexer and the query API: RDS IAM authentication as
 * their own role, a fresh signed token per new connection, no password anywhere. The migrate step:
 * the admin secret, re-read at most every 5 minutes so a rotated password is followed.
 */
const base = { OMPF_BUCKET: 'ompf-dev-gallery', OMPF_MODEL: 'mobilenetv2-int8', OMPF_MODELS_DIR: MODELS_DIR };
const HOST = 'ompf-db.abc123.eu-west-1.rds.amazonaws.com';

function secretsAnswering(passwords: string[]): SecretsManagerClient & { reads: number } {
  const client = {
    reads: 0,
    send: async () => {
      const password = passwords[Math.min(client.reads, passwords.length - 1)]!;
      client.reads += 1;
      return {
        SecretString: JSON.stringify({
          username: 'ompf_admin',
          password,
          host: HOST,
          port: 5433,
          dbname: 'ompf',
        }),
      };
    },
  };
  return client as unknown as SecretsManagerClient & { reads: number };
}

describe('database credentials of the Lambdas', () => {
  const saved = { ...process.env };
  beforeAll(() => {
    // The function's own (here: made-up) credentials sign the token locally; nothing is sent.
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
      AWS_REGION: 'eu-west-1',
    });
  });
  afterAll(() => {
    process.env = saved;
  });

  it('IAM: logs in as its role with a signed 15-minute token, TLS verified, no password configured', async () => {
    // Prepare
    const config = loadAwsConfig({
      ...base,
      OMPF_DB_HOST: HOST,
      OMPF_DB_PORT: '5433',
      OMPF_DB_USER: 'ompf_indexer',
    });
    // Act
    const pool = await databasePoolConfig(config, {
      s3: new S3Client({}),
      secrets: secretsAnswering(['unused']),
      sqs: new SQSClient({}),
    });
    // Assess
    expect(pool).toMatchObject({ host: HOST, port: 5433, user: 'ompf_indexer', database: 'ompf' });
    expect(pool.ssl).toEqual({ rejectUnauthorized: true });
    expect(pool.connectionString).toBeUndefined();
    expect(typeof pool.password).toBe('function');
    const token = await (pool.password as () => Promise<string>)();
    expect(token).toMatch(new RegExp(`^${HOST.replace(/\./g, '\\.')}:5433/\\?`));
    const query = new URL(`https://${token}`).searchParams;
    expect(query.get('Action')).toBe('connect');
    expect(query.get('DBUser')).toBe('ompf_indexer');
    expect(query.get('X-Amz-Expires')).toBe('900');
    expect(query.get('X-Amz-Credential')).toMatch(/^AKIDEXAMPLE\/\d{8}\/eu-west-1\/rds-db\/aws4_request$/);
  });

  it('secret: reads the admin password from Secrets Manager, again after 5 minutes (rotation)', async () => {
    // Prepare
    const config = loadAwsConfig({
      ...base,
      OMPF_DB_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:1:secret:db',
    });
    const secrets = secretsAnswering(['first-password', 'rotated-password']);
    const now = jest.spyOn(Date, 'now');
    try {
      now.mockReturnValue(1_000_000);
      const pool = await databasePoolConfig(config, {
        s3: new S3Client({}),
        secrets,
        sqs: new SQSClient({}),
      });
      const password = pool.password as () => Promise<string>;
      // Act + Assess
      expect(pool).toMatchObject({ host: HOST, port: 5433, user: 'ompf_admin', database: 'ompf' });
      expect(pool.ssl).toEqual({ rejectUnauthorized: true });
      await expect(password()).resolves.toBe('first-password');
      now.mockReturnValue(1_000_000 + 4 * 60_000);
      await expect(password()).resolves.toBe('first-password');
      expect(secrets.reads).toBe(1);
      now.mockReturnValue(1_000_000 + 6 * 60_000);
      await expect(password()).resolves.toBe('rotated-password');
      expect(secrets.reads).toBe(2);
    } finally {
      now.mockRestore();
    }
  });

  it.each([
    [
      'the secret and IAM at once',
      { OMPF_DB_SECRET_ARN: 'arn:db', OMPF_DB_HOST: HOST, OMPF_DB_USER: 'ompf_query' },
    ],
    ['a host without a role', { OMPF_DB_HOST: HOST }],
    ['a role without a host', { OMPF_DB_USER: 'ompf_query' }],
    ['a role name with SQL in it', { OMPF_DB_HOST: HOST, OMPF_DB_USER: 'x"; DROP ROLE y' }],
    ['no database at all', {}],
  ])('refuses %s at cold start', (_name, extra) => {
    expect(() => loadAwsConfig({ ...base, ...extra })).toThrow(ConfigError);
  });

  it.each([
    ['OMPF_DB_PORT', 'NaN'],
    ['OMPF_DB_PORT', '1e1'],
    ['OMPF_DB_MAX_CONNECTIONS', 'Infinity'],
    ['OMPF_URL_TTL_SECONDS', '-Infinity'],
    ['OMPF_UPLOAD_TTL_SECONDS', '2.5'],
    ['OMPF_MAX_INLINE_IMAGE_BYTES', ' 5'],
  ])('refuses %s=%p at cold start, naming the variable', (name, value) => {
    const env = { ...base, OMPF_DB_HOST: HOST, OMPF_DB_USER: 'ompf_query', [name]: value };
    expect(() => loadAwsConfig(env)).toThrow(ConfigError);
    expect(() => loadAwsConfig(env)).toThrow(new RegExp(`${name}: must be a whole number`));
  });
});
