import { describe, expect, it } from 'vitest';
import {
  IGNORE_INDEX,
  STATS,
  countValidTargets,
  crossEntropyBackward as gpuBackward,
  crossEntropyForward as gpuForward,
} from '../../src/kernels/cross_entropy';
import * as ref from '../../src/ref/cross_entropy';
import { TOL_REDUCTION, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload, uploadInts } from '../helpers/gpu';
import { normal, rng, uniform } from '../helpers/random';

// Tolerance: every output goes through a reduction over V (logsumexp) in f32: TOL_REDUCTION
// (rtol 1e-4, atol 1e-5) against the float64 reference on the same f32-rounded logits.

/** Targets in [0, V) with roughly a quarter of the rows ignored (IGNORE_INDEX), as with masked prompts. */
function makeTargets(n: number, vocab: number, seed: number, ignoredShare = 0.25): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => (r() < ignoredShare ? IGNORE_INDEX : Math.floor(r() * vocab)));
}

/** Logits with spread (std 4) and, every third row, a large offset: stability needs the max subtracted. */
function makeLogits(n: number, vocab: number, seed: number): Float64Array {
  const z = normal(n * vocab, seed, 4);
  for (let row = 0; row < n; row += 3) for (let j = 0; j < vocab; j++) z[row * vocab + j] = Math.fround(z[row * vocab + j] + 100);
  return z;
}

describe('cross-entropy reference', () => {
  it('backward matches finite differences (with an ignored row and a non-unit scale)', () => {
    const [N, V] = [4, 7];
    const targets = [3, IGNORE_INDEX, 0, 6];
    const scale = 0.37;
    checkGradients({
      inputs: [uniform(N * V, 1, -3, 3)],
      // The scalar whose gradient backward computes: scale · Σ_valid loss_n.
      forward: ([z]) => Float64Array.of(scale * ref.crossEntropyForward(z, targets, N, V).sum),
      backward: ([z], dy) => [ref.crossEntropyBackward(z, targets, N, V, scale * dy[0])],
    });
  });

  it('shiftLabels gives HF causal-LM targets', () => {
    expect([...ref.shiftLabels([5, 6, 7, 8, 9, 10], 2, 3)]).toEqual([6, 7, IGNORE_INDEX, 9, 10, IGNORE_INDEX]);
  });
});

