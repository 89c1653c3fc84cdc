import { describe, expect, it } from 'vitest';
import { geluBackward as gpuBackward, geluForward as gpuForward } from '../../src/kernels/gelu';
import * as ref from '../../src/ref/gelu';
import { TOL_ELEMENTWISE, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { normal } from '../helpers/random';

// Tolerance: TOL_ELEMENTWISE (rtol 1e-5, atol 1e-6), f32 GPU vs float64 reference.

describe('gelu reference', () => {
  it('backward matches finite differences', () => {
    checkGradients({
      inputs: [normal(61, 1, 3)],
      forward: ([x]) => ref.geluForward(x),
      backward: ([x], dy) => [ref.geluBackward(dy, x)],
    });
  });

  it('forward matches known values of gelu_new', () => {
    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) evaluated by hand at x = 1 and x = −1.
    const t = Math.tanh(Math.sqrt(2 / Math.PI) * 1.044715);
    expectClose(ref.geluForward(Float64Array.from([1, -1, 0])), [0.5 * (1 + t), -0.5 * (1 - t), 0], { rtol: 1e-15, atol: 0 });
  });
});

async function check(x: Float64Array, seed: number, label: string): Promise<void> {
  const c = await gpu();
  const n = x.length;
  const dyv = normal(n, seed);
  const xt = upload(c, x, [n]);
  const out = c.tensor([n]);
  const dx = c.tensor([n]);
  await c.run((b) => {
    gpuForward(b, out, xt);
    gpuBackward(b, dx, upload(c, dyv, [n]), xt);
  });
  const got = await download(c, out);
  const gotDx = await download(c, dx);
  expect(got.every(Number.isFinite) && gotDx.every(Number.isFinite), `${label}: non-finite output`).toBe(true);
  expectClose(got, ref.geluForward(x), TOL_ELEMENTWISE, `gelu_forward ${label}`);
  expectClose(gotDx, ref.geluBackward(dyv, x), TOL_ELEMENTWISE, `gelu_backward ${label}`);
}

describe('gelu.wgsl', () => {
  // Size 1, around the 256 workgroup, and many workgroups with a partial tail (70_001 → 274 groups).
  for (const n of [1, 255, 257, 70_001]) {
    it(`gelu_forward and gelu_backward match the reference, n=${n}`, async () => {
      await check(normal(n, 3 + n, 2), 4 + n, `n=${n}`);
    });
  }

  it('extreme inputs stay finite and exact (|x| up to 1e30, around the ±20 clamp, tiny x)', async () => {
    const edges = [0, 1e-30, 1e-3, 0.5, 3, 5, 10, 19.9, 20, 20.5, 50, 100, 1e4, 1e30];
    const x = Float64Array.from([...edges, ...edges.map((v) => -v)], Math.fround);
    await check(x, 7, 'extremes');
  });

  it('rejects mismatched sizes naming the kernel and tensor', async () => {
    const c = await gpu();
    const b = c.batch();
    expect(() => gpuBackward(b, c.tensor([4]), c.tensor([4]), c.tensor([3]))).toThrow(/gelu_backward: x has 3 elements/);
  });
});
