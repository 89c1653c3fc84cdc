import { describe, expect, it } from 'vitest';
import {
  rmsnormBackward as gpuBackward,
  rmsnormForward as gpuForward,
  type ColumnVariant,
  type RowVariant,
} from '../../src/kernels/rmsnorm';
import * as ref from '../../src/ref/rmsnorm';
import { TOL_REDUCTION, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { normal, uniform } from '../helpers/random';

// N = rows (tokens), C = channels. Tolerance: TOL_REDUCTION (rtol 1e-4, atol 1e-5): every output
// depends on a sum over C (rstd) or over N (dw).

describe('rmsnorm reference', () => {
  it('backward (dx, dw) matches finite differences', () => {
    const N = 3;
    const C = 7;
    checkGradients({
      inputs: [normal(N * C, 1), uniform(C, 2, 0.5, 1.5)],
      forward: ([x, w]) => ref.rmsnormForward(x, w, N, C, 1e-5).out,
      backward: ([x, w], dy) => {
        const g = ref.rmsnormBackward(dy, x, w, N, C, 1e-5);
        return [g.dx, g.dw];
      },
    });
  });
});

const EPS = 1e-6;

// Row layouts: one invocation per row (no barriers), 4 rows of 16 lanes per workgroup (rows past
// the end share a workgroup with live ones), one 256-lane workgroup per row.
const ROWS: RowVariant[] = [
  { wg: 64, lanes: 1 },
  { wg: 64, lanes: 16 },
  { wg: 256, lanes: 256 },
];
// Column layouts for dw: 64 columns × 1 row lane, 8 columns × 8 row lanes.
const COLS: ColumnVariant[] = [
  { wg: 64, cols: 64 },
  { wg: 64, cols: 8 },
];

async function runCase(N: number, C: number, rows: RowVariant, cols: ColumnVariant, scale = 1, seed = 0): Promise<void> {
  const c = await gpu();
  const x = normal(N * C, 10 + seed, scale);
  const w = uniform(C, 11 + seed, -2, 2);
  const dyv = normal(N * C, 12 + seed);
  const dw0 = uniform(C, 13 + seed);
  const want = ref.rmsnormForward(x, w, N, C, EPS);
  const grad = ref.rmsnormBackward(dyv, x, w, N, C, EPS);

  const out = c.tensor([N, C]);
  const rstd = c.tensor([N]);
  const dx = c.tensor([N, C]);
  const dw = upload(c, dw0, [C]);
  const xt = upload(c, x, [N, C]);
  const wt = upload(c, w, [C]);
  await c.run((b) => {
    gpuForward(b, out, rstd, xt, wt, N, C, EPS, rows);
    gpuBackward(b, dx, dw, upload(c, dyv, [N, C]), xt, wt, rstd, N, C, rows, cols);
  });
  const tag = `N=${N} C=${C} ${JSON.stringify(rows)} ${JSON.stringify(cols)}`;
  expectClose(await download(c, out), want.out, TOL_REDUCTION, `rmsnorm_forward out ${tag}`);
  expectClose(await download(c, rstd), want.rstd, TOL_REDUCTION, `rmsnorm_forward rstd ${tag}`);
  expectClose(await download(c, dx), grad.dx, TOL_REDUCTION, `rmsnorm_backward dx ${tag}`);
  expectClose(await download(c, dw), dw0.map((v, j) => v + grad.dw[j]), TOL_REDUCTION, `rmsnorm_backward_dw dw ${tag}`);
}

describe('rmsnorm.wgsl', () => {
  // rmsnorm_forward, rmsnorm_backward (dx, =) and rmsnorm_backward_dw (dw, +=) in one batch.
  for (const N of [1, 3, 33]) {
    for (const C of [1, 7, 64, 257, 1000]) {
      it(`rmsnorm_forward / rmsnorm_backward / rmsnorm_backward_dw, N=${N} C=${C}`, async () => {
        // Every shape under the default layout, then one other row and column layout per shape.
        await runCase(N, C, ROWS[0], COLS[0]);
        const k = N + C;
        await runCase(N, C, ROWS[1 + (k % 2)], COLS[1], 1, 1);
      });
    }
  }

  it('llama-sized row (N=5, C=4096), every row layout', async () => {
    for (const rows of ROWS) await runCase(5, 4096, rows, COLS[1]);
  });

  it('large and small magnitudes (x·1e4, x·1e-2)', async () => {
    await runCase(3, 257, ROWS[0], COLS[0], 1e4);
    await runCase(3, 257, ROWS[2], COLS[1], 1e-2);
  });

  it('rejects wrong shapes and bad layouts naming the kernel and tensor', async () => {
    const c = await gpu();
    const b = c.batch();
    expect(() => gpuForward(b, c.tensor([2, 4]), c.tensor([3]), c.tensor([2, 4]), c.tensor([4]), 2, 4)).toThrow(
      /rmsnorm_forward: rstd has 3 elements/,
    );
    expect(() =>
      gpuBackward(b, c.tensor([8]), c.tensor([5]), c.tensor([8]), c.tensor([8]), c.tensor([4]), c.tensor([2]), 2, 4),
    ).toThrow(/rmsnorm_backward: dw has 5 elements/);
    expect(() => gpuForward(b, c.tensor([8]), c.tensor([2]), c.tensor([8]), c.tensor([4]), 2, 4, EPS, { wg: 64, lanes: 3 })).toThrow(
      /rmsnorm_forward: row variant/,
    );
  });
});
