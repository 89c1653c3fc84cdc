import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu';
import {
  nf4BitsPerParam,
  nf4MatmulBackwardInput,
  nf4MatmulForward,
  nf4MatmulVariantFor,
  nf4WeightBytes,
  releaseNf4Weight,
  uploadNf4Weight,
  type Nf4MatmulVariant,
  type Nf4Weight,
} from '../../src/kernels/nf4_matmul';
import { uploadBytes } from '../../src/kernels/nf4';
import { quantizeNf4, type Nf4Tensor } from '../../src/quant/nf4';
import * as ref from '../../src/ref/nf4';
import { expectClose } from '../helpers/compare';
import { download, gpu, upload } from '../helpers/gpu';
import { normal } from '../helpers/random';

// nf4_matmul_forward and nf4_matmul_backward_input against float64: W is dequantized with the
// reference (src/ref/nf4.ts), then multiplied in float64. Tolerance: rtol 1e-4, plus an atol of
// 1e-6 · max_j Σ_k |a_k·w_kj| for outputs that cancel to near zero (f32 accumulation over k terms).

/** Test weight [out, in]: normal values with an all-zero block, a negative-only block and an outlier. */
function weight(out: number, inF: number, blocksize: number, seed: number): Float32Array {
  const n = out * inF;
  const w = Float32Array.from(normal(n, seed, 0.2));
  const block = (b: number, f: (i: number, k: number) => number) => {
    for (let i = b * blocksize, k = 0; i < Math.min(n, (b + 1) * blocksize); i++, k++) w[i] = f(i, k);
  };
  block(1, () => 0);
  block(2, (i) => -Math.abs(w[i]));
  block(3, (i, k) => (k === 5 ? 50 * (w[i] || 1) : w[i]));
  return w;
}

/** The reference's quantization as an Nf4Tensor (so the kernel test does not depend on src/quant). */
function refQuantized(w: Float32Array, out: number, inF: number, blocksize: number, double: boolean): { q: Nf4Tensor; W: Float32Array } {
  if (double) {
    const d = ref.quantizeNf4Double(w, blocksize);
    const q: Nf4Tensor = {
      shape: [out, inF],
      blocksize,
      packed: d.packed,
      absmax: null,
      nested: { qabsmax: d.qabsmax, absmax2: d.absmax2, code8: d.code8, offset: d.offset, blocksize: d.nestedBlocksize },
    };
    return { q, W: ref.dequantizeNf4Double(d) };
  }
  const s = ref.quantizeNf4(w, blocksize);
  return { q: { shape: [out, inF], blocksize, packed: s.packed, absmax: s.absmax, nested: null }, W: ref.dequantizeNf4(s.packed, s.absmax, w.length, blocksize) };
}

/** y[N, out] = x[N, in] · Wᵀ in float64, and the magnitude bound Σ|x||w| of the largest output. */
function forward64(x: ArrayLike<number>, W: Float32Array, N: number, inF: number, out: number): { y: Float64Array; mag: number } {
  const y = new Float64Array(N * out);
  let mag = 0;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < out; o++) {
      let s = 0;
      let m = 0;
      for (let k = 0; k < inF; k++) {
        s += x[n * inF + k] * W[o * inF + k];
        m += Math.abs(x[n * inF + k] * W[o * inF + k]);
      }
      y[n * out + o] = s;
      mag = Math.max(mag, m);
    }
  }
  return { y, mag };
}

/** dx[N, in] = dy[N, out] · W in float64. */
function backward64(dy: ArrayLike<number>, W: Float32Array, N: number, inF: number, out: number): { dx: Float64Array; mag: number } {
  const dx = new Float64Array(N * inF);
  let mag = 0;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < inF; k++) {
      let s = 0;
      let m = 0;
      for (let o = 0; o < out; o++) {
        s += dy[n * out + o] * W[o * inF + k];
        m += Math.abs(dy[n * out + o] * W[o * inF + k]);
      }
      dx[n * inF + k] = s;
      mag = Math.max(mag, m);
    }
  }
  return { dx, mag };
}

