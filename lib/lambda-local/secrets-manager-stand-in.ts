import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Secrets Manager's GetSecretValue (AWS JSON 1.1 protocol) on loopback, for the one secret the stack
 * has: the database's admin credentials as RDS writes them. The functions reach it through the SDK's
 * own AWS_ENDPOINT_URL_SECRETS_MANAGER variable; no product code knows it is there. Nothing checks
 * the request's signature (no IAM here).
 */
export interface SecretsStandIn {
  readonly endpoint: string;
  /** Every GetSecretValue asked for, by secret id. */
  readonly reads: string[];
  close(): Promise<void>;
}

export async function startSecretsManager(secrets: ReadonlyMap<string, string>): Promise<SecretsStandIn> {
  const reads: string[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const answer = (status: number, body: unknown) => {
        response.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        response.end(JSON.stringify(body));
      };
      if (request.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue') {
        answer(400, { __type: 'UnknownOperationException', message: 'Only GetSecretValue is served here.' });
        return;
      }
      const { SecretId } = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as {
        SecretId?: string;
      };
      reads.push(String(SecretId));
      const value = SecretId === undefined ? undefined : secrets.get(SecretId);
      if (value === undefined) {
        answer(400, {
          __type: 'ResourceNotFoundException',
          message: "Secrets Manager can't find the specified secret.",
        });
        return;
      }
      answer(200, {
        ARN: SecretId,
        Name: SecretId!.split(':').pop(),
        SecretString: value,
        VersionId: '00000000-0000-0000-0000-000000000001',
        VersionStages: ['AWSCURRENT'],
        CreatedDate: Math.floor(Date.now() / 1000),
      });
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    reads,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
