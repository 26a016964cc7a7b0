import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { exposeFeatureTensor } from '../../lib/adapters/onnx/onnx-graph';
import { int8Replica } from '../../lib/bench/int8-replica';
import { matMulModel } from '../../lib/bench/matmul';
import { clusteredVectors, percentiles, recallAtK } from '../../lib/bench/measure';
import { toMarkdown, toSvg, type BenchResult } from '../../lib/bench/report';
import { LIGHT_RESNET50_FILE, MODELS_DIR, requirePath } from '../helpers/shared';

describe('benchmark building blocks (speed is measured by `npm run bench`, never asserted)', () => {
  it('the MatMul graph used for the GFLOP/s ceiling really multiplies matrices', async () => {
    const session = await ort.InferenceSession.create(matMulModel(), { logSeverityLevel: 3 });
    const a = new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [2, 2]);
    const b = new ort.Tensor('float32', Float32Array.from([5, 6, 7, 8]), [2, 2]);
    const { c } = await session.run({ a, b });
    expect(Array.from(c!.data as Float32Array)).toEqual([19, 22, 43, 50]);
    await session.release();
  });

  it('the int8 replica of the ResNet50 layers runs as int8 kernels: every convolution fused into QLinearConv, 2048-d features in batches', async () => {
    // Prepare
    const float = readFileSync(requirePath(join(MODELS_DIR, LIGHT_RESNET50_FILE), 'light_resnet50.onnx'));
    const graph = exposeFeatureTensor(int8Replica(float), { featuresOnly: true });
    const optimised = join(mkdtempSync(join(tmpdir(), 'ompf-int8-')), 'optimised.onnx');
    // Act
    const session = await ort.InferenceSession.create(graph.modelBytes, {
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: optimised,
      logSeverityLevel: 3,
    });
    const input = new ort.Tensor('float32', new Float32Array(2 * 3 * 224 * 224).fill(0.5), [2, 3, 224, 224]);
    const output = (await session.run({ [graph.inputName]: input }))[graph.featureOutput]!;
    await session.release();
    // Assert: what onnxruntime really runs is what resnet50-int8 runs (no float convolution left).
    const ops = onnx.ModelProto.decode(readFileSync(optimised)).graph!.node!.map((n) => n.opType);
    const count = (op: string) => ops.filter((o) => o === op).length;
    expect(count('QLinearConv')).toBe(53);
    expect(count('QLinearAdd')).toBe(16);
    expect(count('Conv')).toBe(0);
    expect(output.dims).toEqual([2, 2048, 1, 1]);
  });

  it('percentiles pick the nearest-rank sample', () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentiles(samples)).toEqual({ p50: 51, p95: 96, p99: 100 });
  });

  it('clustered vectors are unit length, non-negative, reproducible and really clustered', () => {
    const draw = clusteredVectors(256, 4, 5);
    const [a] = draw(1, 9);
    expect(a).toEqual(draw(1, 9)[0]);
    expect(a!.reduce((sum, x) => sum + x * x, 0)).toBeCloseTo(1, 5);
    expect(a!.every((x) => x >= 0)).toBe(true);
    // Each point's nearest other point is far closer than the typical pair: there is structure to find.
    const points = draw(40, 3);
    const cos = (x: Float32Array, y: Float32Array) => x.reduce((sum, v, i) => sum + v * y[i]!, 0);
    const nearest = points.map((p, i) => Math.max(...points.filter((_, j) => j !== i).map((q) => cos(p, q))));
    const all = points.flatMap((p, i) => points.slice(i + 1).map((q) => cos(p, q)));
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean(nearest)).toBeGreaterThan(mean(all) + 0.05);
  });

  it('recall@k counts the exact neighbours found, per query', () => {
    const exact = [
      [{ key: 'a' }, { key: 'b' }],
      [{ key: 'c' }, { key: 'd' }],
    ];
    expect(recallAtK(exact, exact)).toBe(1);
    expect(
      recallAtK(
        [
          [{ key: 'a' }, { key: 'x' }],
          [{ key: 'y' }, { key: 'z' }],
        ],
        exact,
      ),
    ).toBe(0.25);
  });

  it('renders a result as Markdown tables and an SVG chart', () => {
    const result: BenchResult = {
      startedAt: '2026-01-01T00:00:00.000Z',
      mode: 'quick',
      seconds: 1,
      machine: {
        cpu: 'Test CPU',
        cores: 2,
        node: 'v20',
        onnxruntime: '1',
        sharp: '0',
        matMulGflops: { threads1: 100, threads2: 190 },
      },
      inference: [
        {
          model: 'resnet50-layers',
          batch: 8,
          threads: 2,
          imagesPerSecond: 25,
          msPerImage: 40,
          fractionOfCeiling: 1.08,
        },
      ],
      preprocessing: [{ input: 'small JPEG (x)', concurrency: 2, imagesPerSecond: 300, msPerImage: 3.3 }],
      interference: [
        {
          embedder: 'in process, 2 threads',
          alongside: 'one decode stream',
          imagesPerSecond: 12,
          ratioToAlone: 0.5,
          ratioIfCpuShared: 0.8,
          decodesPerSecond: 120,
        },
        {
          embedder: 'none',
          alongside: 'one decode stream',
          imagesPerSecond: null,
          ratioToAlone: null,
          ratioIfCpuShared: null,
          decodesPerSecond: 300,
        },
      ],
      pipeline: [
        {
          model: 'resnet50-layers',
          dba: 3,
          workers: 2,
          images: 10,
          imagesPerSecond: 24,
          modelOnlyImagesPerSecond: 25,
          modelOnlyInProcessBeforeAfter: [22.5, 23.5],
          modelOnlyWorkersBeforeAfter: [24.5, 25.5],
          ratioToModelOnly: 0.96,
          peakRssMiB: 500,
        },
      ],
      store: [
        {
          engine: 'pglite',
          vectors: 10000,
          insertRowsPerSecond: 500,
          tableMiBPer10k: 40,
          exactMs: { p50: 180, p95: 190, p99: 200 },
          withEmbeddingMs: { p50: 60, p95: 70, p99: 80 },
        },
      ],
      recall: {
        images: 100,
        queries: 20,
        pgliteBinary: { 'x6 (default)': { candidates: 64, recallAt10: 0.99, p50Ms: 3.5 } },
        hnsw: 'no PostgreSQL configured',
      },
      localQuery: [
        {
          model: 'm',
          dimension: 1280,
          strategy: 'binary',
          decodeAndEmbedMs: { p50: 10, p95: 11, p99: 12 },
          searchMs: { p50: 29, p95: 33, p99: 37 },
          endToEndMs: { p50: 40, p95: 45, p99: 50 },
        },
      ],
      peakRssMiB: { machine: 100 },
    };
    const markdown = toMarkdown(result);
    expect(markdown).toContain('| resnet50-layers | 8 | 2 | 25 | 40 | 1.08 |');
    expect(markdown).toContain('| pglite | 10000 | 500 | 40 | 180 / 190 / 200 | - |');
    expect(markdown).toContain('| - | 60 / 70 / 80 |\n');
    const svg = toSvg(result);
    expect(svg).toMatch(/^<svg[^>]+>/);
    expect(svg).toContain('local query m');
    expect(markdown).toContain('| m | 1280 | binary | 10 / 11 / 12 | 29 / 33 / 37 | 40 / 45 / 50 |');
    expect(markdown).toContain(
      '| resnet50-layers | 3 | 2 | 10 | 24 | 22.5 / 23.5 | 24.5 / 25.5 | 0.96 | 500 |',
    );
    expect(markdown).toContain('| in process, 2 threads | one decode stream | 12 | 0.5 | 0.8 | 120 |');
    expect(markdown).toContain('| none | one decode stream | - | - | - | 300 |');
    expect(markdown).toContain('100 images, 20 photos as queries');
    expect(markdown).toContain('| x6 (default) | 64 | 0.99 | 3.5 |');
    expect(markdown).toContain('PostgreSQL HNSW by ef_search: no PostgreSQL configured');
  });
});