const tol = (mag: number) => ({ rtol: 1e-4, atol: 1e-6 * mag });

async function runBoth(
  c: GpuContext,
  variant: Nf4MatmulVariant,
  N: number,
  inF: number,
  out: number,
  blocksize: number,
  double: boolean,
  seed: number,
): Promise<void> {
  const { q, W } = refQuantized(weight(out, inF, blocksize, seed), out, inF, blocksize, double);
  const w = uploadNf4Weight(c, q, { label: `W[${out},${inF}]` });
  const xh = normal(N * inF, seed + 1);
  const dyh = normal(N * out, seed + 2);
  const x = upload(c, xh, [N, inF], 'x');
  const dy = upload(c, dyh, [N, out], 'dy');
  const y = c.tensor([N, out], { label: 'y' });
  const dx = c.tensor([N, inF], { label: 'dx' });
  await c.run((b) => {
    nf4MatmulForward(b, y, x, w, N, { variant });
    nf4MatmulBackwardInput(b, dx, dy, w, N, { variant });
  });
  const f = forward64(xh, W, N, inF, out);
  expectClose(await download(c, y), f.y, tol(f.mag), `${variant} forward`);
  const g = backward64(dyh, W, N, inF, out);
  expectClose(await download(c, dx), g.dx, tol(g.mag), `${variant} backward input`);
  releaseNf4Weight(c, w);
  for (const t of [x, dy, y, dx]) c.release(t);
}

// Both shaders: nf4_matmul.wgsl (nf4_matmul_forward, nf4_matmul_backward_input) everywhere, and
// nf4_matmul_quad.wgsl (nf4_matmul_quad_forward, nf4_matmul_quad_backward_input) where the adapter has
// subgroups and in, blocksize are multiples of 8. No adapter without subgroups skips the quad cases
// silently: they fail, saying so.
const VARIANTS: Nf4MatmulVariant[] = ['plain', 'quad'];
const quadCovers = (inF: number, bs: number): boolean => inF % 8 === 0 && bs % 8 === 0;

