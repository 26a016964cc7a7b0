import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { databaseUrlFromSecret } from '../../lib/adapters/aws/secrets';
import { ConfigError, DependencyUnavailableError } from '../../lib/core/errors';

/** Secrets Manager is the AWS edge we cannot reach here: a stand-in client answers GetSecretValue. */
function secretsReturning(answer: () => Promise<{ SecretString?: string }>): SecretsManagerClient {
  return { send: answer } as unknown as SecretsManagerClient;
}

describe('database URL from the RDS secret', () => {
  it('builds a verify-full TLS URL with the credentials percent-encoded', async () => {
    // Prepare: the JSON an RDS-generated secret holds, with a password full of URL syntax.
    const secret = {
      username: 'ompf_admin',
      password: 'p@ss:w/rd?#%',
      host: 'db.abc.eu-west-1.rds.amazonaws.com',
      port: 5433,
      dbname: 'ompf',
      engine: 'postgres',
    };
    // Act
    const url = await databaseUrlFromSecret(
      secretsReturning(async () => ({ SecretString: JSON.stringify(secret) })),
      'arn:db',
    );
    // Assess
    expect(url).toBe(
      'postgres://ompf_admin:p%40ss%3Aw%2Frd%3F%23%25@db.abc.eu-west-1.rds.amazonaws.com:5433/ompf?sslmode=verify-full',
    );
    expect(decodeURIComponent(new URL(url).password)).toBe(secret.password);
  });

  it.each([
    ['no SecretString', {}],
    ['a plain string', { SecretString: 'hunter2' }],
    ['JSON without a host', { SecretString: JSON.stringify({ username: 'u', password: 'p', port: 5432 }) }],
  ])('refuses a secret holding %s', async (_name, answer) => {
    await expect(
      databaseUrlFromSecret(
        secretsReturning(async () => answer),
        'arn:db',
      ),
    ).rejects.toBeInstanceOf(ConfigError);
  });

  it('reports Secrets Manager being unreachable as retryable', async () => {
    const failing = secretsReturning(() => Promise.reject(new Error('connect ETIMEDOUT')));
    await expect(databaseUrlFromSecret(failing, 'arn:db')).rejects.toBeInstanceOf(DependencyUnavailableError);
  });
});
