// The autodiff tape's wiring (src/ref/tape.ts), op by op, against float64 finite differences
// (tests/helpers/finite-diff: L = Σ g·y for a random g, h = 1e-6, rtol 1e-6, atol 1e-8). The ops'
// own backward references are checked elsewhere; here: layouts, bias, slices/concat, the LoRA
// dropout mask, gradient accumulation of a var used twice, and the causal-LM loss.
import { describe, expect, it } from 'vitest';
import { Tape, type Var } from '../../src/ref/tape';
import { checkGradients } from '../helpers/finite-diff';
import { rng, uniform } from '../helpers/random';

/** Runs `build` on a fresh tape with every input requiring grad; backward seeds dOut. */
function gradCheck(inputs: Float64Array[], build: (t: Tape, v: Var[]) => Var): void {
  checkGradients({
    inputs,
    forward: (xs) => {
      const t = new Tape();
      return build(t, xs.map((x) => t.leaf(x))).value;
    },
    backward: (xs, dOut) => {
      const t = new Tape();
      const vs = xs.map((x) => t.leaf(x, true));
      t.backward(build(t, vs), dOut);
      return vs.map((v) => v.grad ?? new Float64Array(v.length));
    },
  });
}

describe('Tape', () => {
  const [N, IN, OUT] = [3, 5, 4];

  it.each(['out_in', 'in_out'] as const)('linear (%s layout, bias) matches finite differences', (layout) => {
    gradCheck([uniform(N * IN, 1), uniform(IN * OUT, 2), uniform(OUT, 3)], (t, [x, w, b]) =>
      t.linear(x, w, b, { rows: N, in: IN, out: OUT, layout }),
    );
  });

  it('out_in and in_out agree on transposed weights', () => {
    const x = uniform(N * IN, 1);
    const w = uniform(OUT * IN, 2);
    const wt = new Float64Array(IN * OUT);
    for (let o = 0; o < OUT; o++) for (let i = 0; i < IN; i++) wt[i * OUT + o] = w[o * IN + i];
    const t = new Tape();
    const a = t.linear(t.leaf(x), t.leaf(w), null, { rows: N, in: IN, out: OUT, layout: 'out_in' }).value;
    const b = t.linear(t.leaf(x), t.leaf(wt), null, { rows: N, in: IN, out: OUT, layout: 'in_out' }).value;
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i], 14);
  });

  it('sliceCols / concatCols (reordered) and a var used twice match finite differences', () => {
    gradCheck([uniform(N * 6, 4), uniform(N * 2, 5)], (t, [x, y]) => {
      const a = t.sliceCols(x, N, 6, 0, 2);
      const c = t.sliceCols(x, N, 6, 3, 3);
      return t.concatCols([c, y, a, t.add(a, y)], N);
    });
  });

  it('LoRA branch with a fixed dropout mask matches finite differences', () => {
    const R = 2;
    const r = rng(9);
    const mask = Uint8Array.from({ length: N * IN }, () => (r() < 0.3 ? 0 : 1));
    gradCheck([uniform(N * IN, 6), uniform(R * IN, 7), uniform(OUT * R, 8)], (t, [x, a, b]) =>
      t.lora(x, a, b, { n: N, inFeatures: IN, outFeatures: OUT, rank: R }, 1.5, { mask, p: 0.3 }),
    );
  });

  it('causal-LM loss: ignored rows get no gradient, the mean is over valid targets', () => {
    const [B, T, V] = [2, 4, 5];
    const labels = [-100, -100, 3, 1, 2, 0, -100, 4]; // targets: [−100, 3, 1, −100 | 0, −100, 4, −100]
    const logits = uniform(B * T * V, 10, -2, 2);
    const t = new Tape();
    const z = t.leaf(logits, true);
    const { loss, count } = t.causalLmLoss(z, labels, B, T, V);
    expect(count).toBe(4);
    t.backward(loss);
    for (const row of [0, 3, 5, 7]) expect(z.grad!.subarray(row * V, (row + 1) * V).every((g) => g === 0)).toBe(true);
    // Each valid row's gradient sums to 0 (softmax − onehot) and is scaled by 1/count.
    const row1 = z.grad!.subarray(V, 2 * V);
    expect(Math.abs(row1.reduce((s, g) => s + g, 0))).toBeLessThan(1e-15);
    expect(row1[3]).toBeLessThan(0);
    gradCheck([logits], (tp, [zz]) => tp.causalLmLoss(zz, labels, B, T, V).loss);
  });
});