describe('nf4_matmul.wgsl and nf4_matmul_quad.wgsl', () => {
  // (N, in, out): tiny, in not a multiple of 8 or of the block (blocks straddle rows), N and out
  // not multiples of the tile, out·in not a multiple of the block size.
  const shapes: [number, number, number][] = [
    [1, 64, 3],
    [5, 100, 7],
    [33, 130, 65],
    [4, 64, 257],
    [70, 136, 41], // quad: N past a 32-row quad and a 128-row workgroup, in = 17 words
    [33, 64, 65],
  ];
  for (const variant of VARIANTS) {
    for (const double of [false, true]) {
      for (const [N, inF, out] of shapes) {
        if (variant === 'quad' && !quadCovers(inF, 64)) continue;
        it(`${variant}: forward and backward-input match float64, (N, in, out) = (${N}, ${inF}, ${out}), ${double ? 'double' : 'single'} quant`, async () => {
          await runBoth(await gpu(), variant, N, inF, out, 64, double, N * 1000 + inF + out);
        });
      }
    }
  }

  // Other block sizes: 32 and 128 (bitsandbytes), 36 (blocks not aligned to the 8-element words),
  // 8 (the smallest the kernels accept); and more than 256 blocks (several nested blocks).
  const more: [number, number, number, number, boolean][] = [
    [6, 96, 20, 32, true],
    [3, 200, 9, 128, false],
    [7, 120, 13, 36, true],
    [2, 24, 5, 8, false],
    [9, 130, 300, 64, true],
    [40, 128, 300, 64, true],
    [35, 40, 12, 8, true],
  ];
  for (const variant of VARIANTS) {
    for (const [N, inF, out, bs, double] of more) {
      if (variant === 'quad' && !quadCovers(inF, bs)) continue;
      it(`${variant}: (N, in, out) = (${N}, ${inF}, ${out}), blocksize ${bs}, ${double ? 'double' : 'single'} quant`, async () => {
        await runBoth(await gpu(), variant, N, inF, out, bs, double, 7 * N + inF + out + bs);
      });
    }
  }

  it('chooses the quad shader for large N on adapters with subgroups, the plain one otherwise', async () => {
    const c = await gpu();
    expect(c.features.has('subgroups'), 'this adapter lacks subgroups: the quad variant is untested').toBe(true);
    const { q } = refQuantized(weight(10, 64, 64, 1), 10, 64, 64, true);
    const w = uploadNf4Weight(c, q);
    expect(nf4MatmulVariantFor(c, w, 64)).toBe('quad');
    expect(nf4MatmulVariantFor(c, w, 8)).toBe('plain');
    const { q: q2 } = refQuantized(weight(10, 100, 64, 1), 10, 100, 64, true);
    const w2 = uploadNf4Weight(c, q2);
    expect(nf4MatmulVariantFor(c, w2, 64)).toBe('plain');
    expect(() => nf4MatmulForward(c.batch(), c.tensor([4, 10]), c.tensor([4, 100]), w2, 4, { variant: 'quad' })).toThrow(/variant 'quad' needs in % 8 == 0/);
  });

  it('accumulate adds to the output (y += x·Wᵀ, dx += dy·W)', async () => {
    const c = await gpu();
    const [N, inF, out] = [5, 72, 11];
    const { q, W } = refQuantized(weight(out, inF, 64, 3), out, inF, 64, true);
    const w = uploadNf4Weight(c, q);
    const xh = normal(N * inF, 4);
    const dyh = normal(N * out, 5);
    const y0 = normal(N * out, 6);
    const dx0 = normal(N * inF, 7);
    const y = upload(c, y0, [N, out]);
    const dx = upload(c, dx0, [N, inF]);
    await c.run((b) => {
      nf4MatmulForward(b, y, upload(c, xh, [N, inF]), w, N, { accumulate: true });
      nf4MatmulBackwardInput(b, dx, upload(c, dyh, [N, out]), w, N, { accumulate: true });
    });
    const f = forward64(xh, W, N, inF, out);
    expectClose(await download(c, y), f.y.map((v, i) => v + y0[i]), tol(f.mag + 4), 'forward +=');
    const g = backward64(dyh, W, N, inF, out);
    expectClose(await download(c, dx), g.dx.map((v, i) => v + dx0[i]), tol(g.mag + 4), 'backward +=');
  });

  it('a shared 8-bit map serves every layer', async () => {
    const c = await gpu();
    const code8 = upload(c, ref.createDynamicMap(), [256], 'shared code8');
    const [N, inF, out] = [3, 64, 10];
    const { q, W } = refQuantized(weight(out, inF, 64, 8), out, inF, 64, true);
    const w = uploadNf4Weight(c, q, { sharedCode8: code8 });
    expect(w.double?.code8).toBe(code8);
    const xh = normal(N * inF, 9);
    const y = c.tensor([N, out]);
    await c.run((b) => nf4MatmulForward(b, y, upload(c, xh, [N, inF]), w, N));
    const f = forward64(xh, W, N, inF, out);
    expectClose(await download(c, y), f.y, tol(f.mag), 'forward with shared code8');
  });

  it('rejects wrong shapes and dtypes naming the kernel and the tensor', async () => {
    const c = await gpu();
    const { q } = refQuantized(weight(10, 64, 64, 1), 10, 64, 64, true);
    const w = uploadNf4Weight(c, q, { label: 'q_proj' });
    const b = c.batch();
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 63]), w, 3)).toThrow(/nf4_matmul_forward: x has 189 elements/);
    expect(() => nf4MatmulForward(b, c.tensor([3, 9]), c.tensor([3, 64]), w, 3)).toThrow(/nf4_matmul_forward: y has 27 elements/);
    expect(() => nf4MatmulBackwardInput(b, c.tensor([3, 64]), c.tensor([3, 11]), w, 3)).toThrow(/nf4_matmul_backward_input: dy has 33/);
    expect(() => nf4MatmulBackwardInput(b, c.tensor([2, 64]), c.tensor([3, 10]), w, 3)).toThrow(/nf4_matmul_backward_input: dx has 128/);
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64], { dtype: 'u32' }), w, 3)).toThrow(/x must be f32/);
    const bad = (over: Partial<Nf4Weight>): Nf4Weight => ({ ...w, ...over });
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64]), bad({ codes: uploadBytes(c, new Uint8Array(319)) }), 3)).toThrow(
      /nf4_matmul_forward: q_proj codes has 319 elements/,
    );
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64]), bad({ codes: c.tensor([320]) }), 3)).toThrow(/q_proj codes must be a 'u8x4'/);
    expect(() =>
      nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64]), bad({ double: { ...w.double!, qabsmax: uploadBytes(c, new Uint8Array(9)) } }), 3),
    ).toThrow(/q_proj qabsmax has 9 elements/);
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64]), bad({ double: { ...w.double!, code8: c.tensor([255]) } }), 3)).toThrow(
      /q_proj code8 has 255 elements/,
    );
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64]), bad({ double: { ...w.double!, offset: NaN } }), 3)).toThrow(/offset must be finite/);
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64]), bad({ blocksize: 4 }), 3)).toThrow(/blocksize must be an integer ≥ 8/);
    expect(() => nf4MatmulForward(b, c.tensor([3, 10]), c.tensor([3, 64]), bad({ double: null }), 3)).toThrow(/neither absmax nor/);
  });
});

