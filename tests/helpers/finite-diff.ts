// Finite-difference check of a float64 reference backward.
// For an op y = f(x₁…xₖ) and a random upstream gradient g, the scalar L = Σ g·y has
// ∂L/∂xᵢ[j] ≈ (L(xᵢ[j]+h) − L(xᵢ[j]−h)) / 2h; the reference backward must agree.
import { compare, type Tolerance } from './compare';
import { rng } from './random';

export interface GradCheck {
  /** Inputs (modified in place during the check, restored afterwards). */
  inputs: Float64Array[];
  /** Forward: returns the output(s) concatenated into one array. */
  forward: (inputs: Float64Array[]) => Float64Array;
  /** Backward: given the upstream gradient of the output, the gradient of each checked input. */
  backward: (inputs: Float64Array[], dOut: Float64Array) => (Float64Array | null)[];
  /** Which inputs to check (default: all where backward returns non-null). */
  wrt?: number[];
  h?: number;
  tol?: Tolerance;
  seed?: number;
  /** Check at most this many elements per input (sampled) to keep big checks fast. */
  maxPerInput?: number;
}

export function checkGradients(c: GradCheck): void {
  const h = c.h ?? 1e-6;
  const tol = c.tol ?? { rtol: 1e-6, atol: 1e-8 };
  const y0 = c.forward(c.inputs);
  const r = rng(c.seed ?? 1234);
  const g = new Float64Array(y0.length);
  for (let i = 0; i < g.length; i++) g[i] = 2 * r() - 1;
  const loss = (): number => {
    const y = c.forward(c.inputs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += g[i] * y[i];
    return s;
  };
  const analytic = c.backward(c.inputs, g);
  const wrt = c.wrt ?? analytic.map((a, i) => (a ? i : -1)).filter((i) => i >= 0);
  for (const k of wrt) {
    const x = c.inputs[k];
    const an = analytic[k];
    if (!an) throw new Error(`backward returned no gradient for input ${k}`);
    const idx = [...Array(x.length).keys()];
    const limit = c.maxPerInput ?? 64;
    const pick = idx.length <= limit ? idx : idx.filter(() => r() < limit / idx.length);
    const num = new Float64Array(pick.length);
    const got = new Float64Array(pick.length);
    pick.forEach((j, n) => {
      const keep = x[j];
      x[j] = keep + h;
      const lp = loss();
      x[j] = keep - h;
      const lm = loss();
      x[j] = keep;
      num[n] = (lp - lm) / (2 * h);
      got[n] = an[j];
    });
    const res = compare(got, num, tol);
    if (!res.ok) throw new Error(`finite-difference check failed for input ${k}: ${res.report}`);
  }
}
