import { describe, expect, it } from 'vitest';
import { Sampler } from '../../src/model/sampling';

const logits = Float32Array.from([1, 3, 2, 0.5, 2.9]);

describe('Sampler', () => {
  it('is greedy at temperature 0', () => {
    expect(new Sampler({ temperature: 0 }).next(logits, [])).toBe(1);
  });
  it('applies the repetition penalty as HF (divide positive, multiply negative logits)', () => {
    expect(new Sampler({ temperature: 0, repetitionPenalty: 1.2 }).next(logits, [1])).toBe(4);
    const neg = Float32Array.from([-1, -1.1]);
    expect(new Sampler({ temperature: 0, repetitionPenalty: 2 }).next(neg, [0])).toBe(1);
  });
  it('top-k 1 is greedy; top-p keeps the smallest set reaching p', () => {
    for (let s = 0; s < 20; s++) expect(new Sampler({ temperature: 1, topK: 1, seed: s }).next(logits, [])).toBe(1);
    // softmax([3, 2.9, …]) top two hold ~0.6 together: top-p 0.5 keeps them, never the others.
    const seen = new Set<number>();
    for (let s = 0; s < 200; s++) seen.add(new Sampler({ temperature: 1, topP: 0.5, seed: s }).next(logits, []));
    expect([...seen].sort()).toEqual([1, 4]);
  });
  it('is reproducible for a seed and follows the distribution', () => {
    const a = new Sampler({ temperature: 1, seed: 7 });
    const b = new Sampler({ temperature: 1, seed: 7 });
    const sa = Array.from({ length: 50 }, () => a.next(logits, []));
    const sb = Array.from({ length: 50 }, () => b.next(logits, []));
    expect(sa).toEqual(sb);
    const counts = new Array(5).fill(0);
    const s = new Sampler({ temperature: 1, seed: 3 });
    const n = 4000;
    for (let i = 0; i < n; i++) counts[s.next(logits, [])]++;
    const e = [...logits].map(Math.exp);
    const z = e.reduce((x, y) => x + y, 0);
    e.forEach((v, i) => expect(Math.abs(counts[i] / n - v / z)).toBeLessThan(0.03));
  });
  it('rejects bad options and NaN logits', () => {
    expect(() => new Sampler({ temperature: -1 })).toThrow(/temperature/);
    expect(() => new Sampler({ temperature: 1, topP: 0 })).toThrow(/top-p/);
    expect(() => new Sampler({ temperature: 0 }).next(Float32Array.from([0, NaN]), [])).toThrow(/NaN/);
  });
});
