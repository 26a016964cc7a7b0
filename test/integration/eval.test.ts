import { ompf } from '../helpers/cli';
import { CALTECH_DIR, MODELS_DIR, requirePath } from '../helpers/shared';

/**
 * Retrieval quality guard. Measured on this data set (1,348 images, 20 classes) with
 * mobilenetv2-int8, cosine, leave-one-out: Top-1 0.918, Top-5 0.987, Top-10 0.995, P@10 0.862,
 * mAP 0.691 (see README). Thresholds sit a little below, so a real regression fails and int8
 * rounding differences between CPUs do not.
 */
const THRESHOLDS = { top1: 0.9, top5: 0.97, top10: 0.985, precisionAt10: 0.84, mAP: 0.66 };

describe('ompf eval on caltech101-animals-dev (mobilenetv2-int8)', () => {
  it('reports Top-k, P@10 and mAP above the thresholds set from measurement', async () => {
    // Act
    const result = await ompf(
      ['--json', '--model', 'mobilenetv2-int8', 'eval', requirePath(CALTECH_DIR, 'Dataset')],
      {
        OMPF_MODELS_DIR: MODELS_DIR,
      },
    );
    // Assess
    expect(result.code).toBe(0);
    const metrics = result.json<Record<string, number>>();
    expect(metrics).toMatchObject({ images: 1348, classes: 20, failed: 0 });
    for (const [metric, minimum] of Object.entries(THRESHOLDS)) {
      expect({ metric, value: metrics[metric] }).toEqual({ metric, value: expect.any(Number) });
      expect(metrics[metric]).toBeGreaterThanOrEqual(minimum);
    }
    // The floor, whatever the thresholds above say.
    expect(metrics.top1).toBeGreaterThanOrEqual(0.85);
    expect(metrics.precisionAt10).toBeGreaterThanOrEqual(0.75);
  });
});
