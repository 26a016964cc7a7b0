import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SharpImagePreprocessor } from '../../lib/adapters/image/sharp-preprocessor';
import { BUILTIN_MODELS, readVerifiedModel } from '../../lib/adapters/models/model-registry';
import { OnnxEmbedder } from '../../lib/adapters/onnx/onnx-embedder';
import { configureVectors, EVAL_CONFIGS, leaveOneOut, scoreRankings } from '../../lib/core/evaluation';
import { learnPca, project } from '../../lib/core/pca';
import {
  expandQuery,
  mirror,
  parseTransformSuffix,
  PLAIN_EMBEDDING,
  splitModelId,
  TransformingEmbedder,
  transformSuffix,
} from '../../lib/core/retrieval';
import { dot, l2Normalise } from '../../lib/core/vectors';
import { split } from '../helpers/images';
import { CALTECH_DIR, MODELS_DIR } from '../helpers/shared';

/** Deterministic pseudo-random unit vectors in `classes` clusters. */
function clusters(
  classes: number,
  perClass: number,
  dim: number,
  spread: number,
): { vectors: Float32Array[]; labels: string[] } {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const centres = Array.from({ length: classes }, () => Float32Array.from({ length: dim }, random));
  const vectors: Float32Array[] = [];
  const labels: string[] = [];
  centres.forEach((centre, c) => {
    for (let i = 0; i < perClass; i++) {
      vectors.push(l2Normalise(centre.map((x) => x + spread * random())));
      labels.push(`class${c}`);
    }
  });
  return { vectors, labels };
}

describe('retrieval transforms', () => {
  it('mirrors a CHW tensor left-right, and mirroring twice is the identity', () => {
    const size = 4;
    const tensor = Float32Array.from({ length: 3 * size * size }, (_, i) => i);
    const once = mirror({ tensor, width: size, height: size }, size);
    expect(Array.from(once.tensor.slice(0, 4))).toEqual([3, 2, 1, 0]);
    expect(Array.from(once.tensor.slice(44, 48))).toEqual([47, 46, 45, 44]);
    expect(mirror(once, size).tensor).toEqual(tensor);
  });

  it('names the transform in the stored model id, so a change forces a re-index', () => {
    expect(transformSuffix(PLAIN_EMBEDDING)).toBe('');
    expect(transformSuffix({ flip: true, power: 1 })).toBe('+flip');
    expect(transformSuffix({ flip: true, power: 0.5 })).toBe('+flip+pow0.5');
  });

  it('query expansion pulls the query towards its neighbours, weighted by similarity^alpha', () => {
    const query = l2Normalise(Float32Array.from([1, 0, 0]));
    const near = l2Normalise(Float32Array.from([1, 1, 0]));
    const far = l2Normalise(Float32Array.from([0, 0, 1]));
    const expanded = expandQuery(query, [near, far]);
    expect(dot(expanded, near)).toBeGreaterThan(dot(query, near));
    expect(expanded[2]).toBeCloseTo(0, 6); // orthogonal neighbour: weight 0
  });

  it('PCA keeps the top components and returns unit vectors of the new dimension', () => {
    const { vectors } = clusters(4, 10, 16, 0.2);
    const pca = learnPca(vectors, 3, false);
    const projected = project(pca, vectors[0]!);
    expect(projected).toHaveLength(3);
    expect(dot(projected, projected)).toBeCloseTo(1, 5);
  });
});

