import { describe, expect, it } from 'vitest';
import { nf4Dequantize, nf4DequantizeDouble, uploadBytes } from '../../src/kernels/nf4';
import * as ref from '../../src/ref/nf4';
import { expectClose } from '../helpers/compare';
import { download, gpu, upload } from '../helpers/gpu';
import { normal } from '../helpers/random';

// Tolerances:
//   nf4_dequantize: 0 (bit-exact; one f32 multiply of the same two f32 values as bitsandbytes).
//   nf4_dequantize_double: bit-exact up to one rounding: bitsandbytes rounds code8·absmax2 and then adds
//   the offset; WGSL may fuse that into one multiply-add. Each element must equal EXACTLY the value
//   from one of the two block scales f32(f32(code8·absmax2) + offset) or f32(code8·absmax2 + offset).
const EXACT = { rtol: 0, atol: 0 };

const nextUp = (x: number): number => {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] += x >= 0 ? 1 : -1;
  return f[0];
};

/**
 * Test weights (f32): normal values, with (by block) an all-zero block, a negative-only block, a block
 * with an outlier 100× the rest, and a block holding exact NF4 thresholds; the last block is partial
 * unless n is a multiple of the block size.
 */
function weights(n: number, blocksize: number, seed: number): Float32Array {
  const w = Float32Array.from(normal(n, seed));
  const block = (b: number, f: (i: number, k: number) => number) => {
    for (let i = b * blocksize, k = 0; i < Math.min(n, (b + 1) * blocksize); i++, k++) w[i] = f(i, k);
  };
  block(1, () => 0);
  block(2, (i) => -Math.abs(w[i]));
  block(3, (i, k) => (k === 5 ? 100 * (w[i] || 1) : w[i]));
  block(4, (i, k) => (k === 0 ? 1 : ref.NF4_THRESHOLDS[k % 15]));
  if (n > 6 * blocksize) block(Math.floor(n / blocksize), () => 0); // an all-zero (partial) last block
  return w;
}

