import { describe, expect, it } from 'vitest';
import { adamwUpdate, type AdamWStep } from '../../src/kernels/adamw';
import * as ref from '../../src/ref/adamw';
import { TOL_ELEMENTWISE, expectClose } from '../helpers/compare';
import { download, gpu, upload } from '../helpers/gpu';
import { rng, uniform } from '../helpers/random';

// Gradients with |g| in [0.01, 1] and a random sign: keeps v away from the tiny values where the
// f32 vs float64 difference of √v is amplified by m/(√v + ε) (with |g| ~ ε the update is a ratio of
// two numbers of size ε and its relative error grows accordingly; that regime is tested separately
// on the reference below, not as a GPU tolerance).
function grads(n: number, seed: number): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround((r() < 0.5 ? -1 : 1) * (0.01 + 0.99 * r()));
  return out;
}

describe('adamw reference', () => {
  it('first step from zero moments moves θ by lr·sign(g) (bias correction), decay applied first', () => {
    // t = 1: m̂ = g, v̂ = g², so θ ← θ(1 − lr·λ) − lr·g/(|g| + ε).
    const s = ref.adamwStep(
      { param: Float64Array.of(1, -2), m: new Float64Array(2), v: new Float64Array(2) },
      Float64Array.of(3, -0.5),
      { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 },
    );
    expect(s.param[0]).toBeCloseTo(1 * (1 - 0.001) - 0.1 * (3 / (3 + 1e-8)), 14);
    expect(s.param[1]).toBeCloseTo(-2 * (1 - 0.001) + 0.1 * (0.5 / (0.5 + 1e-8)), 14);
    expect(s.m[0]).toBeCloseTo(0.3, 14);
    expect(s.v[0]).toBeCloseTo(0.009, 14);
  });

  it('ε is added after dividing √v by √(1−β2^t) (torch), not inside', () => {
    // g = ε at t = 1: m̂ = ε, √v̂ = ε, update = lr·ε/(ε + ε) = lr/2.
    const s = ref.adamwStep(
      { param: Float64Array.of(0), m: new Float64Array(1), v: new Float64Array(1) },
      Float64Array.of(1e-8),
      { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 },
    );
    expect(s.param[0]).toBeCloseTo(-0.05, 12);
  });

  it('clip coefficient scales the gradient before both moments', () => {
    const h = { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, step: 3 };
    const st = { param: Float64Array.of(0.5), m: Float64Array.of(0.2), v: Float64Array.of(0.04) };
    const a = ref.adamwStep(st, Float64Array.of(2), h, 0.25);
    const b = ref.adamwStep(st, Float64Array.of(0.5), h, 1);
    expect(a.param[0]).toBe(b.param[0]);
    expect(a.m[0]).toBe(b.m[0]);
    expect(a.v[0]).toBe(b.v[0]);
  });
});

describe('adamw.wgsl', () => {
  // Several consecutive steps on the GPU (f32 state carried between steps) against the float64
  // reference run over the same steps. Tolerance TOL_ELEMENTWISE (rtol 1e-5, atol 1e-6) on θ, m, v.
  const configs: { name: string; h: Omit<AdamWStep, 'step'>; t0: number; warm: boolean; coefs: number[] }[] = [
    {
      name: 'from zero moments, t=1..5, weight decay, clipping on steps 2 and 4',
      h: { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 },
      t0: 1,
      warm: false,
      coefs: [1, 0.5, 1, 0.25, 1],
    },
    {
      name: 'warm moments, t=1000..1003, betas (0.8, 0.95), eps 1e-6, no decay',
      h: { lr: 1e-3, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0 },
      t0: 1000,
      warm: true,
      coefs: [1, 0.7, 1, 1],
    },
    {
      // ε comparable to √v̂: the placement of ε (after the bias correction of √v) shows in θ.
      name: 'large eps 0.05 so that the placement of ε is visible, t=1..3',
      h: { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 0.05, weightDecay: 0.01 },
      t0: 1,
      warm: false,
      coefs: [1, 1, 0.5],
    },
  ];
  for (const n of [1, 255, 257, 70_001]) {
    for (const cfg of configs) {
      it(`adamw_update matches torch.optim.AdamW over ${cfg.coefs.length} steps, n=${n}: ${cfg.name}`, async () => {
        const c = await gpu();
        let state: ref.AdamWState = {
          param: uniform(n, 11),
          m: cfg.warm ? uniform(n, 12, -0.1, 0.1) : new Float64Array(n),
          v: cfg.warm ? uniform(n, 13, 1e-4, 1e-2) : new Float64Array(n),
        };
        const param = upload(c, state.param, [n], 'param');
        const m = upload(c, state.m, [n], 'm');
        const v = upload(c, state.v, [n], 'v');
        const coef = c.tensor([1], { label: 'clip_coef' });
        for (let k = 0; k < cfg.coefs.length; k++) {
          const g = grads(n, 100 + k);
          const step = cfg.t0 + k;
          c.write(coef, Float32Array.of(cfg.coefs[k]));
          const grad = upload(c, g, [n], 'grad');
          await c.run((b) => adamwUpdate(b, param, m, v, grad, coef, { ...cfg.h, step }));
          state = ref.adamwStep(state, g, { ...cfg.h, step }, Math.fround(cfg.coefs[k]));
          c.release(grad);
        }
        expectClose(await download(c, param), state.param, TOL_ELEMENTWISE, 'adamw_update θ');
        expectClose(await download(c, m), state.m, TOL_ELEMENTWISE, 'adamw_update m');
        expectClose(await download(c, v), state.v, TOL_ELEMENTWISE, 'adamw_update v');
        for (const t of [param, m, v, coef]) c.release(t);
      });
    }
  }

  it('leaves the gradient untouched (clipping is applied on the fly)', async () => {
    const c = await gpu();
    const n = 300;
    const g = grads(n, 7);
    const grad = upload(c, g, [n]);
    const coef = upload(c, [0.5], [1]);
    const z = () => c.tensor([n]);
    await c.run((b) => adamwUpdate(b, z(), z(), z(), grad, coef, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 }));
    expectClose(await download(c, grad), g, { rtol: 0, atol: 0 }, 'grad');
  });

  it('rejects mismatched sizes and bad steps naming the kernel and tensor', async () => {
    const c = await gpu();
    const b = c.batch();
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
    const t = (n: number) => c.tensor([n]);
    expect(() => adamwUpdate(b, t(4), t(4), t(5), t(4), t(1), h)).toThrow(/adamw_update: v has 5 elements/);
    expect(() => adamwUpdate(b, t(4), t(4), t(4), t(4), t(2), h)).toThrow(/adamw_update: clipCoef has 2 elements/);
    expect(() => adamwUpdate(b, t(4), t(4), t(4), t(4), t(1), { ...h, step: 0 })).toThrow(/adamw_update: step/);
  });
});
