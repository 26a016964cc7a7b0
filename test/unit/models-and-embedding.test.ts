import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SharpImagePreprocessor } from '../../lib/adapters/image/sharp-preprocessor';
import {
  BUILTIN_MODELS,
  pullModel,
  readVerifiedModel,
  resolveModelSpec,
} from '../../lib/adapters/models/model-registry';
import { exposeFeatureTensor } from '../../lib/adapters/onnx/onnx-graph';
import { OnnxEmbedder } from '../../lib/adapters/onnx/onnx-embedder';
import { ConfigError, ModelFileError, type OmpfError } from '../../lib/core/errors';
import { dot } from '../../lib/core/vectors';
import { jpeg, png } from '../helpers/images';
import {
  CALTECH_DIR,
  LIGHT_RESNET50_FILE,
  LIGHT_RESNET50_SHA256,
  MODELS_DIR,
  requirePath,
} from '../helpers/shared';

/** The error `act` throws; fails the test when it throws nothing. */
function caught(act: () => unknown): OmpfError {
  try {
    act();
  } catch (error) {
    return error as OmpfError;
  }
  throw new Error('expected an error to be thrown');
}

function maxAbsoluteDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const mobilenet = BUILTIN_MODELS['mobilenetv2-int8']!;
const session = { threads: 0, batchSize: 8 };

function writeLightResnetSpec(dir: string, extra: Record<string, unknown> = {}): string {
  const path = join(dir, 'light-resnet50.json');
  writeFileSync(
    path,
    JSON.stringify({
      id: 'light-resnet50',
      file: join(MODELS_DIR, LIGHT_RESNET50_FILE),
      sha256: LIGHT_RESNET50_SHA256,
      dimension: 2048,
      ...extra,
    }),
  );
  return path;
}

describe('ONNX graph edit: exposing the pooled features', () => {
  beforeAll(() => requirePath(MODELS_DIR, 'Models directory'));

  it('finds the quantized pool of mobilenetv2-12-int8 and adds a DequantizeLinear output', () => {
    // Act
    const graph = exposeFeatureTensor(readFileSync(join(MODELS_DIR, mobilenet.file)));
    // Assess
    expect(graph.featureOutput).toBe('464_quantized__ompf_dequantized');
    expect(graph.inputName).toBe('input');
    expect(graph.fixedBatchSize).toBeUndefined();
  });

  it('finds the average pool of the Caffe2 ResNet50 graph and notes its fixed batch of 1', () => {
    const graph = exposeFeatureTensor(readFileSync(join(MODELS_DIR, LIGHT_RESNET50_FILE)));
    expect(graph.featureOutput).toBe('r172');
    expect(graph.inputName).toBe('gpu_0/data_0');
    expect(graph.fixedBatchSize).toBe(1);
  });

  it('refuses a featureTensor that does not exist, and bytes that are not ONNX', () => {
    const bytes = readFileSync(join(MODELS_DIR, mobilenet.file));
    expect(() => exposeFeatureTensor(bytes, { featureTensor: 'no_such_tensor' })).toThrow(
      /no tensor named 'no_such_tensor'/,
    );
    expect(() => exposeFeatureTensor(Buffer.from('definitely not protobuf \u00ff\u00fe'))).toThrow(
      ConfigError,
    );
  });
});