describe('nf4 reference', () => {
  it('spec test vector: [1, −0.5, 0.25, 0] → absmax [1], bytes F2 A7, dequantised [1, −0.52507305, 0.2461123, 0]', () => {
    const q = ref.quantizeNf4([1.0, -0.5, 0.25, 0.0]);
    expect([...q.absmax]).toEqual([1]);
    expect([...q.packed]).toEqual([0xf2, 0xa7]);
    const w = ref.dequantizeNf4(q.packed, q.absmax, 4);
    expectClose(w, [1.0, -0.52507305, 0.2461123, 0.0], { rtol: 1e-7, atol: 0 }, 'dequantised');
    expect(w[1]).toBe(ref.NF4_CODE[2]);
  });

  it('code values and thresholds are the bitsandbytes f32 bit patterns', () => {
    expect(ref.NF4_CODE[0]).toBe(-1);
    expect(ref.NF4_CODE[7]).toBe(0);
    expect(ref.NF4_CODE[15]).toBe(1);
    expect(ref.NF4_CODE[10]).toBe(Math.fround(0.24611230194568634));
    // The 1st, 9th, 13th and 15th CUDA thresholds are one ulp from float32(float64(decimal)) (spec §4.2 item 7).
    expect(ref.NF4_THRESHOLDS[0]).not.toBe(Math.fround(-0.8480964004993439));
    expect(ref.NF4_THRESHOLDS[1]).toBe(Math.fround(-0.6106329262256622));
    for (let i = 0; i < 15; i++) expect(ref.NF4_THRESHOLDS[i]).toBeGreaterThan(ref.NF4_CODE[i]);
  });

  it('a value exactly on a threshold takes the lower code (strict >), one ulp above the upper', () => {
    for (let i = 0; i < 15; i++) {
      const t = ref.NF4_THRESHOLDS[i];
      expect(ref.nf4Index(t)).toBe(i);
      expect(ref.nf4Index(nextUp(t))).toBe(i + 1);
      // Through the quantizer: absmax 1, so s = x.
      const q = ref.quantizeNf4([1, t, nextUp(t), -1]);
      expect([q.packed[0] & 0xf, q.packed[1] >> 4]).toEqual([i, i + 1]);
    }
  });

  it('all-zero block: codes 0 (NaN from 0·(1/0), as the CUDA kernel), dequantised to 0, no NaN', () => {
    const q = ref.quantizeNf4([0, 0, 0, 0, 0]);
    expect([...q.absmax]).toEqual([0]);
    expect([...q.packed]).toEqual([0, 0, 0]);
    const w = ref.dequantizeNf4(q.packed, q.absmax, 5);
    expect([...w].every((v) => v === 0)).toBe(true);
  });

  it('odd n: the padding value 0.0 is quantized with the last block (code 7 unless the block is all zero)', () => {
    expect([...ref.quantizeNf4([1]).packed]).toEqual([0xf7]);
    expect([...ref.quantizeNf4([-2, 0.5, 2]).packed]).toEqual([0x0a, 0xf7]);
    expect(() => ref.quantizeNf4([1], 7)).toThrow(/even/);
  });

  it('quantization error is at most half the widest code gap times absmax', () => {
    const w = weights(1000, 64, 5);
    const q = ref.quantizeNf4(w, 64);
    const back = ref.dequantizeNf4(q.packed, q.absmax, w.length, 64);
    for (let i = 0; i < w.length; i++) expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(0.16 * q.absmax[Math.floor(i / 64)]);
  });

  it('torch f32 linspace: exact endpoints, fused multiply-add halves', () => {
    expect([...ref.linspaceF32(0, 1, 5)]).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect([...ref.linspaceF32(0.1, 1, 2)]).toEqual([Math.fround(0.1), 1]);
    const a = ref.linspaceF32(0.1, 1, 65);
    expect(a[0]).toBe(Math.fround(0.1));
    expect(a[64]).toBe(1);
  });

  it('dynamic 8-bit map: 256 sorted values, symmetric, 0 at index 127 and 1.0 at 255', () => {
    const m = ref.createDynamicMap();
    expect(m.length).toBe(256);
    for (let i = 1; i < 256; i++) expect(m[i]).toBeGreaterThan(m[i - 1]);
    expect(m[127]).toBe(0);
    expect(m[255]).toBe(1);
    expect(m[0]).toBeCloseTo(-0.99296875, 7);
    for (let i = 0; i < 127; i++) expect(m[i]).toBe(-m[254 - i]);
    // Values spot-checked against a stored bitsandbytes map (x86-64, FMA): entries where FMA matters.
    expect(m[20]).toBe(Math.fround(-0.7117187976837158));
    expect(m[236]).toBe(Math.fround(0.7398437261581421));
    expect(m[128]).toBe(Math.fround(5.500000384017767e-7));
    // Without FMA the last bit of some entries changes (e.g. index 20).
    const noFma = ref.createDynamicMap(true, 7, 8, false);
    expect(noFma[20]).toBe(Math.fround(-0.711718738079071));
    expect(noFma[20]).not.toBe(m[20]);
  });

  it('8-bit code search: code values map to themselves; out-of-range and NaN clamp to the ends', () => {
    const m = ref.createDynamicMap();
    for (let k = 0; k < 256; k++) expect(ref.quantize8Index(m, m[k])).toBe(k);
    expect(ref.quantize8Index(m, 1.5)).toBe(255);
    expect(ref.quantize8Index(m, -1.5)).toBe(0);
    expect(ref.quantize8Index(m, NaN)).toBe(0);
    // Midpoint rounding between two neighbours.
    const mid = Math.fround((m[200] + m[201]) * 0.5);
    expect(ref.quantize8Index(m, mid)).toBe(200);
    expect(ref.quantize8Index(m, nextUp(mid))).toBe(201);
  });

  it('double quantization reconstructs the block scales to within half an 8-bit step of absmax2', () => {
    const w = weights(64 * 300 + 5, 64, 6); // 301 blocks → two 256-blocks of block scales
    const q = ref.quantizeNf4Double(w, 64);
    const single = ref.quantizeNf4(w, 64);
    expect([...q.packed]).toEqual([...single.packed]);
    expect(q.qabsmax.length).toBe(301);
    expect(q.absmax2.length).toBe(2);
    const am = ref.dequantizeAbsmax(q.qabsmax, q.absmax2, q.code8, q.offset);
    let maxGap = 0;
    for (let i = 1; i < 256; i++) maxGap = Math.max(maxGap, q.code8[i] - q.code8[i - 1]);
    for (let b = 0; b < 301; b++) {
      const bound = 0.5 * maxGap * q.absmax2[Math.floor(b / 256)] + 1e-6 * single.absmax[b];
      expect(Math.abs(am[b] - single.absmax[b])).toBeLessThanOrEqual(bound);
    }
  });
});

