import { describe, expect, it } from 'vitest';
import { residualBackward as gpuBackward, residualForward as gpuForward } from '../../src/kernels/residual';
import * as ref from '../../src/ref/residual';
import { TOL_ELEMENTWISE, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { uniform } from '../helpers/random';

describe('residual reference', () => {
  it('backward matches finite differences', () => {
    checkGradients({
      inputs: [uniform(37, 1), uniform(37, 2)],
      forward: ([a, b]) => ref.residualForward(a, b),
      backward: (_x, dy) => {
        const g = ref.residualBackward(dy);
        return [g.da, g.db];
      },
    });
  });
});

describe('residual.wgsl', () => {
  // 1, 255, 257 and 70_000 elements: size-1, around the 256 workgroup, and a multi-workgroup tail.
  for (const n of [1, 255, 257, 70_001]) {
    it(`residual_forward matches the reference, n=${n}`, async () => {
      const c = await gpu();
      const a = uniform(n, 3);
      const b = uniform(n, 4);
      const out = c.tensor([n]);
      await c.run((batch) => gpuForward(batch, out, upload(c, a, [n]), upload(c, b, [n])));
      expectClose(await download(c, out), ref.residualForward(a, b), TOL_ELEMENTWISE, 'residual_forward');
    });

    it(`residual_backward accumulates, n=${n}`, async () => {
      const c = await gpu();
      const acc = uniform(n, 5);
      const dy = uniform(n, 6);
      const dAcc = upload(c, acc, [n]);
      await c.run((batch) => gpuBackward(batch, dAcc, upload(c, dy, [n])));
      const want = ref.residualForward(acc, ref.residualBackward(dy).da);
      expectClose(await download(c, dAcc), want, TOL_ELEMENTWISE, 'residual_backward');
    });
  }

  it('rejects mismatched sizes naming the kernel and tensor', async () => {
    const c = await gpu();
    const batch = c.batch();
    expect(() => gpuForward(batch, c.tensor([4]), c.tensor([4]), c.tensor([5]))).toThrow(/residual_forward: b has 5 elements/);
  });
});
