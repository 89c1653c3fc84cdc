import { describe, expect, it } from 'vitest';
import {
  loraBackward,
  loraBackwardDa,
  loraBackwardDb,
  loraBackwardDu,
  loraBackwardDx,
  loraDimsOf,
  loraForward,
  loraForwardDown,
  loraForwardUp,
  type LoraDims,
} from '../../src/kernels/lora';
import * as ref from '../../src/ref/lora';
import { TOL_REDUCTION, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { uniform } from '../helpers/random';

// Tolerance: these are matmuls with f32 accumulation → TOL_REDUCTION (rtol 1e-4, atol 1e-5), with the
// absolute part scaled per element by the magnitude of the summed terms, mag = Σ|terms| (the same
// products computed on absolute values), because f32 rounding grows with Σ|terms| and not with the
// (possibly cancelled) result: |gpu − ref| ≤ 1e-4·|ref| + 1e-5·max(1, mag). Inputs uniform in [−1, 1).

const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);
const abs = (a: Float64Array) => a.map(Math.abs);

function expectMatmulClose(actual: Float64Array, expected: Float64Array, mag: Float64Array, label: string): void {
  const w = mag.map((m) => Math.max(1, m));
  expectClose(actual.map((v, i) => v / w[i]), expected.map((v, i) => v / w[i]), TOL_REDUCTION, label);
}

describe('lora reference', () => {
  const d = { n: 3, inFeatures: 5, outFeatures: 4, rank: 2 };
  const s = 1.7;
  it('backward matches finite differences for x, A and B', () => {
    checkGradients({
      inputs: [uniform(d.n * d.inFeatures, 1), uniform(d.rank * d.inFeatures, 2), uniform(d.outFeatures * d.rank, 3)],
      forward: ([x, a, b]) => ref.loraForward(x, a, b, d, s).y,
      backward: ([x, a, b], dy) => {
        const { u } = ref.loraForward(x, a, b, d, s);
        const g = ref.loraBackward(dy, x, a, b, u, d, s);
        return [g.dx, g.dA, g.dB];
      },
    });
  });

  it('du is ∂L/∂u (finite differences through the up projection)', () => {
    const x = uniform(d.n * d.inFeatures, 4);
    const a = uniform(d.rank * d.inFeatures, 5);
    const b = uniform(d.outFeatures * d.rank, 6);
    const u0 = ref.loraForward(x, a, b, d, s).u;
    // y as a function of u alone: y = s · u Bᵀ.
    const one = { ...d, inFeatures: d.rank };
    const eye = new Float64Array(d.rank * d.rank).map((_, i) => (i % (d.rank + 1) === 0 ? 1 : 0));
    checkGradients({
      inputs: [u0],
      forward: ([u]) => ref.loraForward(u, eye, b, one, s).y,
      backward: (_i, dy) => [ref.loraBackward(dy, x, a, b, u0, d, s).du],
    });
  });

  it('B = 0 makes the branch an exact no-op (PEFT default init)', () => {
    const { y } = ref.loraForward(uniform(6, 7), uniform(6, 8), new Float64Array(4), { n: 2, inFeatures: 3, outFeatures: 2, rank: 2 }, 2);
    expect([...y]).toEqual([0, 0, 0, 0]);
  });
});

