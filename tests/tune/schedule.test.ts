import { describe, expect, it } from 'vitest';
import { learningRate, lrLambda } from '../../src/tune/schedule';

describe('learning-rate schedules (transformers semantics)', () => {
  it('warmup starts at 0 and reaches the base rate', () => {
    expect(learningRate(1e-3, 'constant', 1, 4, 10)).toBe(0);
    expect(learningRate(1e-3, 'constant', 3, 4, 10)).toBeCloseTo(5e-4, 15);
    expect(learningRate(1e-3, 'constant', 5, 4, 10)).toBe(1e-3);
  });
  it('linear decays to 0 at the last step', () => {
    expect(lrLambda('linear', 4, 4, 10)).toBe(1);
    expect(lrLambda('linear', 7, 4, 10)).toBeCloseTo(0.5, 15);
    expect(lrLambda('linear', 10, 4, 10)).toBe(0);
  });
  it('cosine follows 0.5·(1 + cos(π·p))', () => {
    expect(lrLambda('cosine', 2, 2, 12)).toBe(1);
    expect(lrLambda('cosine', 7, 2, 12)).toBeCloseTo(0.5, 12);
    expect(lrLambda('cosine', 12, 2, 12)).toBeCloseTo(0, 12);
    // without warmup the first update uses λ(0) = 1
    expect(learningRate(2e-4, 'cosine', 1, 0, 100)).toBe(2e-4);
  });
});
