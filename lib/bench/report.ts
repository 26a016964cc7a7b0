import type { InferenceRow, InterferenceRow } from './stages';

/** Render a benchmark result as Markdown tables and as an SVG chart. */
export interface BenchResult {
  readonly startedAt: string;
  readonly mode: 'quick' | 'full';
  readonly seconds: number;
  readonly machine: {
    cpu: string;
    cores: number;
    node: string;
    onnxruntime: string;
    sharp: string;
    matMulGflops: Record<string, number>;
  };
  readonly inference: readonly InferenceRow[];
  readonly preprocessing: {
    input: string;
    concurrency: number;
    imagesPerSecond: number;
    msPerImage: number;
  }[];
  readonly interference: readonly InterferenceRow[];
  readonly pipeline: {
    model: string;
    /** Database-side augmentation neighbours maintained on every write (0 = off). */
    dba: number;
    /** Worker threads embedding the batches (0: the in-process session). */
    workers: number;
    images: number;
    imagesPerSecond: number;
    /** The better model-only configuration: mean of right before and right after the run. */
    modelOnlyImagesPerSecond: number;
    /** Model-only on one in-process session with every thread, before and after the run. */
    modelOnlyInProcessBeforeAfter: readonly number[];
    /** Model-only on the worker pool, before and after the run. */
    modelOnlyWorkersBeforeAfter: readonly number[];
    ratioToModelOnly: number;
    peakRssMiB: number;
  }[];
  readonly store: Record<string, unknown>[];
  readonly recall: RecallResult;
  readonly localQuery: Record<string, unknown>[];
  /** Listing duplicate groups at scale (stages.duplicateListing); absent in older results. */
  readonly duplicates?: Record<string, unknown>[];
  readonly peakRssMiB: Record<string, number>;
}

/** Recall@10 against exact search on real embeddings (stages.recall). */
export interface RecallResult {
  readonly images: number;
  readonly queries: number;
  /** PGlite binary candidates by oversampling factor ('x6 (default)'): candidates, recall@10, p50. */
  readonly pgliteBinary: Record<string, { candidates: number; recallAt10: number; p50Ms: number }>;
  /** PostgreSQL HNSW recall@10 by ef_search ('ef40'), or why it was not measured. */
  readonly hnswRecallAt10?: Record<string, number>;
  readonly hnsw?: string;
}

