import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';

/**
 * The stage's database, played by a local PostgreSQL + pgvector cluster (scripts/ci/start-postgres.sh)
 * made to ask what RDS asks of the functions:
 *
 * - TLS with a certificate for 127.0.0.1 from a CA made here; the functions verify it (sslmode
 *   verify-full / rejectUnauthorized) against /var/runtime/ca-cert.pem, which the harness fills with
 *   that CA, as Lambda's holds the RDS CAs;
 * - the admin user of the stage's secret (`ompf_lambda_admin`, a fresh password per run) logs in with
 *   scram-sha-256 over TLS only;
 * - the function roles (ompf_indexer, ompf_query, created by the migrate step) log in over TLS only.
 *   RDS checks their IAM token; nothing here can (it is AWS's signature), so `trust` stands in for
 *   that check. The functions still sign a real token with the environment's credentials.
 *
 * The database is the stack's name (`ompf`), dropped and created again at each start: one harness
 * per cluster at a time. Other databases and users of the cluster are not affected.
 */
export interface LambdaDatabase {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly adminUser: string;
  readonly adminPassword: string;
  /** The CA that signed the server's certificate (PEM file). */
  readonly caFile: string;
  /** A superuser URL of the same database (the test's own checks; no TLS). */
  readonly inspectUrl: string;
  /** The pgvector version the cluster offers. */
  readonly pgvector: string;
}

const ADMIN = 'ompf_lambda_admin';
const HBA_BEGIN = '# ompf lambda harness: begin';
const HBA_END = '# ompf lambda harness: end';

export async function prepareLambdaDatabase(
  superuserUrl: string,
  database = 'ompf',
): Promise<LambdaDatabase> {
  if (!/^[a-z_][a-z0-9_]*$/.test(database)) throw new Error(`Unexpected database name ${database}.`);
  const url = new URL(superuserUrl);
  const admin = new pg.Client({ connectionString: superuserUrl });
  await admin.connect();
  try {
    const setting = async (name: string) =>
      (await admin.query<{ setting: string }>('SELECT setting FROM pg_settings WHERE name = $1', [name]))
        .rows[0]!.setting;
    const dataDir = await setting('data_directory');
    const tlsDir = join(dataDir, 'ompf-lambda-tls');
    const caFile = join(tlsDir, 'ca.crt');
    if (!existsSync(caFile)) makeCertificates(tlsDir, url.hostname);
    if ((await setting('ssl')) !== 'on') {
      // ALTER SYSTEM takes no parameters: the paths go in as quoted literals.
      const certFile = admin.escapeLiteral(join(tlsDir, 'server.crt'));
      const keyFile = admin.escapeLiteral(join(tlsDir, 'server.key'));
      await admin.query(`ALTER SYSTEM SET ssl_cert_file = ${certFile}`);
      await admin.query(`ALTER SYSTEM SET ssl_key_file = ${keyFile}`);
      await admin.query('ALTER SYSTEM SET ssl = on');
    }
    // The rules name the harness's database only: other databases of the cluster (the test suites'
    // own, where these roles log in without TLS) keep the cluster's rules. Rewritten at every start.
    const hbaFile = await setting('hba_file');
    const hba = readFileSync(hbaFile, 'utf8');
    const begin = hba.indexOf(HBA_BEGIN);
    const end = hba.indexOf(HBA_END);
    const others =
      begin >= 0 && end > begin ? hba.slice(0, begin) + hba.slice(end + HBA_END.length + 1) : hba;
    const rules = [
      HBA_BEGIN,
      `hostnossl ${database} ompf_indexer,ompf_query,${ADMIN} all reject`,
      `hostssl ${database} ${ADMIN} all scram-sha-256`,
      '# RDS IAM authentication stand-in: the token is not checked here.',
      `hostssl ${database} ompf_indexer,ompf_query all trust`,
      HBA_END,
    ];
    writeFileSync(hbaFile, `${rules.join('\n')}\n${others}`);
    await admin.query('SELECT pg_reload_conf()');
    for (let attempt = 0; (await setting('ssl')) !== 'on'; attempt++) {
      if (attempt > 50) throw new Error('PostgreSQL did not turn TLS on (see its server log).');
      await new Promise((done) => setTimeout(done, 100));
    }
    const adminPassword = randomBytes(18).toString('base64url');
    const role = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [ADMIN]);
    // CREATE / ALTER ROLE and CREATE DATABASE take no parameters: quoted literals and identifiers.
    const password = admin.escapeLiteral(adminPassword);
    const name = admin.escapeIdentifier(database);
    if (role.rowCount) await admin.query(`ALTER ROLE ompf_lambda_admin LOGIN SUPERUSER PASSWORD ${password}`);
    else await admin.query(`CREATE ROLE ompf_lambda_admin LOGIN SUPERUSER PASSWORD ${password}`);
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name} OWNER ompf_lambda_admin`);
    const offered = await admin.query<{ v: string }>(
      "SELECT default_version AS v FROM pg_available_extensions WHERE name = 'vector'",
    );
    const pgvector = offered.rows[0]?.v;
    if (!pgvector)
      throw new Error('The PostgreSQL cluster has no pgvector (scripts/ci/start-postgres.sh installs it).');
    const inspect = new URL(superuserUrl);
    inspect.pathname = `/${database}`;
    return {
      host: url.hostname,
      port: Number(url.port || 5432),
      database,
      adminUser: ADMIN,
      adminPassword,
      caFile,
      inspectUrl: inspect.toString(),
      pgvector,
    };
  } finally {
    await admin.end();
  }
}

/** A CA and a server certificate for `host` (an IP address: the SAN is an IP entry), with openssl. */
function makeCertificates(dir: string, host: string): void {
  mkdirSync(dir, { recursive: true });
  const openssl = (...args: string[]) =>
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const san = /^[\d.]+$/.test(host) ? `IP:${host}` : `DNS:${host}`;
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '3650',
    '-subj',
    '/CN=ompf lambda harness CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${host}`,
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
  );
  writeFileSync(join(dir, 'server.ext'), `subjectAltName=${san}\n`);
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '3650',
    '-extfile',
    'server.ext',
    '-out',
    'server.crt',
  );
  // PostgreSQL refuses a key others can read; the server runs as the postgres OS user.
  const owner = execFileSync('stat', ['-c', '%u:%g', join(dir, '..')], { encoding: 'utf8' })
    .trim()
    .split(':')
    .map(Number);
  for (const file of ['server.key', 'server.crt', 'ca.crt']) chownSync(join(dir, file), owner[0]!, owner[1]!);
  execFileSync('chmod', ['0600', join(dir, 'server.key')]);
}