describe('TransformingEmbedder on the real model', () => {
  const spec = BUILTIN_MODELS['mobilenetv2-int8']!;
  const preprocessor = new SharpImagePreprocessor(spec.preprocess, { maxBytes: 1e8, maxPixels: 1e8 });
  let base: OnnxEmbedder;
  beforeAll(async () => {
    base = await OnnxEmbedder.load(spec, readVerifiedModel(spec, MODELS_DIR), { threads: 0, batchSize: 8 });
  });
  afterAll(() => base.close());

  it('averages an image with its mirror: the result is the same for the image and its mirror', async () => {
    // Prepare: an asymmetric picture and its mirror image.
    const image = await preprocessor.prepare(await split(300, 300));
    const flipping = new TransformingEmbedder(base, { flip: true, power: 1 }, 224);
    // Act
    const [fromImage, fromMirror] = await flipping.embed([image, mirror(image, 224)]);
    const [plain] = await base.embed([image]);
    // Assess
    expect(flipping.modelId).toBe('mobilenetv2-int8+flip');
    expect(dot(fromImage!, fromMirror!)).toBeCloseTo(1, 4);
    expect(dot(fromImage!, plain!)).toBeLessThan(0.9999);
  });

  it('leaves vectors unchanged (and the model id plain) with the plain transform', async () => {
    const image = await preprocessor.prepare(readFileSync(join(CALTECH_DIR, 'okapi', 'image_0001.jpg')));
    const plainEmbedder = new TransformingEmbedder(base, PLAIN_EMBEDDING, 224);
    const [a] = await plainEmbedder.embed([image]);
    const [b] = await base.embed([image]);
    expect(plainEmbedder.modelId).toBe('mobilenetv2-int8');
    expect(dot(a!, b!)).toBeCloseTo(1, 6);
  });
});

describe('leaveOneOut', () => {
  it('ranks well-separated clusters perfectly', () => {
    const { vectors, labels } = clusters(3, 8, 12, 0.1);
    expect(leaveOneOut(vectors, labels, { queryExpansion: 0, dba: 0 })).toMatchObject({
      top1: 1,
      mAP: 1,
      images: 24,
      classes: 3,
    });
  });

  it('computes database-side augmentation without the query (reference: DBA rebuilt from scratch per query)', () => {
    // Prepare: overlapping clusters, so DBA changes rankings.
    const { vectors, labels } = clusters(4, 7, 10, 1.2);
    const k = 3;
    // Reference: for each query, rebuild the whole augmented database from the other images only.
    const rankings: boolean[][] = [];
    const relevant: number[] = [];
    vectors.forEach((query, q) => {
      const others = vectors.map((_, j) => j).filter((j) => j !== q);
      const augmentedOthers = others.map((j) => {
        const neighbours = others
          .filter((i) => i !== j)
          .sort((a, b) => dot(vectors[j]!, vectors[b]!) - dot(vectors[j]!, vectors[a]!) || a - b)
          .slice(0, k);
        return {
          j,
          vector: expandQuery(
            vectors[j]!,
            neighbours.map((i) => vectors[i]!),
          ),
        };
      });
      const order = augmentedOthers
        .map(({ j, vector }) => ({ j, s: dot(query, vector) }))
        .sort((a, b) => b.s - a.s || a.j - b.j);
      rankings.push(order.map(({ j }) => labels[j] === labels[q]));
      relevant.push(6);
    });
    const reference = scoreRankings(rankings, relevant);
    // Act
    const measured = leaveOneOut(vectors, labels, { queryExpansion: 0, dba: k });
    // Assess
    expect(measured.mAP).toBeCloseTo(reference.mAP, 10);
    expect(measured.top1).toBeCloseTo(reference.top1, 10);
    expect(measured.mAP).not.toBeCloseTo(leaveOneOut(vectors, labels, { queryExpansion: 0, dba: 0 }).mAP, 4);
  });

  it('builds each configuration from plain and mirrored embeddings', () => {
    const { vectors } = clusters(2, 5, 8, 0.3);
    const flip = EVAL_CONFIGS.find((c) => c.name === 'flip')!;
    expect(() => configureVectors(flip, vectors, undefined)).toThrow(/Mirrored embeddings/);
    const pca = EVAL_CONFIGS.find((c) => c.name === 'pca256')!;
    expect(() => configureVectors(pca, vectors, undefined)).toThrow(/Cannot learn 256 components/);
    expect(configureVectors(flip, vectors, vectors).vectors[0]).toEqual(vectors[0]);
  });
});