describe('nf4.wgsl', () => {
  const cases: [number, number][] = [
    [1, 64],
    [63, 64],
    [65, 64],
    [1000, 64],
    [4097, 64],
    [1000, 32],
    [4097, 128],
    [777, 4096],
    [100, 6], // blocks smaller than the 8 elements of one invocation
    [64 * 300 + 5, 64], // more than 256 blocks: two nested blocks
  ];

  for (const [n, bs] of cases) {
    it(`nf4_dequantize is bit-exact, n=${n} blocksize=${bs}`, async () => {
      const c = await gpu();
      const q = ref.quantizeNf4(weights(n, bs, n + bs), bs);
      const w = c.tensor([n], { label: 'w' });
      await c.run((b) => nf4Dequantize(b, w, uploadBytes(c, q.packed, 'packed'), upload(c, q.absmax, [q.absmax.length], 'absmax'), bs));
      const got = await download(c, w);
      expectClose(got, ref.dequantizeNf4(q.packed, q.absmax, n, bs), EXACT, 'nf4_dequantize');
      expect(got.every((v) => Number.isFinite(v))).toBe(true);
    });

    it(`nf4_dequantize_double matches bitsandbytes up to multiply-add fusion, n=${n} blocksize=${bs}`, async () => {
      const c = await gpu();
      const q = ref.quantizeNf4Double(weights(n, bs, 2 * n + bs), bs);
      const w = c.tensor([n], { label: 'w' });
      await c.run((b) =>
        nf4DequantizeDouble(
          b,
          w,
          uploadBytes(c, q.packed, 'packed'),
          {
            qabsmax: uploadBytes(c, q.qabsmax, 'qabsmax'),
            code8: upload(c, q.code8, [256], 'code8'),
            absmax2: upload(c, q.absmax2, [q.absmax2.length], 'absmax2'),
            offset: q.offset,
          },
          bs,
        ),
      );
      const got = await download(c, w);
      const twoRoundings = ref.dequantizeNf4Double(q);
      const fusedAbsmax = Float32Array.from(q.qabsmax, (k, b) => q.code8[k] * q.absmax2[Math.floor(b / 256)] + q.offset);
      const fused = ref.dequantizeNf4(q.packed, fusedAbsmax, n, bs);
      const bad: string[] = [];
      for (let i = 0; i < n; i++) {
        if (got[i] !== twoRoundings[i] && got[i] !== fused[i]) bad.push(`[${i}] got ${got[i]}, want ${twoRoundings[i]} (or fused ${fused[i]})`);
      }
      expect(bad.slice(0, 8), `${bad.length}/${n} elements differ`).toEqual([]);
    });
  }

  it('nf4_dequantize_double uses the map it is given (a stored nested_quant_map)', async () => {
    const c = await gpu();
    const n = 700;
    const q = ref.quantizeNf4Double(weights(n, 64, 9), 64, ref.createDynamicMap(true, 7, 8, false));
    const w = c.tensor([n]);
    const state = {
      qabsmax: uploadBytes(c, q.qabsmax),
      code8: upload(c, q.code8, [256]),
      absmax2: upload(c, q.absmax2, [q.absmax2.length]),
      offset: q.offset,
    };
    await c.run((b) => nf4DequantizeDouble(b, w, uploadBytes(c, q.packed), state, 64));
    expectClose(await download(c, w), ref.dequantizeNf4Double(q), { rtol: 2 ** -22, atol: 0 }, 'nf4_dequantize_double');
  });

  it('bytes are read little-endian, 4 per word, high nibble first', async () => {
    const c = await gpu();
    // 9 elements, absmax 1: codes 0..8 → NF4 values in order.
    const codes = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const bytes = Uint8Array.of(0x01, 0x23, 0x45, 0x67, 0x80);
    const w = c.tensor([9]);
    await c.run((b) => nf4Dequantize(b, w, uploadBytes(c, bytes), upload(c, [1], [1]), 64));
    expectClose(await download(c, w), codes.map((k) => ref.NF4_CODE[k]), EXACT, 'byte order');
  });

  it('rejects wrong sizes and dtypes naming the kernel and tensor', async () => {
    const c = await gpu();
    const b = c.batch();
    const bytes = (k: number) => uploadBytes(c, new Uint8Array(k));
    expect(() => nf4Dequantize(b, c.tensor([10]), bytes(4), c.tensor([1]))).toThrow(/nf4_dequantize: packed has 4 elements/);
    expect(() => nf4Dequantize(b, c.tensor([10]), c.tensor([5]), c.tensor([1]))).toThrow(/nf4_dequantize: packed must be a 'u8x4'/);
    expect(() => nf4Dequantize(b, c.tensor([130]), bytes(65), c.tensor([2]))).toThrow(/nf4_dequantize: absmax has 2 elements/);
    // 130 elements in blocks of 64 → 3 blocks.
    const s = { qabsmax: bytes(3), code8: c.tensor([256]), absmax2: c.tensor([1]), offset: 0 };
    expect(() => nf4DequantizeDouble(b, c.tensor([130]), bytes(65), { ...s, qabsmax: bytes(2) })).toThrow(
      /nf4_dequantize_double: qabsmax has 2 elements/,
    );
    expect(() => nf4DequantizeDouble(b, c.tensor([130]), bytes(65), { ...s, code8: c.tensor([255]) })).toThrow(
      /nf4_dequantize_double: code8 has 255 elements/,
    );
    expect(() => nf4DequantizeDouble(b, c.tensor([130]), bytes(65), { ...s, offset: NaN })).toThrow(/nf4_dequantize_double: offset/);
  });
});
