import { scoreRankings } from '../../lib/core/evaluation';
import { scoreOf, validateSearchOptions } from '../../lib/core/search';
import { InvalidInputError } from '../../lib/core/errors';

describe('scoreRankings (leave-one-out metrics)', () => {
  it('computes Top-k hit rates, precision@10 and mAP by hand-checked example', () => {
    // Prepare: query A finds its one relevant image at rank 2; query B finds its two at ranks 1 and 3.
    const rankings = [
      [false, true, false, false],
      [true, false, true, false],
    ];
    // Act
    const metrics = scoreRankings(rankings, [1, 2]);
    // Assess
    expect(metrics.top1).toBe(0.5);
    expect(metrics.top5).toBe(1);
    expect(metrics.precisionAt10).toBeCloseTo((1 / 10 + 2 / 10) / 2);
    // AP(A) = 1/2; AP(B) = (1/1 + 2/3) / 2 = 5/6
    expect(metrics.mAP).toBeCloseTo((0.5 + 5 / 6) / 2);
  });

  it('scores a query with no relevant images as 0 AP rather than dividing by zero', () => {
    expect(scoreRankings([[false, false]], [0]).mAP).toBe(0);
    expect(scoreRankings([], []).images).toBe(0);
  });
});

describe('search options', () => {
  it.each([0, 101, 2.5, Number.NaN, Number.POSITIVE_INFINITY, -1])('refuses N = %p before any work', (n) => {
    expect(() => validateSearchOptions({ limit: n })).toThrow(InvalidInputError);
  });

  it('defaults to 10 cosine results and accepts 1 and 100', () => {
    expect(validateSearchOptions({})).toEqual({
      limit: 10,
      queryExpansion: 0,
      metric: 'cosine',
      keyPrefix: undefined,
      rerank: 0,
    });
    expect(validateSearchOptions({ limit: 1 }).limit).toBe(1);
    expect(validateSearchOptions({ limit: 100 }).limit).toBe(100);
  });

  it.each([-1, 501, 2.5, Number.NaN])('refuses re-ranking of %s candidates', (rerank) => {
    expect(() => validateSearchOptions({ rerank })).toThrow(/Re-ranking takes 0 \(off\) to 500 candidates/);
  });

  it('refuses a prefix longer than 1,024 bytes and an unknown metric', () => {
    expect(() => validateSearchOptions({ keyPrefix: 'é'.repeat(513) })).toThrow(/longer than 1024 bytes/);
    expect(() => validateSearchOptions({ metric: 'manhattan' as 'cosine' })).toThrow(
      /Unknown distance metric/,
    );
  });

  it('maps distances to a 0..1 score, identical for both metrics on unit vectors', () => {
    expect(scoreOf(0, 'cosine')).toBe(1);
    expect(scoreOf(2, 'cosine')).toBe(0);
    expect(scoreOf(Math.SQRT2, 'euclidean')).toBeCloseTo(scoreOf(1, 'cosine'));
  });
});
