import { describe, expect, it } from 'vitest';
import {
  ropeBackward as gpuBackward,
  ropeForward as gpuForward,
  ropeInvFreq as hostInvFreq,
  ropeInvFreqTensor,
  type Llama3RopeScaling,
} from '../../src/kernels/rope';
import * as ref from '../../src/ref/rope';
import { expectClose, type Tolerance } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { uniform } from '../helpers/random';

// Llama 3.2 1B's rope settings (head_dim 64).
const LLAMA32: Llama3RopeScaling = {
  factor: 32,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 8192,
};

/**
 * GPU (f32) vs float64 reference, inputs in [−1, 1]. The kernel forms angle = f32(pos)·f32(inv_freq)
 * as HF does, so the angle carries a relative error of ≲ 2^-24 from rounding inv_freq plus ≲ 2^-24
 * from the product: ≲ 1.2e-7·pos rad (≈ 2.5e-4 rad at position 2048). The output error is that times
 * the pair's magnitude, plus a few f32 ulps from cos/sin and the rotation (measured ~1.6e-7 at small
 * positions, ~1e-4 at 2040):
 *   atol = 1e-6 + 1.2e-7·maxPos,  rtol = 1e-5.
 */
function ropeTolerance(maxPos: number): Tolerance {
  return { rtol: 1e-5, atol: 1e-6 + 1.2e-7 * maxPos };
}

describe('rope reference', () => {
  const shape = { batch: 2, seqLen: 3, heads: 2, headDim: 6, posOffset: 5 };
  const n = 2 * 3 * 2 * 6;
  const invFreq = ref.ropeInvFreq(6, 10000);

  it('backward matches finite differences', () => {
    checkGradients({
      inputs: [uniform(n, 1)],
      forward: ([x]) => ref.ropeForward(x, invFreq, shape),
      backward: (_x, dy) => [ref.ropeBackward(dy, invFreq, shape)],
    });
  });

  it('follows rotate_half by hand: D=4, pos=1, θ=100', () => {
    // inv_freq = [1, 0.1]; pair (x0, x2) turns by 1 rad, pair (x1, x3) by 0.1 rad.
    const y = ref.ropeForward(Float64Array.of(1, 2, 3, 4), ref.ropeInvFreq(4, 100), {
      batch: 1,
      seqLen: 1,
      heads: 1,
      headDim: 4,
      posOffset: 1,
    });
    const want = [
      1 * Math.cos(1) - 3 * Math.sin(1),
      2 * Math.cos(0.1) - 4 * Math.sin(0.1),
      3 * Math.cos(1) + 1 * Math.sin(1),
      4 * Math.cos(0.1) + 2 * Math.sin(0.1),
    ];
    expectClose(y, want, { rtol: 1e-15, atol: 1e-15 });
  });

  it('scores depend only on the relative position: <R(m)q, R(n)k> = <R(m−n)q, k>', () => {
    const D = 8;
    const f = ref.ropeInvFreq(D, 10000);
    const q = uniform(D, 2);
    const k = uniform(D, 3);
    const at = (x: Float64Array, pos: number) => ref.ropeForward(x, f, { batch: 1, seqLen: 1, heads: 1, headDim: D, posOffset: pos });
    const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i], 0);
    expect(dot(at(q, 37), at(k, 30))).toBeCloseTo(dot(at(q, 7), k), 12);
  });

  it('llama3 scaling keeps high frequencies, slows low ones by factor, blends between', () => {
    const D = 64;
    const base = ref.ropeInvFreq(D, 500000);
    const scaled = ref.llama3InvFreq(base, LLAMA32);
    const lowWl = 8192 / 1;
    const highWl = 8192 / 4;
    let kept = 0;
    let slowed = 0;
    let blended = 0;
    base.forEach((f, i) => {
      const wl = (2 * Math.PI) / f;
      if (wl < highWl) {
        expect(scaled[i]).toBe(f);
        kept++;
      } else if (wl > lowWl) {
        expect(scaled[i]).toBeCloseTo(f / 32, 15);
        slowed++;
      } else {
        expect(scaled[i]).toBeGreaterThan(f / 32);
        expect(scaled[i]).toBeLessThan(f);
        blended++;
      }
    });
    // All three bands occur for this config.
    expect([kept > 0, slowed > 0, blended > 0]).toEqual([true, true, true]);
    // The blend is continuous at both band edges (frequencies placed exactly on the edges).
    const edges = ref.llama3InvFreq(Float64Array.of((2 * Math.PI) / lowWl, (2 * Math.PI) / highWl), LLAMA32);
    expect(edges[0]).toBeCloseTo((2 * Math.PI) / lowWl / 32, 15);
    expect(edges[1]).toBeCloseTo((2 * Math.PI) / highWl, 15);
    // One blended entry by hand: sm = (8192/wl − 1)/(4 − 1).
    const i = base.findIndex((f) => {
      const wl = (2 * Math.PI) / f;
      return wl >= highWl && wl <= lowWl;
    });
    const sm = (8192 / ((2 * Math.PI) / base[i]) - 1) / 3;
    expect(scaled[i]).toBeCloseTo((1 - sm) * (base[i] / 32) + sm * base[i], 15);
  });

  it('the host inv_freq table equals the reference rounded to f32', () => {
    expectClose(hostInvFreq(64, 500000), ref.ropeInvFreq(64, 500000), { rtol: 6e-8, atol: 0 });
    expectClose(hostInvFreq(64, 500000, LLAMA32), ref.llama3InvFreq(ref.ropeInvFreq(64, 500000), LLAMA32), { rtol: 6e-8, atol: 0 });
    expect(() => hostInvFreq(5, 10000)).toThrow(/even/);
  });
});