describe('cross_entropy.wgsl', () => {
  // V = 1, 7, 300, 1000 (around and above the 256 workgroup), N = 1, 5, 33; the 50k vocabulary with few rows.
  const cases: [number, number][] = [];
  for (const V of [1, 7, 300, 1000]) for (const N of [1, 5, 33]) cases.push([N, V]);
  cases.push([3, 50_000]);

  for (const [N, V] of cases) {
    it(`cross_entropy_forward, cross_entropy_mean and cross_entropy_backward match the reference, N=${N} V=${V}`, async () => {
      const c = await gpu();
      const z = makeLogits(N, V, N * 1000 + V);
      const targets = makeTargets(N, V, N + V);
      if (N > 1) targets[N - 1] = IGNORE_INDEX; // at least one ignored row
      targets[0] = V - 1; // at least one valid row, at the last column
      const want = ref.crossEntropyForward(z, targets, N, V);

      const logits = upload(c, z, [N, V], 'logits');
      const tg = uploadInts(c, targets, [N], 'targets', true);
      const losses = c.tensor([N]);
      const lse = c.tensor([N]);
      const stats = c.tensor([STATS.length]);
      await c.run((b) => gpuForward(b, losses, lse, stats, logits, tg, { hostTargets: targets }));
      expectClose(await download(c, lse), want.lse, TOL_REDUCTION, 'cross_entropy_forward lse');
      expectClose(await download(c, losses), want.losses, TOL_REDUCTION, 'cross_entropy_forward losses');
      const s = await download(c, stats);
      expect(s[STATS.count]).toBe(want.count);
      expectClose([s[STATS.mean], s[STATS.sum]], [want.mean, want.sum], TOL_REDUCTION, 'cross_entropy_mean');

      const scale = 1 / countValidTargets(targets);
      const dLogits = upload(c, uniform(N * V, 9), [N, V], 'dLogits'); // garbage: the backward assigns (=)
      await c.run((b) => gpuBackward(b, dLogits, logits, lse, tg, scale));
      expectClose(await download(c, dLogits), ref.crossEntropyBackward(z, targets, N, V, scale), TOL_REDUCTION, 'cross_entropy_backward');
    });
  }

  it('cross_entropy_backward with a gradient-accumulation scale (1/N_total)', async () => {
    const c = await gpu();
    const [N, V] = [5, 300];
    const z = makeLogits(N, V, 21);
    const targets = makeTargets(N, V, 22);
    const scale = 1 / 17; // N_valid summed over several micro-batches
    const logits = upload(c, z, [N, V]);
    const tg = uploadInts(c, targets, [N], 'targets', true);
    const lse = c.tensor([N]);
    const dLogits = c.tensor([N, V]);
    await c.run((b) => {
      gpuForward(b, c.tensor([N]), lse, null, logits, tg);
      gpuBackward(b, dLogits, logits, lse, tg, scale);
    });
    expectClose(await download(c, dLogits), ref.crossEntropyBackward(z, targets, N, V, scale), TOL_REDUCTION, 'cross_entropy_backward');
  });

  it('all rows ignored: mean is NaN with N_valid = 0, losses and gradients are 0', async () => {
    const c = await gpu();
    const [N, V] = [5, 7];
    const z = makeLogits(N, V, 31);
    const targets = new Int32Array(N).fill(IGNORE_INDEX);
    const logits = upload(c, z, [N, V]);
    const tg = uploadInts(c, targets, [N], 'targets', true);
    const [losses, lse, stats] = [c.tensor([N]), c.tensor([N]), c.tensor([STATS.length])];
    const dLogits = upload(c, uniform(N * V, 32), [N, V]);
    await c.run((b) => {
      gpuForward(b, losses, lse, stats, logits, tg);
      gpuBackward(b, dLogits, logits, lse, tg, 1);
    });
    const s = await download(c, stats);
    expect(s[STATS.mean]).toBeNaN();
    expect(s[STATS.count]).toBe(0);
    expect(Number.isNaN(ref.crossEntropyForward(z, targets, N, V).mean)).toBe(true);
    expect([...(await download(c, losses))]).toEqual(new Array(N).fill(0));
    expect([...(await download(c, dLogits))]).toEqual(new Array(N * V).fill(0));
  });

  it('a custom ignore index', async () => {
    const c = await gpu();
    const [N, V] = [5, 7];
    const z = makeLogits(N, V, 41);
    const targets = Int32Array.of(1, -1, 6, -1, 0);
    const logits = upload(c, z, [N, V]);
    const tg = uploadInts(c, targets, [N], 'targets', true);
    const [losses, lse, stats] = [c.tensor([N]), c.tensor([N]), c.tensor([STATS.length])];
    await c.run((b) => gpuForward(b, losses, lse, stats, logits, tg, { ignoreIndex: -1 }));
    const want = ref.crossEntropyForward(z, targets, N, V, -1);
    expectClose(await download(c, losses), want.losses, TOL_REDUCTION, 'cross_entropy_forward losses');
    expect((await download(c, stats))[STATS.count]).toBe(3);
  });

  it('out-of-range targets: the host throws naming the target; the GPU gives a NaN loss and reads nothing', async () => {
    const c = await gpu();
    const [N, V] = [3, 7];
    const z = makeLogits(N, V, 51);
    const targets = Int32Array.of(2, 7, -5);
    const logits = upload(c, z, [N, V]);
    const tg = uploadInts(c, targets, [N], 'targets', true);
    const [losses, lse, stats] = [c.tensor([N]), c.tensor([N]), c.tensor([STATS.length])];
    expect(() => gpuForward(c.batch(), losses, lse, stats, logits, tg, { hostTargets: targets })).toThrow(
      /cross_entropy_forward: target 7 at row 1 is outside the vocabulary \[0, 7\)/,
    );
    await c.run((b) => gpuForward(b, losses, lse, stats, logits, tg));
    const got = await download(c, losses);
    expect(Number.isNaN(got[1]) && Number.isNaN(got[2])).toBe(true);
    expect((await download(c, stats))[STATS.mean]).toBeNaN();
    const want = ref.crossEntropyForward(z, targets, N, V);
    expectClose([got[0]], [want.losses[0]], TOL_REDUCTION, 'cross_entropy_forward losses');
  });

  it('rejects wrong shapes naming the kernel and tensor', async () => {
    const c = await gpu();
    const logits = c.tensor([4, 7]);
    const tg = uploadInts(c, [1, 2, 3, 4], [4], 'targets', true);
    expect(() => gpuForward(c.batch(), c.tensor([3]), c.tensor([4]), null, logits, tg)).toThrow(/cross_entropy_forward: losses has 3 elements/);
    expect(() => gpuForward(c.batch(), c.tensor([4]), c.tensor([4]), null, logits, uploadInts(c, [1, 2, 3, 4], [4]))).toThrow(
      /cross_entropy_forward: targets must be i32/,
    );
    expect(() => gpuBackward(c.batch(), logits, logits, c.tensor([4]), tg, 1)).toThrow(/cross_entropy_backward: dLogits must be a different GPU buffer/);
  });
});