describe('the descriptor in the model id', () => {
  it('round-trips framing, GeM and the transform, and splits the id after the model name', () => {
    // Arrange
    const transform = { framing: 'whole', gem: 3, flip: false, power: 1, dba: 3 } as const;
    // Act
    const suffix = transformSuffix(transform);
    // Assess
    expect(suffix).toBe('+whole+gem3+dba3');
    expect(parseTransformSuffix(suffix)).toEqual(transform);
    expect(parseTransformSuffix('+gem3+whole')).toBeUndefined();
    expect(splitModelId('mobilenetv2-int8+whole+gem3+dba3')).toEqual({
      model: 'mobilenetv2-int8',
      transform: '+whole+gem3+dba3',
    });
    expect(transformSuffix({ framing: 'crop', gem: 0, flip: false, power: 1, dba: 0 })).toBe('');
  });
});

describe('the whole-picture framing and GeM pooling on the real model', () => {
  const spec = BUILTIN_MODELS['mobilenetv2-int8']!;
  const whole = { ...spec, gemPower: 3, preprocess: { ...spec.preprocess, framing: 'whole' as const } };
  const preprocessor = new SharpImagePreprocessor(whole.preprocess, { maxBytes: 1e8, maxPixels: 1e8 });
  let gem: OnnxEmbedder;
  let average: OnnxEmbedder;
  beforeAll(async () => {
    const bytes = readVerifiedModel(spec, MODELS_DIR);
    gem = await OnnxEmbedder.load(whole, bytes, { threads: 0, batchSize: 8 });
    average = await OnnxEmbedder.load(spec, bytes, { threads: 0, batchSize: 8 });
  });
  afterAll(async () => {
    await gem.close();
    await average.close();
  });

  it('keeps the aspect (shorter side 224) and caps a panorama at 4:1', async () => {
    // Act
    const landscape = await preprocessor.prepare(await split(300, 200));
    const panorama = await preprocessor.prepare(await split(2000, 100));
    // Assess
    expect(landscape.tensorShape).toEqual({ height: 224, width: 336 });
    expect(landscape.tensor).toHaveLength(3 * 224 * 336);
    expect(panorama.tensorShape).toEqual({ height: 224, width: 896 });
  });

  it('embeds pictures of different shapes in one call exactly as one at a time, with GeM unlike average', async () => {
    // Arrange: shapes interleaved, so equal shapes are not neighbours in the batch.
    const photos = ['okapi/image_0001.jpg', 'okapi/image_0002.jpg', 'dolphin/image_0001.jpg'];
    const images = await Promise.all(
      photos.map(async (photo) => preprocessor.prepare(readFileSync(join(CALTECH_DIR, photo)))),
    );
    images.push(await preprocessor.prepare(await split(300, 200)));
    // Act
    const together = await gem.embed(images);
    const alone = await Promise.all(images.map(async (image) => (await gem.embed([image]))[0]!));
    // Assess
    expect(
      new Set(images.map((i) => `${i.tensorShape?.height}x${i.tensorShape?.width}`)).size,
    ).toBeGreaterThan(1);
    together.forEach((vector, i) => {
      expect(vector).toHaveLength(1280);
      expect(dot(vector, alone[i]!)).toBeCloseTo(1, 5);
    });
    // GeM is not the model's own average pool: the same centre crop gives another vector.
    const crop = new SharpImagePreprocessor(spec.preprocess, { maxBytes: 1e8, maxPixels: 1e8 });
    const cropped = await crop.prepare(readFileSync(join(CALTECH_DIR, photos[0]!)));
    const [byGem] = await gem.embed([cropped]);
    const [byAverage] = await average.embed([cropped]);
    expect(dot(byGem!, byAverage!)).toBeLessThan(0.999);
    expect(dot(byGem!, byAverage!)).toBeGreaterThan(0.8);
  });
});