describe('rope.wgsl', () => {
  // B, T, NH, D, position offset, θ, llama3 scaling. Pair counts 1 (size-1 edge), and around / past
  // the 256-invocation workgroup; positions up to 2048 for the angle-precision bound.
  const cases: [number, number, number, number, number, number, Llama3RopeScaling | undefined][] = [
    [1, 1, 1, 2, 0, 10000, undefined],
    [1, 5, 3, 6, 0, 10000, undefined],
    [2, 17, 4, 8, 7, 10000, undefined],
    [2, 33, 2, 16, 0, 1e6, undefined],
    [1, 8, 4, 64, 2040, 500000, LLAMA32],
    [2, 3, 5, 64, 1000, 10000, undefined],
  ];
  for (const [B, T, NH, D, posOffset, theta, scaling] of cases) {
    const sizes = { batch: B, seqLen: T, heads: NH, headDim: D, posOffset };
    const n = B * T * NH * D;
    const name = `B=${B} T=${T} NH=${NH} D=${D} pos0=${posOffset} θ=${theta}${scaling ? ' llama3' : ''}`;
    const refInvFreq = scaling ? ref.llama3InvFreq(ref.ropeInvFreq(D, theta), scaling) : ref.ropeInvFreq(D, theta);
    const tol = ropeTolerance(posOffset + T - 1);

    it(`rope_forward matches the reference, ${name}`, async () => {
      const c = await gpu();
      const x = uniform(n, 10 + D);
      const xt = upload(c, x, [B, T, NH, D]);
      const table = ropeInvFreqTensor(c, hostInvFreq(D, theta, scaling));
      await c.run((batch) => gpuForward(batch, xt, table, sizes));
      expectClose(await download(c, xt), ref.ropeForward(x, refInvFreq, sizes), tol, 'rope_forward');
    });

    it(`rope_backward matches the reference, ${name}`, async () => {
      const c = await gpu();
      const dy = uniform(n, 20 + D);
      const d = upload(c, dy, [B, T, NH, D]);
      const table = ropeInvFreqTensor(c, hostInvFreq(D, theta, scaling));
      await c.run((batch) => gpuBackward(batch, d, table, sizes));
      expectClose(await download(c, d), ref.ropeBackward(dy, refInvFreq, sizes), tol, 'rope_backward');
    });
  }

  it('rope_backward undoes rope_forward', async () => {
    const c = await gpu();
    const sizes = { batch: 2, seqLen: 9, heads: 3, headDim: 8, posOffset: 3 };
    const x = uniform(2 * 9 * 3 * 8, 30);
    const xt = upload(c, x, [2, 9, 3, 8]);
    const table = ropeInvFreqTensor(c, hostInvFreq(8, 10000));
    await c.run((batch) => {
      gpuForward(batch, xt, table, sizes);
      gpuBackward(batch, xt, table, sizes);
    });
    expectClose(await download(c, xt), x, { rtol: 1e-5, atol: 1e-6 }, 'rope_forward then rope_backward');
  });

  it('rejects wrong shapes naming the kernel and tensor', async () => {
    const c = await gpu();
    const batch = c.batch();
    const table = ropeInvFreqTensor(c, hostInvFreq(8, 10000));
    const sizes = { batch: 1, seqLen: 2, heads: 2, headDim: 8 };
    expect(() => gpuForward(batch, c.tensor([1, 2, 2, 7]), table, sizes)).toThrow(/rope_forward: x has 28 elements/);
    expect(() => gpuBackward(batch, c.tensor([1, 2, 2, 8]), c.tensor([3]), sizes)).toThrow(/rope_backward: invFreq has 3 elements/);
    expect(() => gpuForward(batch, c.tensor([6]), c.tensor([1]), { batch: 1, seqLen: 1, heads: 2, headDim: 3 })).toThrow(
      /rope_forward: head dim 3 must be even/,
    );
  });
});
