import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveModelSpec } from '../../lib/adapters/models/model-registry';
import { ConfigError, ModelFileError } from '../../lib/core/errors';
import { loadConfig } from '../../lib/runtime/config';
import { ensureModel, startLocalServer } from '../../lib/server/serve';
import { MODELS_DIR, MOBILENET_FILE } from '../helpers/shared';
import { call, photo, startTestServer, testConfig, workDir, type StatusBody } from './server-helpers';

describe('local server: restarts', () => {
  it('indexes files added and removes files deleted while it was down', async () => {
    // Prepare
    const work = workDir({
      'a/1.jpg': photo('okapi', 1),
      'a/2.jpg': photo('okapi', 2),
      'b/1.jpg': photo('rhino', 1),
    });
    const first = await startTestServer(work);
    const before = (await call(first, 'GET', '/status')).json<StatusBody>();
    await first.close();
    copyFileSync(photo('dolphin', 1), join(work.gallery, 'b', 'added-while-down.jpg'));
    rmSync(join(work.gallery, 'a', '2.jpg'));
    // Act
    const second = await startTestServer(work);
    try {
      const after = (await call(second, 'GET', '/status')).json<StatusBody>();
      const added = await call(
        second,
        'GET',
        `/images/${encodeURIComponent('b/added-while-down.jpg')}/similar`,
      );
      const removed = await call(second, 'GET', `/images/${encodeURIComponent('a/2.jpg')}/similar`);
      // Assess
      expect(before.counts).toEqual({ pending: 0, indexed: 3, failed: 0 });
      expect(after.counts).toEqual({ pending: 0, indexed: 3, failed: 0 });
      expect(added.status).toBe(200);
      expect(removed.status).toBe(404);
    } finally {
      await second.close();
    }
  });

  it('optimises the store once its queue runs dry after 100 writes: past the threshold, binary search', async () => {
    // Prepare: 110 photos, and a binary-candidate threshold the gallery passes (the default is 2,000).
    const files: Record<string, string> = {};
    for (let n = 1; n <= 55; n++) {
      files[`leopards/${n}.jpg`] = photo('Leopards', n);
      files[`butterflies/${n}.jpg`] = photo('butterfly', n);
    }
    const small = workDir({ 'one.jpg': photo('okapi', 1) });
    const work = workDir(files);
    // Act
    const few = await startTestServer(small, { OMPF_BINARY_MIN_ROWS: '1', OMPF_DBA: '0' });
    const many = await startTestServer(work, { OMPF_BINARY_MIN_ROWS: '100', OMPF_DBA: '0' });
    try {
      // Assess: one write is not worth optimising for; 110 are, and the store switched strategy.
      expect((await few.engine.store.stats()).searchStrategy).toBe('exact');
      const stats = await many.engine.store.stats();
      expect(stats.images).toBe(110);
      expect(stats.searchStrategy).toBe('binary');
      const reply = await call(many, 'POST', '/search?n=5', {
        headers: { 'content-type': 'image/jpeg' },
        body: readFileSync(photo('Leopards', 60)),
      });
      expect(reply.status).toBe(200);
      const { hits } = reply.json<{ hits: { key: string }[] }>();
      expect(hits.map((h) => h.key.split('/')[0])).toEqual(Array(5).fill('leopards'));
    } finally {
      await few.close();
      await many.close();
    }
  });

  it('creates a missing gallery folder and serves an empty index', async () => {
    // Prepare
    const work = workDir();
    const gallery = join(work.dir, 'new', 'gallery');
    // Act
    const server = await startTestServer({ gallery, data: work.data });
    try {
      const status = (await call(server, 'GET', '/status')).json<StatusBody>();
      const search = await call(server, 'POST', '/search', {
        headers: { 'content-type': 'image/jpeg' },
        body: readFileSync(photo('okapi', 1)),
      });
      // Assess
      expect(existsSync(gallery)).toBe(true);
      expect(status.counts).toEqual({ pending: 0, indexed: 0, failed: 0 });
      expect(search.json()).toMatchObject({ hits: [] });
    } finally {
      await server.close();
    }
  });

  it('explains a port already in use', async () => {
    // Prepare
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    const work = workDir();
    // Act
    const act = startLocalServer(testConfig(work, { PORT: String(port) }));
    // Assess
    try {
      await expect(act).rejects.toThrow(ConfigError);
      await expect(act).rejects.toThrow(`Port ${port}`);
    } finally {
      blocker.close();
    }
  });
});

describe('local server: model setup', () => {
  it('offline, refuses to start with a message saying how to place the file or pick another model', async () => {
    // Prepare
    const modelsDir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    const offline = (() => Promise.reject(new TypeError('fetch failed'))) as typeof fetch;
    const work = workDir();
    // Act
    const act = startLocalServer(
      loadConfig({
        OMPF_MODELS_DIR: modelsDir,
        OMPF_DATA_DIR: work.data,
        OMPF_GALLERY_DIR: work.gallery,
        PORT: '0',
      }),
      { fetchImpl: offline },
    );
    // Assess
    const error = (await act.catch((e: unknown) => e)) as ModelFileError;
    expect(error).toBeInstanceOf(ModelFileError);
    expect(error.message).toContain("Could not download model 'resnet50'");
    expect(error.hint).toContain(join(modelsDir, 'resnet50-v1-12.onnx'));
    expect(error.hint).toContain('3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526');
    expect(error.hint).toContain(
      'https://huggingface.co/onnxmodelzoo/resnet50-v1-12/resolve/1f95315d8bd3b3ca2ceabe54d274e0cdf5a83bbe/resnet50-v1-12.onnx',
    );
    expect(error.hint).toContain('mobilenetv2-int8');
    expect(existsSync(work.data)).toBe(false);
  });

  it('online, downloads a missing model with progress and verifies its checksum', async () => {
    // Prepare
    const modelsDir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    const bytes = readFileSync(join(MODELS_DIR, MOBILENET_FILE));
    const served = (() =>
      Promise.resolve(
        new Response(bytes, { headers: { 'content-length': String(bytes.length) } }),
      )) as typeof fetch;
    const lines: string[] = [];
    const progress: number[] = [];
    // Act
    await ensureModel(
      resolveModelSpec('mobilenetv2-int8'),
      { modelsDir, modelBaseUrl: 'http://127.0.0.1:9' },
      (line) => lines.push(line),
      { start: () => undefined, advance: (n) => progress.push(n), stop: () => undefined },
      served,
    );
    // Assess
    expect(readFileSync(join(modelsDir, MOBILENET_FILE)).equals(bytes)).toBe(true);
    expect(progress.reduce((a, b) => a + b, 0)).toBe(bytes.length);
    expect(lines.join('\n')).toMatch(/not installed .* downloading it \(4 MB\), SHA-256 verified/);
  });

  it('refuses a download whose checksum differs, installing nothing', async () => {
    // Prepare
    const modelsDir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    const tampered = (() => Promise.resolve(new Response(Buffer.from('not the model')))) as typeof fetch;
    const quiet = { start: () => undefined, advance: () => undefined, stop: () => undefined };
    // Act
    const act = ensureModel(
      resolveModelSpec('mobilenetv2-int8'),
      { modelsDir, modelBaseUrl: 'http://127.0.0.1:9' },
      () => undefined,
      quiet,
      tampered,
    );
    // Assess
    await expect(act).rejects.toThrow(ModelFileError);
    expect(existsSync(join(modelsDir, MOBILENET_FILE))).toBe(false);
  });
});