describe('OnnxEmbedder', () => {
  let embedder: OnnxEmbedder;
  const preprocessor = new SharpImagePreprocessor(mobilenet.preprocess, { maxBytes: 50e6, maxPixels: 1e8 });

  beforeAll(async () => {
    embedder = await OnnxEmbedder.load(mobilenet, readVerifiedModel(mobilenet, MODELS_DIR), session);
  });
  afterAll(() => embedder.close());

  it('mobilenetv2-12-int8 yields unit-length 1280-d vectors', async () => {
    const [vector] = await embedder.embed([await preprocessor.prepare(await jpeg())]);
    expect(embedder.dimension).toBe(1280);
    expect(vector).toHaveLength(1280);
    expect(dot(vector!, vector!)).toBeCloseTo(1, 5);
  });

  it('gives the same vector for an image in a batch of 1 and in a batch of 8', async () => {
    // Prepare: 8 different real photos; the one under test sits in the middle of the batch.
    const classes = ['okapi', 'dolphin', 'flamingo', 'hedgehog', 'rhino', 'starfish', 'lobster', 'pigeon'];
    const images = await Promise.all(
      classes.map(async (c) =>
        preprocessor.prepare(readFileSync(join(requirePath(CALTECH_DIR, 'Dataset'), c, 'image_0001.jpg'))),
      ),
    );
    // Act
    const [alone] = await embedder.embed([images[3]!]);
    const batch = await embedder.embed(images);
    // Assess
    expect(batch).toHaveLength(8);
    expect(maxAbsoluteDifference(batch[3]!, alone!)).toBeLessThan(1e-5);
    // ... and the batch really holds different images.
    expect(dot(batch[0]!, batch[1]!)).toBeLessThan(0.95);
  });

  it('maps similar pictures closer than different ones', async () => {
    const [a, b, c] = await embedder.embed([
      await preprocessor.prepare(readFileSync(join(CALTECH_DIR, 'okapi', 'image_0001.jpg'))),
      await preprocessor.prepare(readFileSync(join(CALTECH_DIR, 'okapi', 'image_0002.jpg'))),
      await preprocessor.prepare(await png(300, 300, { r: 20, g: 200, b: 40 })),
    ]);
    expect(dot(a!, b!)).toBeGreaterThan(dot(a!, c!));
  });

  it('light_resnet50 (ResNet50 layers, through a custom JSON spec) yields 2048-d vectors, in batches although its graph fixes batch 1', async () => {
    // Prepare
    const spec = resolveModelSpec(writeLightResnetSpec(mkdtempSync(join(tmpdir(), 'ompf-spec-'))));
    const images = [await preprocessor.prepare(await jpeg()), await preprocessor.prepare(await png())];
    // Act
    const resnet = await OnnxEmbedder.load(spec, readVerifiedModel(spec, MODELS_DIR), {
      threads: 0,
      batchSize: 4,
    });
    try {
      const together = await resnet.embed(images);
      const alone = await resnet.embed([images[1]!]);
      // Assess: the head that fixed batch 1 is pruned, so both images go through one run, in order.
      expect(resnet.dimension).toBe(2048);
      expect(resnet.maxBatch).toBe(4);
      expect(together.map((v) => v.length)).toEqual([2048, 2048]);
      expect(maxAbsoluteDifference(together[1]!, alone[0]!)).toBeLessThan(1e-5);
    } finally {
      await resnet.close();
    }
  });

  it('refuses a spec whose dimension does not match the model', async () => {
    const spec = resolveModelSpec(
      writeLightResnetSpec(mkdtempSync(join(tmpdir(), 'ompf-spec-')), { dimension: 1000 }),
    );
    await expect(OnnxEmbedder.load(spec, readVerifiedModel(spec, MODELS_DIR), session)).rejects.toThrow(
      /yields 2048-d features .* spec says 1000/,
    );
  });
});

