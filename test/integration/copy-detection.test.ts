import { resolveModelSpec } from '../../lib/adapters/models/model-registry';
import { ATTACKS } from '../../lib/bench/copy-attacks';
import { runCopyDetection } from '../../lib/bench/copy-detection-run';
import { loadConfig } from '../../lib/runtime/config';
import { openEvaluation } from '../../lib/runtime/local';
import { productEmbedder } from '../../lib/runtime/product';
import { CALTECH_DIR, MODELS_DIR, OTHER_DIR } from '../helpers/shared';

/**
 * The copy-detection protocol, small (CI): real photos attacked with sharp, the real model and pHash.
 * It checks the mechanics and the easy end of the measurement; the figures of the README come from the
 * full run (`ompf eval-duplicates`, 100 originals, 2,000 distractors).
 */
it('attacks each original in every family, measures both methods, and finds the mirror and light JPEG copies', async () => {
  const config = loadConfig({ OMPF_MODEL: 'mobilenetv2-int8', OMPF_MODELS_DIR: MODELS_DIR });
  const evaluation = await openEvaluation(config);
  const embedder = productEmbedder(evaluation.embedder, resolveModelSpec(config.model), config);
  const report = await runCopyDetection(embedder, evaluation.preprocessor, {
    dir: CALTECH_DIR,
    distractorsDir: OTHER_DIR,
    originals: 4,
    distractors: 40,
    minPrecision: 0.99,
    neighbours: 3,
  });
  expect(report.attacks).toHaveLength(ATTACKS.length);
  expect(report.originals).toBe(4);
  expect(report.gallery).toBe(44);
  expect(report.queries).toBeGreaterThanOrEqual(4 * ATTACKS.length);
  const { chosen } = report.cnn;
  expect(Object.keys(chosen.byFamily)).toEqual(
    expect.arrayContaining(['jpeg', 'crop', 'resize', 'mirror', 'strong']),
  );
  // The threshold chosen keeps its precision outside the strong edits; recall grows along the curve.
  expect(chosen.threshold).toBeGreaterThan(0);
  const recalls = report.cnn.curve.map((p) => p.recall);
  expect([...recalls].sort((a, b) => a - b)).toEqual(recalls);
  // A mirror is nearly free for the CNN and invisible to pHash; a resize is pHash's strength.
  expect(report.cnn.curve.find((p) => p.threshold === 0.1)!.byFamily.mirror!.recall).toBe(1);
  expect(report.phash.at10Bits.byFamily.mirror!.recall).toBe(0);
  expect(report.phash.at10Bits.byFamily.resize!.recall).toBe(1);
  // The product's rule finds what either finds at the same cosine threshold, the hash's resizes included.
  const product = report.product.curve.find((p) => p.threshold === 0.1)!;
  expect(product.byFamily.mirror!.recall).toBe(1);
  expect(product.byFamily.resize!.recall).toBe(1);
  expect(product.recall).toBeGreaterThanOrEqual(report.cnn.curve.find((p) => p.threshold === 0.1)!.recall);
  expect(report.product.byHashBits.map((p) => p.hashBits)).toContain(12);
}, 300_000);
