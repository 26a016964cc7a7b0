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
 * - the function roles (ompf_indexer, ompf_query, created by the migrate step) log in over TLS only,
 *   with an RDS IAM authentication token as the password, as on RDS: PostgreSQL asks for it (PAM,
 *   service `ompf-lambda-iam`) and a check script accepts a token only if it is one RDS would be
 *   sent: a presigned `connect` request for this host, port and role, signed (SigV4) with the
 *   functions' access key and session token. The signature itself is not verified (that is AWS's);
 *   each accepted login is logged (`iamLog`), so a test can tell the token path was taken.
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
  /** One line per IAM-token login accepted or refused: `<role> ok|refused`. */
  readonly iamLog: string;
}

export interface TokenExpectation {
  /** The access key id the functions sign with. */
  readonly accessKeyId: string;
}

const PAM_SERVICE = 'ompf-lambda-iam';

/** The PAM check (pam_exec with expose_authtok: the password on stdin, the role in PAM_USER). */
function tokenCheckScript(host: string, port: number, accessKeyId: string, log: string): string {
  return `#!/bin/sh
# ompf Lambda harness: accept an RDS IAM authentication token for this database endpoint and role.
token=$(cat | tr -d '\\000')
ok=1
case "$token" in "${host}:${port}/?"*) ;; *) ok=0 ;; esac
for part in "Action=connect" "DBUser=$PAM_USER" "X-Amz-Algorithm=AWS4-HMAC-SHA256" "X-Amz-Credential=${accessKeyId}%2F" "X-Amz-Security-Token=" "X-Amz-SignedHeaders=host"; do
  case "$token" in *"$part"*) ;; *) ok=0 ;; esac
done
echo "$token" | grep -Eq 'X-Amz-Signature=[0-9a-f]{64}' || ok=0
if [ $ok = 1 ]; then echo "$PAM_USER ok" >> ${log}; exit 0; fi
echo "$PAM_USER refused" >> ${log}
exit 1
`;
}

const ADMIN = 'ompf_lambda_admin';
const HBA_BEGIN = '# ompf lambda harness: begin';
const HBA_END = '# ompf lambda harness: end';

export async function prepareLambdaDatabase(
  superuserUrl: string,
  token: TokenExpectation,
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
    const iamLog = join(tlsDir, 'iam-logins.log');
    const script = join(tlsDir, 'check-iam-token.sh');
    writeFileSync(
      script,
      tokenCheckScript(url.hostname, Number(url.port || 5432), token.accessKeyId, iamLog),
    );
    writeFileSync(iamLog, '');
    const [uid, gid] = ownerOf(dataDir);
    chownSync(tlsDir, uid, gid);
    chownSync(script, uid, gid);
    chownSync(iamLog, uid, gid);
    execFileSync('chmod', ['0755', script]);
    writeFileSync(
      `/etc/pam.d/${PAM_SERVICE}`,
      `# ompf Lambda harness (lib/lambda-local/loopback-database.ts)\nauth required pam_exec.so expose_authtok quiet ${script}\naccount required pam_permit.so\n`,
    );
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
      `hostnossl ${database} ompf_indexer,ompf_query,ompf_operator,${ADMIN} all reject`,
      `hostssl ${database} ${ADMIN} all scram-sha-256`,
      '# RDS IAM authentication: a token for this endpoint and role (PAM, see loopback-database.ts).',
      `hostssl ${database} ompf_indexer,ompf_query,ompf_operator all pam pamservice=${PAM_SERVICE}`,
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
      iamLog,
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
  const [uid, gid] = ownerOf(join(dir, '..'));
  chownSync(dir, uid, gid);
  for (const file of ['server.key', 'server.crt', 'ca.crt']) chownSync(join(dir, file), uid, gid);
  execFileSync('chmod', ['0600', join(dir, 'server.key')]);
}

/** The owner (uid, gid) of a path: the data directory's is the postgres OS user. */
function ownerOf(path: string): [number, number] {
  const [uid, gid] = execFileSync('stat', ['-c', '%u:%g', path], { encoding: 'utf8' })
    .trim()
    .split(':')
    .map(Number);
  return [uid!, gid!];
}
