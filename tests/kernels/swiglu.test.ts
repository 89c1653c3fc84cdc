import { describe, expect, it } from 'vitest';
import { swigluBackward as gpuBackward, swigluForward as gpuForward } from '../../src/kernels/swiglu';
import * as ref from '../../src/ref/swiglu';
import { TOL_ELEMENTWISE, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { normal } from '../helpers/random';

// Tolerance: TOL_ELEMENTWISE (rtol 1e-5, atol 1e-6), f32 GPU vs float64 reference.

describe('swiglu reference', () => {
  it('backward (dgate, dup) matches finite differences', () => {
    checkGradients({
      inputs: [normal(53, 1, 3), normal(53, 2)],
      forward: ([g, u]) => ref.swigluForward(g, u),
      backward: ([g, u], dOut) => {
        const r = ref.swigluBackward(dOut, g, u);
        return [r.dGate, r.dUp];
      },
    });
  });
});

async function check(gate: Float64Array, up: Float64Array, seed: number, label: string): Promise<void> {
  const c = await gpu();
  const n = gate.length;
  const dOut = normal(n, seed);
  const g = upload(c, gate, [n]);
  const u = upload(c, up, [n]);
  const out = c.tensor([n]);
  const dGate = c.tensor([n]);
  const dUp = c.tensor([n]);
  await c.run((b) => {
    gpuForward(b, out, g, u);
    gpuBackward(b, dGate, dUp, upload(c, dOut, [n]), g, u);
  });
  const want = ref.swigluBackward(dOut, gate, up);
  const got = [await download(c, out), await download(c, dGate), await download(c, dUp)];
  expect(got.every((a) => a.every(Number.isFinite)), `${label}: non-finite output`).toBe(true);
  expectClose(got[0], ref.swigluForward(gate, up), TOL_ELEMENTWISE, `swiglu_forward ${label}`);
  expectClose(got[1], want.dGate, TOL_ELEMENTWISE, `swiglu_backward dgate ${label}`);
  expectClose(got[2], want.dUp, TOL_ELEMENTWISE, `swiglu_backward dup ${label}`);
}

describe('swiglu.wgsl', () => {
  for (const n of [1, 255, 257, 70_001]) {
    it(`swiglu_forward and swiglu_backward match the reference, n=${n}`, async () => {
      await check(normal(n, 3 + n, 3), normal(n, 4 + n), 5 + n, `n=${n}`);
    });
  }

  it('extreme gates stay finite and exact (|g| up to 1e30, tiny g)', async () => {
    const edges = [0, 1e-30, 1e-3, 0.5, 5, 20, 50, 88, 100, 1e4, 1e30];
    const gate = Float64Array.from([...edges, ...edges.map((v) => -v)], Math.fround);
    await check(gate, normal(gate.length, 6), 7, 'extremes');
  });

  it('rejects mismatched sizes naming the kernel and tensor', async () => {
    const c = await gpu();
    const b = c.batch();
    expect(() => gpuForward(b, c.tensor([4]), c.tensor([4]), c.tensor([5]))).toThrow(/swiglu_forward: up has 5 elements/);
  });
});
