import { describe, expect, it } from 'vitest';
import { biasBackward as gpuBackward, biasForward as gpuForward } from '../../src/kernels/bias';
import * as ref from '../../src/ref/bias';
import { TOL_ELEMENTWISE, TOL_REDUCTION, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { uniform } from '../helpers/random';

// R = rows (tokens), C = columns (features).
describe('bias reference', () => {
  it('backward matches finite differences', () => {
    const [R, C] = [5, 7];
    checkGradients({
      inputs: [uniform(R * C, 1), uniform(C, 2)],
      forward: ([x, b]) => ref.biasForward(x, b, R, C),
      backward: (_x, dy) => {
        const g = ref.biasBackward(dy, R, C);
        return [g.dx, g.db];
      },
    });
  });
});

describe('bias.wgsl', () => {
  // Size-1 edges, sizes that are not multiples of the 256 workgroup, row counts not multiples of 4
  // (bias_backward's unrolled loop), and more than 256 columns.
  const shapes: [number, number][] = [
    [1, 1],
    [3, 5],
    [17, 33],
    [257, 70],
    [6, 300],
    [1000, 129],
  ];
  for (const [R, C] of shapes) {
    // Tolerance: one f32 add per element → TOL_ELEMENTWISE.
    it(`bias_forward adds b to every row in place, R=${R} C=${C}`, async () => {
      const c = await gpu();
      const x = uniform(R * C, 3);
      const b = uniform(C, 4);
      const y = upload(c, x, [R, C]);
      await c.run((batch) => gpuForward(batch, y, upload(c, b, [C]), R, C));
      expectClose(await download(c, y), ref.biasForward(x, b, R, C), TOL_ELEMENTWISE, 'bias_forward');
    });

    // Tolerance: a sum over R rows in f32 → TOL_REDUCTION (rtol 1e-4, atol 1e-5).
    it(`bias_backward accumulates the column sums of dy, R=${R} C=${C}`, async () => {
      const c = await gpu();
      const dy = uniform(R * C, 5);
      const acc = uniform(C, 6);
      const db = upload(c, acc, [C]);
      await c.run((batch) => gpuBackward(batch, db, upload(c, dy, [R, C]), R, C));
      const want = ref.biasBackward(dy, R, C).db.map((v, i) => v + acc[i]);
      expectClose(await download(c, db), want, TOL_REDUCTION, 'bias_backward');
    });
  }

  it('bias_backward is deterministic (bitwise identical over repeated runs)', async () => {
    const c = await gpu();
    const [R, C] = [999, 37];
    const dy = upload(c, uniform(R * C, 7), [R, C]);
    const runs: Float32Array[] = [];
    for (let i = 0; i < 3; i++) {
      const db = c.tensor([C]);
      await c.run((batch) => gpuBackward(batch, db, dy, R, C));
      runs.push(await c.readF32(db));
    }
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
  });

  it('rejects mismatched sizes naming the kernel and tensor', async () => {
    const c = await gpu();
    const batch = c.batch();
    expect(() => gpuForward(batch, c.tensor([4, 3]), c.tensor([4]), 4, 3)).toThrow(/bias_forward: b has 4 elements/);
    expect(() => gpuBackward(batch, c.tensor([3]), c.tensor([5, 3]), 4, 3)).toThrow(/bias_backward: dy has 15 elements/);
  });
});
