import { describe, expect, it } from 'vitest';
import { layernormBackward as gpuBackward, layernormForward as gpuForward } from '../../src/kernels/layernorm';
import type { ColumnVariant, RowVariant } from '../../src/kernels/rmsnorm';
import * as ref from '../../src/ref/layernorm';
import { TOL_REDUCTION, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { normal, uniform } from '../helpers/random';

// N = rows (tokens), C = channels. Tolerance: TOL_REDUCTION (rtol 1e-4, atol 1e-5): every output
// depends on sums over C (mean, rstd) or over N (dw, db).

describe('layernorm reference', () => {
  it('backward (dx, dw, db) matches finite differences', () => {
    const N = 3;
    const C = 7;
    checkGradients({
      inputs: [normal(N * C, 1), uniform(C, 2, 0.5, 1.5), uniform(C, 3)],
      forward: ([x, w, b]) => ref.layernormForward(x, w, b, N, C, 1e-5).out,
      backward: ([x, w], dy) => {
        const g = ref.layernormBackward(dy, x, w, N, C, 1e-5);
        return [g.dx, g.dw, g.db];
      },
    });
  });
});

const EPS = 1e-5;

// Row layouts: one invocation per row (no barriers), 4 rows × 16 lanes per workgroup, 256 lanes per row.
const ROWS: RowVariant[] = [
  { wg: 64, lanes: 1 },
  { wg: 64, lanes: 16 },
  { wg: 256, lanes: 256 },
];
// Column layouts for dw/db: 64 columns × 1 row lane, 8 columns × 8 row lanes.
const COLS: ColumnVariant[] = [
  { wg: 64, cols: 64 },
  { wg: 64, cols: 8 },
];

async function runCase(
  N: number,
  C: number,
  rows: RowVariant,
  cols: ColumnVariant,
  opts: { seed?: number; x?: Float64Array; label?: string; forwardOnly?: boolean } = {},
): Promise<void> {
  const c = await gpu();
  const seed = opts.seed ?? 0;
  const x = opts.x ?? normal(N * C, 10 + seed);
  const w = uniform(C, 11 + seed, -2, 2);
  const bias = uniform(C, 12 + seed);
  const dyv = normal(N * C, 13 + seed);
  const dw0 = uniform(C, 14 + seed);
  const db0 = uniform(C, 15 + seed);
  const want = ref.layernormForward(x, w, bias, N, C, EPS);
  const grad = ref.layernormBackward(dyv, x, w, N, C, EPS);

  const out = c.tensor([N, C]);
  const mean = c.tensor([N]);
  const rstd = c.tensor([N]);
  const dx = c.tensor([N, C]);
  const dw = upload(c, dw0, [C]);
  const db = upload(c, db0, [C]);
  const xt = upload(c, x, [N, C]);
  const wt = upload(c, w, [C]);
  await c.run((b) => {
    gpuForward(b, out, mean, rstd, xt, wt, upload(c, bias, [C]), N, C, EPS, rows);
    gpuBackward(b, dx, dw, db, upload(c, dyv, [N, C]), xt, wt, mean, rstd, N, C, rows, cols);
  });
  const tag = `N=${N} C=${C} ${JSON.stringify(rows)} ${JSON.stringify(cols)} ${opts.label ?? ''}`;
  expectClose(await download(c, out), want.out, TOL_REDUCTION, `layernorm_forward out ${tag}`);
  expectClose(await download(c, mean), want.mean, TOL_REDUCTION, `layernorm_forward mean ${tag}`);
  expectClose(await download(c, rstd), want.rstd, TOL_REDUCTION, `layernorm_forward rstd ${tag}`);
  if (opts.forwardOnly) return;
  expectClose(await download(c, dx), grad.dx, TOL_REDUCTION, `layernorm_backward dx ${tag}`);
  expectClose(await download(c, dw), dw0.map((v, j) => v + grad.dw[j]), TOL_REDUCTION, `layernorm_backward_dwdb dw ${tag}`);
  expectClose(await download(c, db), db0.map((v, j) => v + grad.db[j]), TOL_REDUCTION, `layernorm_backward_dwdb db ${tag}`);
}

describe('layernorm.wgsl', () => {
  // layernorm_forward, layernorm_backward (dx, =) and layernorm_backward_dwdb (dw, db, +=) in one batch.
  for (const N of [1, 3, 33]) {
    for (const C of [1, 7, 64, 257, 1000]) {
      it(`layernorm_forward / layernorm_backward / layernorm_backward_dwdb, N=${N} C=${C}`, async () => {
        // Every shape under the default layout, then one other row and column layout per shape.
        await runCase(N, C, ROWS[0], COLS[0]);
        await runCase(N, C, ROWS[1 + ((N + C) % 2)], COLS[1], { seed: 1 });
      });
    }
  }

  it('gpt2-sized rows (N=5, C=768) and a long row (C=4096), every row layout', async () => {
    for (const rows of ROWS) {
      await runCase(5, 768, rows, COLS[1]);
      await runCase(2, 4096, rows, COLS[0]);
    }
  });

  it('constant rows give out = b exactly and a finite backward', async () => {
    const N = 3;
    const C = 257;
    // Row 0 constant 3.7, row 1 constant 1000.5, row 2 ordinary.
    const x = new Float64Array(N * C);
    x.fill(Math.fround(3.7), 0, C);
    x.fill(1000.5, C, 2 * C);
    x.set(normal(C, 20), 2 * C);
    for (const rows of ROWS) await runCase(N, C, rows, COLS[1], { x, label: 'constant rows' });
    const c = await gpu();
    const out = c.tensor([N, C]);
    const mean = c.tensor([N]);
    const rstd = c.tensor([N]);
    const bias = uniform(C, 21);
    await c.run((b) => gpuForward(b, out, mean, rstd, upload(c, x, [N, C]), upload(c, uniform(C, 22), [C]), upload(c, bias, [C]), N, C));
    const got = await download(c, out);
    // bias is already f32-exact, so equality (not closeness) is the claim.
    expect(Array.from(got.subarray(0, 2 * C))).toEqual([...bias, ...bias]);
  });

  it('rows with a large offset keep their variance (forward at 1e4, forward and backward at 100)', async () => {
    const N = 3;
    const C = 1000;
    // The saved mean is an f32, so backward sees x̂ shifted by up to ulp(mean)·rstd (≈5e-4 at a mean
    // of 1e4, as in PyTorch's f32 LayerNorm); forward subtracts the row's first element before
    // summing and stays exact. Backward is held to TOL_REDUCTION at an offset of 100.
    const far = normal(N * C, 30).map((v) => Math.fround(1e4 + v));
    await runCase(N, C, ROWS[0], COLS[0], { x: far, label: 'offset 1e4', forwardOnly: true });
    await runCase(N, C, ROWS[2], COLS[1], { x: far, label: 'offset 1e4', forwardOnly: true });
    const near = normal(N * C, 31).map((v) => Math.fround(100 + v));
    await runCase(N, C, ROWS[0], COLS[0], { x: near, label: 'offset 100' });
    await runCase(N, C, ROWS[1], COLS[1], { x: near, label: 'offset 100' });
  });

  it('rejects wrong shapes and bad layouts naming the kernel and tensor', async () => {
    const c = await gpu();
    const b = c.batch();
    const t = (n: number) => c.tensor([n]);
    expect(() => gpuForward(b, t(8), t(2), t(2), t(8), t(4), t(5), 2, 4)).toThrow(/layernorm_forward: b has 5 elements/);
    expect(() => gpuBackward(b, t(8), t(4), t(4), t(8), t(8), t(4), t(3), t(2), 2, 4)).toThrow(
      /layernorm_backward: mean has 3 elements/,
    );
    expect(() => gpuBackward(b, t(8), t(4), t(4), t(8), t(8), t(4), t(2), t(2), 2, 4, undefined, { wg: 64, cols: 7 })).toThrow(
      /layernorm_backward_dwdb: column variant/,
    );
  });
});
