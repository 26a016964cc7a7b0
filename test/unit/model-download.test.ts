import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pullModel } from '../../lib/adapters/models/model-download';
import { BUILTIN_MODELS, verifyModelFile } from '../../lib/adapters/models/model-registry';
import { ModelFileError } from '../../lib/core/errors';
import { ompf } from '../helpers/cli';
import { MODELS_DIR, MOBILENET_FILE } from '../helpers/shared';

/**
 * `ompf models pull` against a real HTTP server on loopback (OMPF_MODEL_BASE_URL points at it): every
 * way a download goes wrong is said in words, and nothing is installed unless it verified.
 */
const mobilenet = BUILTIN_MODELS['mobilenetv2-int8']!;
const silent = { start: () => undefined, advance: () => undefined, stop: () => undefined };
/** The shared copy of MobileNetV2-int8: the second file the spec accepts (a re-save, 3,655,640 bytes). */
const good = readFileSync(join(MODELS_DIR, MOBILENET_FILE));
const served = `/onnxmodelzoo/${mobilenet.downloadPath!}`;

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

describe('ompf models pull from a loopback HTTP server', () => {
  let server: Server;
  let base: string;
  let handler: Handler;
  const requested: string[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      requested.push(request.url ?? '');
      handler(request, response);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}/onnxmodelzoo`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    requested.length = 0;
  });

  /** Pull into a fresh models dir; returns the error (or undefined) and what the dir holds after. */
  async function pull(serve: Handler, baseUrl = base) {
    handler = serve;
    const dir = mkdtempSync(join(tmpdir(), 'ompf-pull-'));
    const error = await pullModel(mobilenet, dir, silent, { baseUrl }).then(
      () => undefined,
      (e: unknown) => e as ModelFileError,
    );
    return { error, dir, files: readdirSync(dir) };
  }

  const body =
    (bytes: Uint8Array | string, headers: Record<string, string> = {}, status = 200): Handler =>
    (_request, response) => {
      response.writeHead(status, { 'content-length': String(Buffer.byteLength(bytes)), ...headers });
      response.end(bytes);
    };

  it('downloads the pinned path under the base, follows a redirect, reports progress and installs a verified file', async () => {
    // Prepare: the base answers like Hugging Face's resolve URL, with a redirect to where the bytes are.
    handler = (request, response) => {
      if (request.url === served) {
        response.writeHead(302, { location: '/cdn/blob' }).end();
      } else if (request.url === '/cdn/blob') {
        body(good, { 'content-type': 'application/octet-stream' })(request, response);
      } else response.writeHead(404).end();
    };
    const dir = mkdtempSync(join(tmpdir(), 'ompf-pull-'));
    const progress = { start: jest.fn(), advance: jest.fn(), stop: jest.fn() };
    // Act
    const result = await pullModel(mobilenet, dir, progress, { baseUrl: base });
    // Assess
    expect(requested).toEqual([served, '/cdn/blob']);
    expect(served).toBe('/onnxmodelzoo/mobilenetv2-12-int8/resolve/main/mobilenetv2-12-int8.onnx');
    expect(result).toMatchObject({ alreadyPresent: false, sha256: mobilenet.accepted[1]!.sha256 });
    expect(progress.start).toHaveBeenCalledWith(good.length, `${base}/${mobilenet.downloadPath!}`);
    expect(progress.advance.mock.calls.reduce((sum: number, [n]: [number]) => sum + n, 0)).toBe(good.length);
    expect(progress.stop).toHaveBeenCalled();
    expect(verifyModelFile(mobilenet, dir).file.origin).toMatch(/re-save/);
    expect(readdirSync(dir)).toEqual([MOBILENET_FILE]);
    // Act again: an installed, verified file is not downloaded twice.
    await expect(pullModel(mobilenet, dir, silent, { baseUrl: base })).resolves.toMatchObject({
      alreadyPresent: true,
    });
    expect(requested).toHaveLength(2);
  });

  it.each([
    [404, 'Not Found', /HTTP 404 Not Found: no file at this address/],
    [403, 'Forbidden', /HTTP 403 Forbidden: the server refuses access/],
    [503, 'Service Unavailable', /HTTP 503 Service Unavailable: the server failed; try again later/],
  ])('says HTTP %i with its status text and installs nothing', async (status, text, message) => {
    const { error, files } = await pull((_request, response) => {
      response.writeHead(status, text).end('error page');
    });
    expect(error).toBeInstanceOf(ModelFileError);
    expect(error!.message).toMatch(message);
    expect(error!.message).toContain(`${base}/mobilenetv2-12-int8/resolve/main/mobilenetv2-12-int8.onnx`);
    expect(error!.message).toMatch(/Nothing was installed\.$/);
    expect(error!.hint).toMatch(/OMPF_MODEL_BASE_URL is http:\/\/127\.0\.0\.1:\d+\/onnxmodelzoo; check it/);
    expect(files).toEqual([]);
  });

  it('recognises a Git LFS pointer served instead of the model, naming the object it points to', async () => {
    const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${mobilenet.accepted[0].sha256}\nsize 3655033\n`;
    const { error, files } = await pull(body(pointer, { 'content-type': 'text/plain' }));
    expect(error!.message).toMatch(
      new RegExp(
        `a Git LFS pointer of ${pointer.length} bytes \\(it names sha256:${mobilenet.accepted[0].sha256}, 3655033 bytes\\) instead of the model`,
      ),
    );
    expect(files).toEqual([]);
  });

  it('recognises an HTML page (a login or proxy page), by its content type or its first bytes', async () => {
    const page = '<!DOCTYPE html><html><head><title>Sign in to continue</title></head><body></body></html>';
    const typed = await pull(body(page, { 'content-type': 'text/html; charset=utf-8' }));
    expect(typed.error!.message).toMatch(
      /an HTML page \("Sign in to continue"\) of \d+ bytes instead of the model/,
    );
    const untyped = await pull(body(`\n  ${page}`, { 'content-type': 'application/octet-stream' }));
    expect(untyped.error!.message).toMatch(/an HTML page/);
    expect([...typed.files, ...untyped.files]).toEqual([]);
  });

  it('says a download that broke off was truncated, with how much arrived', async () => {
    const { error, files } = await pull((_request, response) => {
      response.writeHead(200, { 'content-length': String(good.length) });
      response.write(good.subarray(0, 1_000_000), () => response.destroy());
    });
    expect(error!.message).toMatch(/the download broke off after \d+ of 3655640 bytes/);
    expect(files).toEqual([]);
  });

  it('refuses a complete file of another size, saying truncated or different', async () => {
    const { error, files } = await pull(body(good.subarray(0, good.length - 100)));
    expect(error!.message).toMatch(
      /the file is 3655540 bytes; 'mobilenetv2-int8' is 3655033 or 3655640 bytes: truncated or a different file/,
    );
    expect(files).toEqual([]);
  });

  it('stops reading a body larger than any accepted file', async () => {
    const { error, files } = await pull(body(Buffer.concat([good, Buffer.alloc(10_000)])));
    expect(error!.message).toMatch(/more than 3655640 bytes, more than any accepted file/);
    expect(files).toEqual([]);
  });

  it('refuses a file of the right size whose SHA-256 differs', async () => {
    const altered = Buffer.from(good);
    altered[altered.length - 10] = altered[altered.length - 10]! ^ 0xff;
    const { error, files } = await pull(body(altered));
    expect(error!.message).toMatch(
      new RegExp(`the file has SHA-256 [0-9a-f]{64}, expected ${mobilenet.accepted[0].sha256} or 83530ad8`),
    );
    expect(files).toEqual([]);
  });

  it('leaves a wrong file already in place untouched when the download fails, and replaces it once one verifies', async () => {
    // Prepare: a truncated earlier copy where the model should be.
    const dir = mkdtempSync(join(tmpdir(), 'ompf-pull-'));
    writeFileSync(join(dir, MOBILENET_FILE), good.subarray(0, 1000));
    handler = (_request, response) => response.writeHead(500).end();
    // Act / Assess
    await expect(pullModel(mobilenet, dir, silent, { baseUrl: base })).rejects.toThrow(/HTTP 500/);
    expect(readFileSync(join(dir, MOBILENET_FILE))).toHaveLength(1000);
    handler = body(good);
    await expect(pullModel(mobilenet, dir, silent, { baseUrl: base })).resolves.toMatchObject({
      alreadyPresent: false,
    });
    expect(readFileSync(join(dir, MOBILENET_FILE)).equals(good)).toBe(true);
    expect(readdirSync(dir)).toEqual([MOBILENET_FILE]);
  });

  it('offline (nothing listening), says so and how to place the file by hand', async () => {
    // Prepare: a port that was free a moment ago.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    // Act
    const { error, dir, files } = await pull(body(good), `http://127.0.0.1:${port}/onnxmodelzoo`);
    // Assess
    expect(error!.message).toMatch(/ECONNREFUSED: the connection was refused/);
    expect(error!.hint).toContain('If this machine is offline: Download http://127.0.0.1:');
    expect(error!.hint).toContain(`to ${join(dir, MOBILENET_FILE)} (sha256 ${mobilenet.accepted[0].sha256})`);
    expect(files).toEqual([]);
  });

  it('through the CLI: --json reports the installed file, and a failure exits 69 with the reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ompf-pull-'));
    const env = { OMPF_MODELS_DIR: dir, OMPF_MODEL_BASE_URL: base };
    handler = body('<html><title>Proxy error</title></html>', { 'content-type': 'text/html' });
    const refused = await ompf(['--json', 'models', 'pull', 'mobilenetv2-int8'], env);
    expect(refused.code).toBe(69);
    expect(refused.json<{ error: { message: string } }>().error.message).toMatch(
      /HTML page \("Proxy error"\)/,
    );
    expect(existsSync(join(dir, MOBILENET_FILE))).toBe(false);

    handler = body(good);
    const pulled = await ompf(['--json', 'models', 'pull', 'mobilenetv2-int8'], env);
    expect(pulled.code).toBe(0);
    expect(pulled.json()).toMatchObject({
      model: 'mobilenetv2-int8',
      alreadyPresent: false,
      sha256: mobilenet.accepted[1]!.sha256,
      path: join(dir, MOBILENET_FILE),
    });
    const verified = await ompf(['--json', 'models', 'verify', 'mobilenetv2-int8'], env);
    expect(verified.json()).toMatchObject({ verified: true, origin: expect.stringMatching(/re-save/) });
  });
});
