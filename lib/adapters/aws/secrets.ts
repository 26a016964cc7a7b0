import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';
import { ConfigError, DependencyUnavailableError } from '../../core/errors';

/** The JSON an RDS-generated secret holds (aws-cdk-lib's DatabaseSecret, RDS-managed secrets). */
const rdsSecretSchema = z.object({
  username: z.string().min(1),
  password: z.string().min(1),
  host: z.string().min(1),
  port: z.coerce.number().int().min(1).max(65535),
  dbname: z.string().min(1).optional(),
});

/**
 * The PostgreSQL URL held in a Secrets Manager secret, TLS with certificate and host name checked
 * (the RDS CA bundle reaches Node through NODE_EXTRA_CA_CERTS=/var/runtime/ca-cert.pem on Lambda).
 * Read once per container, at cold start.
 */
export async function databaseUrlFromSecret(
  client: SecretsManagerClient,
  secretId: string,
  defaultDatabase = 'postgres',
): Promise<string> {
  let text: string | undefined;
  try {
    text = (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
  } catch (cause) {
    throw new DependencyUnavailableError(`Cannot read the database secret ${secretId}.`, {
      cause,
      hint: 'Check the function can reach Secrets Manager (VPC endpoint) and may read the secret.',
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text ?? '');
  } catch {
    value = undefined;
  }
  const parsed = rdsSecretSchema.safeParse(value);
  if (!parsed.success) {
    throw new ConfigError(
      `The database secret ${secretId} does not hold {username, password, host, port, dbname} JSON.`,
    );
  }
  const s = parsed.data;
  const user = encodeURIComponent(s.username);
  const password = encodeURIComponent(s.password);
  const database = encodeURIComponent(s.dbname ?? defaultDatabase);
  return `postgres://${user}:${password}@${s.host}:${s.port}/${database}?sslmode=verify-full`;
}
