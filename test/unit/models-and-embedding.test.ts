import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SharpImagePreprocessor } from '../../lib/adapters/image/sharp-preprocessor';
import {
  BUILTIN_MODELS,
  readVerifiedModel,
  resolveModelSpec,
  verifyModelFile,
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
  it('pins each built-in model to the file its live source serves, then known earlier copies', () => {
    // Checked on 2026-12-01 against the ONNX Model Zoo manifest and LFS pointers and the Hugging Face
    // copies (see model-registry.ts); a change here must be checked against the source again.
    expect(resolveModelSpec('resnet50')).toMatchObject({
      dimension: 2048,
      file: 'resnet50-v1-12.onnx',
      downloadPath: 'resnet50-v1-12/resolve/1f95315d8bd3b3ca2ceabe54d274e0cdf5a83bbe/resnet50-v1-12.onnx',
      accepted: [
        {
          sha256: '3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526',
          sizeBytes: 102_576_593,
        },
        {
          sha256: 'ab65bdc02c5b3123eb3cdf6dac01742438517d8635d4f233913b2be1c70db3b6',
          sizeBytes: 102_576_419,
        },
      ],
    });
    expect(resolveModelSpec('resnet50-int8')).toMatchObject({
      dimension: 2048,
      file: 'resnet50-v1-12-int8.onnx',
      downloadPath:
        'resnet50-v1-12-int8/resolve/d843735a7f2c4a254931a633f6dc5758d52f06ee/resnet50-v1-12-int8.onnx',
      accepted: [
        { sha256: 'c234f30975989788b4405f25253275aae247ab6dbdd34aaa69ab0a59ff76f6d0', sizeBytes: 25_816_052 },
        { sha256: 'd1a4461aeaa1c7a639a89c806b51f3ad8c228cae0039d3cefd6c6ba406dcec37', sizeBytes: 25_815_878 },
      ],
    });
    expect(resolveModelSpec('mobilenetv2-int8')).toMatchObject({
      dimension: 1280,
      downloadPath: 'mobilenetv2-12-int8/resolve/main/mobilenetv2-12-int8.onnx',
      accepted: [
        { sha256: 'cc028fe6cae7bc11a4ff53cfc9b79c920e8be65ce33a904ec3e2a8f66d77f95f', sizeBytes: 3_655_033 },
        {
          sha256: '83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f',
          sizeBytes: 3_655_640,
          origin: expect.stringMatching(/re-save .* never served by the zoo/),
        },
      ],
    });
    // No dead GitHub LFS URL anywhere: every built-in downloads from the Hugging Face copy.
    for (const spec of Object.values(BUILTIN_MODELS)) {
      expect(spec.urls).toEqual([]);
      expect(spec.accepted[0].origin).toMatch(/Hugging Face onnxmodelzoo/);
    }
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

  it('accepts the shared MobileNetV2 copy as what it is: the re-save, not the zoo file', () => {
    const verified = verifyModelFile(mobilenet, MODELS_DIR);
    expect(verified.file.sha256).toBe('83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f');
    expect(verified.file.origin).toMatch(/re-save/);
  });

  it('refuses a model file with the wrong checksum, listing every accepted one', () => {
    // Prepare: a models dir whose mobilenet file has one byte changed.
    const dir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    const bytes = readFileSync(join(MODELS_DIR, mobilenet.file));
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    writeFileSync(join(dir, mobilenet.file), bytes);
    // Act / Assess
    expect(() => readVerifiedModel(mobilenet, dir)).toThrow(ModelFileError);
    expect(() => readVerifiedModel(mobilenet, dir)).toThrow(
      /expected cc028fe6\S+, 3655033 bytes or 83530ad8\S+, 3655640 bytes: it is corrupt, truncated or a different model/,
    );
  });

  it('refuses a truncated model file by its size, before hashing it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    writeFileSync(
      join(dir, mobilenet.file),
      readFileSync(join(MODELS_DIR, mobilenet.file)).subarray(0, 4096),
    );
    expect(() => readVerifiedModel(mobilenet, dir)).toThrow(
      /is 4096 bytes; 'mobilenetv2-int8' is 3655033 or 3655640 bytes: it is truncated or a different file/,
    );
  });

  it('says how to pull or place a model that is missing, with the pinned Hugging Face URL', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ompf-models-'));
    const error = caught(() => readVerifiedModel(BUILTIN_MODELS.resnet50!, dir));
    expect(error).toBeInstanceOf(ModelFileError);
    expect(error.hint).toContain('Run `ompf models pull resnet50`. Offline: Download ');
    expect(error.hint).toContain(
      'https://huggingface.co/onnxmodelzoo/resnet50-v1-12/resolve/1f95315d8bd3b3ca2ceabe54d274e0cdf5a83bbe/resnet50-v1-12.onnx',
    );
    expect(error.hint).toContain('(sha256 3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526)');
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
