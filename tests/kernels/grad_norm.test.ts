import { describe, expect, it } from 'vitest';
import {
  GRAD_NORM_CHUNK,
  gradNorm,
  gradNormFinalize,
  gradNormPartial,
  gradNormPartialCount,
  gradNormPartialsLength,
  gradNormScale,
} from '../../src/kernels/grad_norm';
import * as ref from '../../src/ref/grad_norm';
import { TOL_ELEMENTWISE, TOL_REDUCTION, expectClose } from '../helpers/compare';
import { download, gpu, upload } from '../helpers/gpu';
import { normal } from '../helpers/random';

// Tolerances: the norm is an f32 reduction → TOL_REDUCTION (rtol 1e-4); the coefficient derives from
// it → TOL_REDUCTION; scaling by the coefficient is elementwise, compared against the reference
// gradients scaled by the GPU's own coefficient → TOL_ELEMENTWISE.

describe('grad_norm reference', () => {
  it('is the norm of the per-tensor norms, and clips as torch', () => {
    expect(ref.globalNorm([Float64Array.of(3, 4)])).toBeCloseTo(5, 14);
    expect(ref.globalNorm([Float64Array.of(3), Float64Array.of(4), new Float64Array(0)])).toBeCloseTo(5, 14);
    expect(ref.clipCoefficient(5, 10)).toBe(1);
    expect(ref.clipCoefficient(5, 1)).toBeCloseTo(1 / (5 + 1e-6), 15);
    const r = ref.clipGradNorm([Float64Array.of(3, 4)], 1);
    expect(r.total).toBeCloseTo(5, 14);
    expect(ref.globalNorm(r.clipped)).toBeCloseTo(1, 6);
  });
});

describe('grad_norm.wgsl', () => {
  // maxNorm may be given relative to the true norm (a function of it), so clipping happens at any size.
  async function runNorm(sizes: number[], maxNormArg: number | ((norm: number) => number), seed = 1) {
    const c = await gpu();
    const data = sizes.map((n, k) => normal(n, seed + k, 0.5));
    const maxNorm = typeof maxNormArg === 'number' ? maxNormArg : maxNormArg(ref.globalNorm(data));
    const grads = data.map((d, k) => upload(c, d, [d.length], `grad${k}`));
    const partials = c.tensor([gradNormPartialsLength(sizes)], { label: 'partials' });
    const totalNorm = c.tensor([1], { label: 'total_norm' });
    const clipCoef = c.tensor([1], { label: 'clip_coef' });
    await c.run((b) => gradNorm(b, { totalNorm, clipCoef }, partials, grads, maxNorm));
    return { c, data, grads, partials, totalNorm, clipCoef, total: (await download(c, totalNorm))[0], coef: (await download(c, clipCoef))[0] };
  }

  for (const n of [1, 255, 257, GRAD_NORM_CHUNK, GRAD_NORM_CHUNK + 1, 100_000]) {
    it(`grad_norm_partial + grad_norm_finalize: one tensor, n=${n}`, async () => {
      const r = await runNorm([n], (norm) => 0.5 * norm);
      const want = ref.clipGradNorm(r.data, 0.5 * ref.globalNorm(r.data));
      expectClose([r.total], [want.total], TOL_REDUCTION, 'total norm');
      expectClose([r.coef], [want.coef], TOL_REDUCTION, 'clip coef');
      expect(r.coef).toBeLessThan(0.51);
    });
  }

  it('grad_norm_partial writes one sum of squares per chunk at the given offset', async () => {
    const c = await gpu();
    const n = 2 * GRAD_NORM_CHUNK + 17;
    const d = normal(n, 9);
    const partials = upload(c, [-1, -1, -1, -1, -1, -1], [6]);
    let next = -1;
    await c.run((b) => {
      next = gradNormPartial(b, partials, upload(c, d, [n]), 2);
    });
    expect(next).toBe(5);
    const want = [-1, -1, 0, 0, 0, -1]; // slots 0, 1 and 5 must stay untouched
    for (let i = 0; i < n; i++) want[2 + Math.floor(i / GRAD_NORM_CHUNK)] += d[i] * d[i];
    expectClose(await download(c, partials), want, TOL_REDUCTION, 'partials');
  });

  const several = [1, 255, 257, 3, 100_000, GRAD_NORM_CHUNK + 1];
  it('several tensors: large max_norm gives coef exactly 1', async () => {
    const r = await runNorm(several, 1e6, 20);
    expectClose([r.total], [ref.globalNorm(r.data)], TOL_REDUCTION, 'total norm');
    expect(r.coef).toBe(1);
  });

  it('several tensors: small max_norm clips; grad_norm_scale applies the coefficient in place', async () => {
    const r = await runNorm(several, 0.25, 30);
    const want = ref.clipGradNorm(r.data, 0.25);
    expectClose([r.total], [want.total], TOL_REDUCTION, 'total norm');
    expectClose([r.coef], [want.coef], TOL_REDUCTION, 'clip coef');
    await r.c.run((b) => r.grads.forEach((g) => gradNormScale(b, g, r.clipCoef)));
    for (let k = 0; k < several.length; k++) {
      const expected = r.data[k].map((x) => x * r.coef);
      expectClose(await download(r.c, r.grads[k]), expected, TOL_ELEMENTWISE, `grad_norm_scale tensor ${k}`);
    }
    // The clipped gradients have norm max_norm (to f32 accuracy).
    const clipped = await Promise.all(r.grads.map((g) => download(r.c, g)));
    expectClose([ref.globalNorm(clipped)], [0.25], TOL_REDUCTION, 'norm after clipping');
  });

  it('no clipping (maxNorm = Infinity): coef 1, norm still computed', async () => {
    const r = await runNorm([1000], Infinity, 40);
    expect(r.coef).toBe(1);
    expectClose([r.total], [ref.globalNorm(r.data)], TOL_REDUCTION, 'total norm');
  });

  it('is deterministic: the same gradients give bit-identical norms', async () => {
    const a = await runNorm([100_000, 33], 1, 50);
    const b = await runNorm([100_000, 33], 1, 50);
    expect(b.total).toBe(a.total);
    expect(b.coef).toBe(a.coef);
  });

  it('all-zero gradients: norm 0, coef 1', async () => {
    const c = await gpu();
    const partials = c.tensor([gradNormPartialsLength([300])]);
    const totalNorm = c.tensor([1]);
    const clipCoef = c.tensor([1]);
    await c.run((b) => gradNorm(b, { totalNorm, clipCoef }, partials, [c.tensor([300])], 1));
    expect((await download(c, totalNorm))[0]).toBe(0);
    expect((await download(c, clipCoef))[0]).toBe(1);
  });

  it('rejects a partials buffer that is too small, naming the kernel', async () => {
    const c = await gpu();
    const b = c.batch();
    expect(gradNormPartialCount(GRAD_NORM_CHUNK + 1)).toBe(2);
    expect(() => gradNormPartial(b, c.tensor([1]), c.tensor([GRAD_NORM_CHUNK + 1]), 0)).toThrow(/grad_norm_partial: partials has 1 elements/);
    expect(() => gradNormFinalize(b, c.tensor([2]), c.tensor([1]), c.tensor([4]), 4, 1)).toThrow(/grad_norm_finalize: totalNorm has 2/);
  });
});