describe('model registry', () => {
  it('knows resnet50 (the default), resnet50-int8 and mobilenetv2-int8 with pinned checksums', () => {
    expect(resolveModelSpec('resnet50')).toMatchObject({
      dimension: 2048,
      file: 'resnet50-v1-12.onnx',
      sha256: 'ab65bdc02c5b3123eb3cdf6dac01742438517d8635d4f233913b2be1c70db3b6',
    });
    expect(resolveModelSpec('resnet50-int8')).toMatchObject({
      dimension: 2048,
      sha256: 'd1a4461aeaa1c7a639a89c806b51f3ad8c228cae0039d3cefd6c6ba406dcec37',
    });
    expect(resolveModelSpec('mobilenetv2-int8')).toMatchObject({ dimension: 1280 });
  });

  it('refuses an unknown model name, naming the ones it knows', () => {
    const error = caught(() => resolveModelSpec('vgg16'));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/Unknown model 'vgg16'/);
    expect(error.hint).toMatch(/resnet50, resnet50-int8, mobilenetv2-int8/);
  });

  it('reports every invalid field of a custom spec at once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ompf-spec-'));
    const path = join(dir, 'bad.json');
    writeFileSync(
      path,
      JSON.stringify({ id: 'Bad Id', file: 'x.onnx', sha256: 'abc', dimension: 9000, colour: 'bgr' }),
    );
    expect(() => resolveModelSpec(path)).toThrow(/id: .*sha256: .*dimension: .*colour/s);
  });

  it('refuses a model file with the wrong checksum, saying what to do', () => {
    // Prepare: a models dir whose mobilenet file has one byte changed.
    const dir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    const bytes = readFileSync(join(MODELS_DIR, mobilenet.file));
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    writeFileSync(join(dir, mobilenet.file), bytes);
    // Act / Assess
    expect(() => readVerifiedModel(mobilenet, dir)).toThrow(ModelFileError);
    expect(() => readVerifiedModel(mobilenet, dir)).toThrow(
      /expected 83530ad8.*corrupt, truncated or a different model/,
    );
  });

  it('says how to pull or place a model that is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    const error = caught(() => readVerifiedModel(BUILTIN_MODELS.resnet50!, dir));
    expect(error).toBeInstanceOf(ModelFileError);
    expect(error.hint).toMatch(
      /ompf models pull resnet50.*Offline: Download https:\/\/.*resnet50-v1-12\.onnx.*sha256 ab65bdc0/,
    );
  });

  describe('pull', () => {
    const silent = { start: () => undefined, advance: () => undefined, stop: () => undefined };

    it('offline, fails with a message that says how to place the file by hand', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
      const offline = (() =>
        Promise.reject(new TypeError('fetch failed', { cause: { code: 'ENOTFOUND' } }))) as typeof fetch;
      await expect(pullModel(BUILTIN_MODELS.resnet50!, dir, silent, offline)).rejects.toThrow(/ENOTFOUND/);
      await expect(pullModel(BUILTIN_MODELS.resnet50!, dir, silent, offline)).rejects.toMatchObject({
        hint: expect.stringMatching(/offline: Download .* to .*resnet50-v1-12\.onnx \(sha256 ab65/),
      });
    });

    it('verifies the SHA-256 of what it downloads, installs a good file and refuses a bad one', async () => {
      // Prepare: a "server" (the fetch edge) serving the real mobilenet bytes, then altered bytes.
      const dir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
      const good = readFileSync(join(MODELS_DIR, mobilenet.file));
      const serve = (body: Buffer) => (() => Promise.resolve(new Response(body))) as typeof fetch;
      const progress = { start: jest.fn(), advance: jest.fn(), stop: jest.fn() };
      // Act: a mirror serving a different file is refused and nothing is installed.
      await expect(pullModel(mobilenet, dir, silent, serve(Buffer.from('not the model')))).rejects.toThrow(
        /expected 83530ad8/,
      );
      expect(() => readVerifiedModel(mobilenet, dir)).toThrow(/is not installed/);
      // Act: the right file is installed and verified, with progress reported.
      const result = await pullModel(mobilenet, dir, progress, serve(good));
      // Assess
      expect(result.alreadyPresent).toBe(false);
      expect(readVerifiedModel(mobilenet, dir)).toHaveLength(good.length);
      expect(progress.advance.mock.calls.reduce((sum: number, [n]: [number]) => sum + n, 0)).toBe(
        good.length,
      );
      await expect(pullModel(mobilenet, dir, silent, serve(Buffer.alloc(0)))).resolves.toMatchObject({
        alreadyPresent: true,
      });
    });
  });

  it('resolves a relative model file against the spec file location', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ompf-spec-'));
    copyFileSync(join(MODELS_DIR, LIGHT_RESNET50_FILE), join(dir, 'model.onnx'));
    writeFileSync(
      join(dir, 'spec.json'),
      JSON.stringify({ id: 'rel', file: 'model.onnx', sha256: LIGHT_RESNET50_SHA256, dimension: 2048 }),
    );
    const spec = resolveModelSpec(join(dir, 'spec.json'));
    expect(readVerifiedModel(spec, '/nonexistent')).toHaveLength(
      readFileSync(join(MODELS_DIR, LIGHT_RESNET50_FILE)).length,
    );
  });
});