describe('NF4 memory: bits per parameter from the GPU buffers', () => {
  it('an 896×4864 weight (Qwen2.5-0.5B up_proj shape): 4.5 single, ≈4.127 double-quantized', async () => {
    const c = await gpu();
    const [out, inF] = [4864, 896];
    const w = Float32Array.from(normal(out * inF, 11, 0.02));
    const results: Record<string, number> = {};
    for (const double of [false, true]) {
      const before = c.memory.report().liveByRole.weights;
      const gw = uploadNf4Weight(c, quantizeNf4(w, [out, inF], { doubleQuant: double }), { label: 'up_proj' });
      // The accountant's live bytes (the real buffer sizes) agree with the weight's own count.
      expect(c.memory.report().liveByRole.weights - before).toBe(nf4WeightBytes(gw));
      results[double ? 'double' : 'single'] = nf4BitsPerParam(gw);
      if (double) results.doubleSharedCode8 = nf4BitsPerParam(gw, { countCode8: false });
      releaseNf4Weight(c, gw);
    }
    console.log(
      `NF4 bits/param (896×4864, GPU buffers): single ${results.single.toFixed(4)}, ` +
        `double ${results.double.toFixed(4)} (own 8-bit map), ${results.doubleSharedCode8.toFixed(4)} (map shared by all layers)`,
    );
    // Codes 2,179,072 B + absmax 68,096·4 B.
    expect(results.single).toBeCloseTo(4.5, 6);
    // Codes 2,179,072 B + qabsmax 68,096 B + absmax2 266·4 B (+ code8 1,024 B when not shared).
    expect(results.doubleSharedCode8).toBeCloseTo((8 * (2179072 + 68096 + 266 * 4)) / (896 * 4864), 9);
    expect(results.double).toBeCloseTo((8 * (2179072 + 68096 + 266 * 4 + 1024)) / (896 * 4864), 9);
    expect(results.doubleSharedCode8).toBeCloseTo(4.127, 3);
  });
});