describe('lora.wgsl', () => {
  const shapes: LoraDims[] = [];
  for (const n of [1, 5, 33])
    for (const inFeatures of [7, 64, 100])
      for (const outFeatures of [3, 64, 129]) for (const rank of [1, 4, 8]) shapes.push({ n, inFeatures, outFeatures, rank });
  // Large-ish: rank 64, in a few thousand (reduction length), rows past one 32-row tile.
  shapes.push({ n: 3, inFeatures: 1030, outFeatures: 17, rank: 64 }, { n: 70, inFeatures: 40, outFeatures: 260, rank: 16 });

  async function check(d: LoraDims, seed: number) {
    const c = await gpu();
    const s = 16 / d.rank; // lora_alpha 16
    const x = uniform(d.n * d.inFeatures, seed);
    const a = uniform(d.rank * d.inFeatures, seed + 1);
    const b = uniform(d.outFeatures * d.rank, seed + 2);
    const yBase = uniform(d.n * d.outFeatures, seed + 3);
    const dy = uniform(d.n * d.outFeatures, seed + 4);
    const dA0 = uniform(d.rank * d.inFeatures, seed + 5);
    const dB0 = uniform(d.outFeatures * d.rank, seed + 6);
    const dx0 = uniform(d.n * d.inFeatures, seed + 7);
    const want = ref.loraForward(x, a, b, d, s);
    const g = ref.loraBackward(dy, x, a, b, want.u, d, s);
    const magF = ref.loraForward(abs(x), abs(a), abs(b), d, s);
    const magB = ref.loraBackward(abs(dy), abs(x), abs(a), abs(b), magF.u, d, s);

    const X = upload(c, x, [d.n, d.inFeatures], 'x');
    const A = upload(c, a, [d.rank, d.inFeatures], 'A');
    const B = upload(c, b, [d.outFeatures, d.rank], 'B');
    const Y = upload(c, yBase, [d.n, d.outFeatures], 'y');
    const U = c.tensor([d.n, d.rank], { label: 'u' });
    const DY = upload(c, dy, [d.n, d.outFeatures], 'dy');
    const DU = c.tensor([d.n, d.rank], { label: 'du' });
    const DA = upload(c, dA0, [d.rank, d.inFeatures], 'dA');
    const DB = upload(c, dB0, [d.outFeatures, d.rank], 'dB');
    const DX = upload(c, dx0, [d.n, d.inFeatures], 'dx');
    await c.run((batch) => {
      loraForwardDown(batch, U, X, A, d);
      loraForwardUp(batch, Y, U, B, d, s);
      loraBackwardDu(batch, DU, DY, B, d, s);
      loraBackwardDb(batch, DB, DY, U, d, s);
      loraBackwardDa(batch, DA, DU, X, d);
      loraBackwardDx(batch, DX, DU, A, d);
    });
    const label = `N=${d.n} in=${d.inFeatures} out=${d.outFeatures} r=${d.rank}`;
    expectMatmulClose(await download(c, U), want.u, magF.u, `lora_forward_down u ${label}`);
    expectMatmulClose(await download(c, Y), add(yBase, want.y), magF.y, `lora_forward_up y ${label}`);
    expectMatmulClose(await download(c, DU), g.du, magB.du, `lora_backward_du ${label}`);
    expectMatmulClose(await download(c, DB), add(dB0, g.dB), magB.dB, `lora_backward_db ${label}`);
    expectMatmulClose(await download(c, DA), add(dA0, g.dA), magB.dA, `lora_backward_da ${label}`);
    expectMatmulClose(await download(c, DX), add(dx0, g.dx), magB.dx, `lora_backward_dx ${label}`);
    for (const t of [X, A, B, Y, U, DY, DU, DA, DB, DX]) c.release(t);
  }

  shapes.forEach((d, i) => {
    it(`lora_forward_down/up and lora_backward_du/db/da/dx match the reference, N=${d.n} in=${d.inFeatures} out=${d.outFeatures} r=${d.rank}`, async () => {
      await check(d, 10 * i + 1);
    });
  });

  it('loraForward / loraBackward record the same passes (dx optional) and accumulate over two calls', async () => {
    const c = await gpu();
    const d = { n: 5, inFeatures: 9, outFeatures: 6, rank: 3 };
    const s = 0.5;
    const x = uniform(45, 1);
    const a = uniform(27, 2);
    const b = uniform(18, 3);
    const dy = uniform(30, 4);
    const X = upload(c, x, [5, 9]);
    const A = upload(c, a, [3, 9]);
    const B = upload(c, b, [6, 3]);
    expect(loraDimsOf(X, A, B)).toEqual(d);
    const Y = c.tensor([5, 6]);
    const U = c.tensor([5, 3]);
    const DA = c.tensor([3, 9]);
    const DB = c.tensor([6, 3]);
    const DU = c.tensor([5, 3]);
    const DY = upload(c, dy, [5, 6]);
    await c.run((batch) => {
      loraForward(batch, Y, U, X, A, B, d, s);
      loraBackward(batch, { dA: DA, dB: DB, du: DU }, DY, X, U, A, B, d, s);
      loraBackward(batch, { dA: DA, dB: DB, du: DU }, DY, X, U, A, B, d, s);
    });
    const f = ref.loraForward(x, a, b, d, s);
    const g = ref.loraBackward(dy, x, a, b, f.u, d, s);
    expectClose(await download(c, Y), f.y, TOL_REDUCTION, 'y');
    expectClose(await download(c, DA), g.dA.map((v) => 2 * v), TOL_REDUCTION, 'dA accumulated twice');
    expectClose(await download(c, DB), g.dB.map((v) => 2 * v), TOL_REDUCTION, 'dB accumulated twice');
  });

  it('rejects wrong sizes naming the kernel and tensor', async () => {
    const c = await gpu();
    const batch = c.batch();
    const d = { n: 2, inFeatures: 3, outFeatures: 4, rank: 2 };
    expect(() => loraForwardDown(batch, c.tensor([2, 2]), c.tensor([2, 3]), c.tensor([2, 4]), d)).toThrow(/lora_forward_down: a has 8 elements/);
    expect(() => loraBackwardDb(batch, c.tensor([3, 2]), c.tensor([2, 4]), c.tensor([2, 2]), d, 1)).toThrow(/lora_backward_db: dB has 6 elements/);
    expect(() => loraForwardUp(batch, c.tensor([2, 4]), c.tensor([2, 2]), c.tensor([4, 2]), { ...d, rank: 0 }, 1)).toThrow(/lora_forward_up: rank must be/);
  });
});
