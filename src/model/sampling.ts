// Next-token selection from logits, as Hugging Face `generate` does it: repetition penalty →
// temperature → top-k → top-p → sample (or argmax when temperature is 0). Seeded: draw i uses
// element i of the Philox stream of `seed`, so the same seed gives the same text on every device.
import { randomU32, uniform24 } from '../util/rng';

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
}

export class SamplingError extends Error {
  override name = 'SamplingError';
}

export function validateSampling(o: SamplingOptions): void {
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) throw new SamplingError(`temperature must be ≥ 0, got ${o.temperature}`);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw new SamplingError(`top-k must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new SamplingError(`top-p must be in (0, 1], got ${o.topP}`);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0)) {
    throw new SamplingError(`repetition penalty must be > 0, got ${o.repetitionPenalty}`);
  }
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export class Sampler {
  private draws = 0;

  constructor(readonly options: SamplingOptions) {
    validateSampling(options);
  }

  /** Pick the next token from the last position's logits; `history` = prompt + generated ids. */
  next(logits: Float32Array, history: readonly number[]): number {
    const o = this.options;
    const z = Float64Array.from(logits);
    for (let i = 0; i < z.length; i++) if (Number.isNaN(z[i])) throw new SamplingError(`logit ${i} is NaN: the model produced invalid numbers`);
    const p = o.repetitionPenalty ?? 1;
    if (p !== 1) {
      for (const id of new Set(history)) {
        if (id >= 0 && id < z.length) z[id] = z[id] < 0 ? z[id] * p : z[id] / p;
      }
    }
    if (o.temperature === 0) return argmax(z);
    for (let i = 0; i < z.length; i++) z[i] /= o.temperature;
    let order = [...z.keys()].sort((a, b) => z[b] - z[a] || a - b);
    if (o.topK && o.topK > 0 && o.topK < order.length) order = order.slice(0, o.topK);
    const max = z[order[0]];
    let probs = order.map((i) => Math.exp(z[i] - max));
    let sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((q) => q / sum);
    if (o.topP !== undefined && o.topP < 1) {
      let cum = 0;
      let keep = 0;
      while (keep < probs.length) {
        cum += probs[keep++];
        if (cum >= o.topP) break;
      }
      order = order.slice(0, keep);
      probs = probs.slice(0, keep);
      sum = probs.reduce((a, b) => a + b, 0);
      probs = probs.map((q) => q / sum);
    }
    const u = uniform24(randomU32(o.seed ?? 0, this.draws++, 1)[0]);
    let acc = 0;
    for (let j = 0; j < order.length; j++) {
      acc += probs[j];
      if (u < acc) return order[j];
    }
    return order[order.length - 1];
  }
}