const fmt = (value: unknown): string => {
  if (value === null || value === undefined) return '-';
  if (typeof value === 'object') {
    const p = value as { p50?: number; p95?: number; p99?: number };
    if (p.p50 !== undefined) return `${p.p50} / ${p.p95} / ${p.p99}`;
    return JSON.stringify(value);
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
};

function markdownTable(headers: readonly string[], rows: readonly (readonly unknown[])[]): string {
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.map(fmt).join(' | ')} |`),
  ].join('\n');
}

export function toMarkdown(result: BenchResult): string {
  const m = result.machine;
  const sections = [
    `### Benchmark (${result.mode}, ${result.startedAt}, ${Math.round(result.seconds)} s)`,
    `Machine: ${m.cpu}, ${m.cores} cores; Node ${m.node}, onnxruntime ${m.onnxruntime}, sharp ${m.sharp}. ` +
      `float32 MatMul (1024^3) through onnxruntime: ${m.matMulGflops.threads1} GFLOP/s on 1 thread, ` +
      `${m.matMulGflops.threads2} GFLOP/s on 2: the ceiling for CNN inference.`,
    '**Model-only inference** (images/s; fraction of the MatMul ceiling at the same thread count, ResNet50 at 8.2 GFLOP/image)',
    markdownTable(
      ['model', 'batch', 'threads', 'images/s', 'ms/image', 'of ceiling'],
      result.inference.map((r) => [
        r.model,
        r.batch,
        r.threads,
        r.imagesPerSecond,
        r.msPerImage,
        r.fractionOfCeiling,
      ]),
    ),
    '**Preprocessing** (decode + EXIF + resize + crop + normalise)',
    markdownTable(
      ['input', 'concurrency', 'images/s', 'ms/image'],
      result.preprocessing.map((r) => [r.input, r.concurrency, r.imagesPerSecond, r.msPerImage]),
    ),
    "**Interference** (ResNet50 layers model-only, batch 8, alone and while another process decodes photos back to back, one at a time; the CPU-share ratio is what decoding's own CPU time alone would leave: 1 - decode rate beside / decode rate alone / cores)",
    markdownTable(
      ['embedder', 'alongside', 'images/s', 'ratio to alone', 'ratio if CPU shared', 'decodes/s'],
      result.interference.map((r) => [
        r.embedder,
        r.alongside,
        r.imagesPerSecond,
        r.ratioToAlone,
        r.ratioIfCpuShared,
        r.decodesPerSecond,
      ]),
    ),
    '**Indexing pipeline** (read + decode + embed + insert into PGlite, batch 8; DBA: neighbours maintained per write, 0 = off; workers: threads embedding the batches, 0 = one in-process session with 2 intra-op threads; model-only on both, right before / after the run on the same sessions: the ratio is to the better mean)',
    markdownTable(
      [
        'model',
        'DBA',
        'workers',
        'images',
        'images/s',
        'model-only in process',
        'model-only workers',
        'ratio',
        'peak RSS MiB',
      ],
      result.pipeline.map((r) => [
        r.model,
        r.dba,
        r.workers,
        r.images,
        r.imagesPerSecond,
        r.modelOnlyInProcessBeforeAfter.join(' / '),
        r.modelOnlyWorkersBeforeAfter.join(' / '),
        r.ratioToModelOnly,
        r.peakRssMiB,
      ]),
    ),
    '**Store at scale** (synthetic 2048-d unit vectors shaped like CNN features, 50 per cluster; latency p50 / p95 / p99 in ms for one top-10 query, embedding excluded except in the last column (decode + embed a real photo + search with the strategy the store picks: binary candidates on PGlite, HNSW at ef_search 40 on PostgreSQL), PostgreSQL over loopback; recall@10 against exact search in brackets)',
    markdownTable(
      [
        'engine',
        'vectors',
        'insert rows/s',
        'MiB per 10k',
        'exact',
        'binary + re-rank (PGlite)',
        'HNSW build s',
        'MiB per 10k with HNSW',
        'HNSW ef 40',
        'HNSW ef 100',
        'HNSW ef 200',
        'with embedding (ResNet50 layers, product strategy)',
      ],
      result.store.map((r) => {
        const hnsw = (r.hnswMs ?? {}) as Record<string, unknown>;
        const recall = (r.hnswRecallAt10 ?? {}) as Record<string, unknown>;
        // Latency with recall@10 against exact beside it, where the strategy is approximate.
        const withRecall = (ms: unknown, recallAt10: unknown) =>
          ms === undefined
            ? undefined
            : recallAt10 === undefined
              ? fmt(ms)
              : `${fmt(ms)} (recall ${fmt(recallAt10)})`;
        return [
          r.engine,
          r.vectors,
          r.insertRowsPerSecond,
          r.tableMiBPer10k,
          r.exactMs,
          withRecall(r.binaryMs, r.binaryRecallAt10),
          r.hnswBuildSeconds,
          r.indexedMiBPer10k,
          withRecall(hnsw.ef40, recall.ef40),
          withRecall(hnsw.ef100, recall.ef100),
          withRecall(hnsw.ef200, recall.ef200),
          r.withEmbeddingMs,
        ];
      }),
    ),
    `**Recall@10 against exact search** (real mobilenetv2-int8 embeddings: ${result.recall.images} images, ${result.recall.queries} photos as queries, each excluding itself). PGlite, binary candidates re-ranked exactly:`,
    markdownTable(
      ['oversampling', 'candidates for top-10', 'recall@10', 'p50 ms'],
      Object.entries(result.recall.pgliteBinary).map(([name, r]) => [
        name,
        r.candidates,
        r.recallAt10,
        r.p50Ms,
      ]),
    ),
    `PostgreSQL HNSW by ef_search: ${fmt(result.recall.hnswRecallAt10 ?? result.recall.hnsw)}`,
    '**Local query end to end** (decode + embed one photo + top-10 in PGlite over 10k vectors with the strategy the store picks for that size; ms p50 / p95 / p99)',
    markdownTable(
      ['model', 'dimension', 'strategy', 'decode + embed', 'search', 'end to end'],
      result.localQuery.map((r) => [
        r.model,
        r.dimension,
        r.strategy,
        r.decodeAndEmbedMs,
        r.searchMs,
        r.endToEndMs,
      ]),
    ),
    ...(result.duplicates
      ? [
          '**Duplicate groups listed** (GET /duplicates, first page of 50, default threshold; DBA lists of 3 set directly, distances uniform in 0..0.3), and one image written with DBA maintained',
          markdownTable(
            [
              'engine',
              'images',
              'groups',
              'list ms p50',
              'list ms max',
              'strategy',
              'write ms p50',
              'write ms max',
            ],
            result.duplicates.map((r) => [
              r.engine,
              r.images,
              r.groups,
              r.listMsP50,
              r.listMsMax,
              r.strategy,
              r.writeMsP50,
              r.writeMsMax,
            ]),
          ),
        ]
      : []),
    `**Peak RSS per stage** (MiB): ${Object.entries(result.peakRssMiB)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  ];
  return `${sections.join('\n\n')}\n`;
}

/** Two bar charts side by side: throughput (images/s) and query latency p50 (ms). */
export function toSvg(result: BenchResult): string {
  const throughput: [string, number][] = [
    ...result.inference
      .filter((r) => r.threads === 2 && r.batch === 8)
      .map((r): [string, number] => [`${r.model} model-only`, r.imagesPerSecond]),
    ...result.pipeline.map((r): [string, number] => [
      `${r.model} pipeline${r.workers ? '' : ' (in process)'}${r.dba ? ` (DBA ${r.dba})` : ''}`,
      r.imagesPerSecond,
    ]),
    ...result.preprocessing
      .filter((r) => r.concurrency === 2)
      .map((r): [string, number] => [`decode ${r.input.split(' (')[0]}`, r.imagesPerSecond]),
  ];
  const latency: [string, number][] = [
    ...result.store.map((r): [string, number] => [
      `${String(r.engine)} ${String(r.vectors)} exact`,
      (r.exactMs as { p50: number }).p50,
    ]),
    ...result.store
      .filter((r) => r.binaryMs)
      .map((r): [string, number] => [
        `${String(r.engine)} ${String(r.vectors)} binary`,
        (r.binaryMs as { p50: number }).p50,
      ]),
    ...result.store
      .filter((r) => r.hnswMs)
      .map((r): [string, number] => [
        `${String(r.engine)} ${String(r.vectors)} HNSW ef100`,
        (r.hnswMs as Record<string, { p50: number }>).ef100?.p50 ?? 0,
      ]),
    ...result.localQuery.map((r): [string, number] => [
      `local query ${String(r.model)}`,
      (r.endToEndMs as { p50: number }).p50,
    ]),
  ];
  const chart = (title: string, unit: string, bars: [string, number][], x: number): string => {
    const max = Math.max(1, ...bars.map(([, v]) => v));
    const rows = bars
      .map(([label, value], i) => {
        const y = 40 + i * 26;
        const width = (value / max) * 220;
        return (
          `<text x="${x}" y="${y + 14}" font-size="11">${escapeXml(label)}</text>` +
          `<rect x="${x + 210}" y="${y + 2}" width="${width.toFixed(1)}" height="16" fill="#3b82f6"/>` +
          `<text x="${x + 215 + width}" y="${y + 14}" font-size="11">${value} ${unit}</text>`
        );
      })
      .join('');
    return `<text x="${x}" y="24" font-size="14" font-weight="bold">${escapeXml(title)}</text>${rows}`;
  };
  const height = 60 + Math.max(throughput.length, latency.length) * 26;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="1040" height="${height}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    chart('Throughput (images/s, higher is better)', 'img/s', throughput, 10) +
    chart('Query latency p50 (ms, lower is better)', 'ms', latency, 530) +
    `</svg>\n`
  );
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}
