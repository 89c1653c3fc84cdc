import { describe, expect, it } from 'vitest';
import {
  NF4_VALUES,
  checkNf4Blocksize,
  code8Index,
  dequantizeNf4,
  dynamicMap,
  nf4Absmax,
  nf4Code,
  quantizeAbsmax,
  quantizeNf4,
} from '../../src/quant/nf4';
import * as ref from '../../src/ref/nf4';
import { normal, rng } from '../helpers/random';

// The production quantizer (src/quant/nf4.ts) must equal the independent reference (src/ref/nf4.ts)
// bit for bit: codes, packed bytes, absmax, and the double-quantization constants.

const bits = (a: ArrayLike<number>): number[] => [...new Uint32Array(Float32Array.from(a).buffer)];

const nextUp = (x: number): number => {
  const u = new Uint32Array(new Float32Array([x]).buffer);
  u[0] += x >= 0 ? 1 : -1;
  return new Float32Array(u.buffer)[0];
};

/**
 * Test weights: normal values, then by block of `blocksize`: an all-zero block, a negative-only block,
 * a block with one huge outlier, a block of exact NF4 thresholds (and one ulp above), a block of tiny
 * (subnormal-scale) values, a block with ±0 and an all-equal block; the last block partial unless n is
 * a multiple of the block size, and all-zero when there are enough blocks.
 */
function weights(n: number, blocksize: number, seed: number): Float32Array {
  const w = Float32Array.from(normal(n, seed, 0.05));
  const r = rng(seed + 99);
  const block = (b: number, f: (i: number, k: number) => number) => {
    for (let i = b * blocksize, k = 0; i < Math.min(n, (b + 1) * blocksize); i++, k++) w[i] = f(i, k);
  };
  block(1, () => 0);
  block(2, (i) => -Math.abs(w[i]));
  block(3, (i, k) => (k === Math.floor(r() * blocksize) ? 1e4 : w[i]));
  block(4, (_, k) => (k === 0 ? 1 : k % 2 ? ref.NF4_THRESHOLDS[k % 15] : nextUp(ref.NF4_THRESHOLDS[k % 15])));
  block(5, (i) => w[i] * 1e-38);
  block(6, (_, k) => (k % 2 ? -0 : 0.5));
  block(7, () => -0.25);
  if (n > 10 * blocksize) block(Math.floor((n - 1) / blocksize), () => 0);
  return w;
}

describe('host NF4 quantizer (src/quant/nf4.ts) equals the reference bit for bit', () => {
  it('code values; nf4Code equals the threshold count on thresholds, their neighbours, NaN and random values', () => {
    expect(bits(NF4_VALUES)).toEqual(bits(ref.NF4_CODE));
    const probes: number[] = [NaN, 0, -0, 1, -1, 2, -2, Infinity, -Infinity];
    for (const t of ref.NF4_THRESHOLDS) probes.push(t, nextUp(t), -nextUp(-t));
    for (const c of ref.NF4_CODE) probes.push(c);
    const r = rng(5);
    for (let i = 0; i < 20000; i++) probes.push(Math.fround(r() * 2.2 - 1.1));
    for (const s of probes) expect(nf4Code(s), `s = ${s}`).toBe(ref.nf4Index(s));
  });

  const cases: [number, number][] = [
    [1, 64],
    [2, 64],
    [63, 64],
    [64, 64],
    [65, 64],
    [999, 64],
    [64 * 300 + 7, 64], // > 256 blocks: two nested blocks, odd n
    [4096 + 3, 32],
    [5000, 128],
    [3000, 4096],
    [777, 8],
    [1001, 36],
  ];
  for (const [n, bs] of cases) {
    it(`single quantization: packed bytes and absmax, n=${n} blocksize=${bs}`, () => {
      const w = weights(n, bs, n + bs);
      const q = quantizeNf4(w, [n], { blocksize: bs, doubleQuant: false });
      const r = ref.quantizeNf4(w, bs);
      expect(q.nested).toBeNull();
      expect(Buffer.from(q.packed).equals(Buffer.from(r.packed))).toBe(true);
      expect(bits(q.absmax!)).toEqual(bits(r.absmax));
      expect(bits(dequantizeNf4(q))).toEqual(bits(ref.dequantizeNf4(r.packed, r.absmax, n, bs)));
    });

    it(`double quantization: qabsmax, absmax2, offset, code8, n=${n} blocksize=${bs}`, () => {
      const w = weights(n, bs, 3 * n + bs);
      const q = quantizeNf4(w, [n], { blocksize: bs });
      const r = ref.quantizeNf4Double(w, bs);
      expect(q.absmax).toBeNull();
      const s = q.nested!;
      expect(Buffer.from(q.packed).equals(Buffer.from(r.packed))).toBe(true);
      expect(Buffer.from(s.qabsmax).equals(Buffer.from(r.qabsmax))).toBe(true);
      expect(bits(s.absmax2)).toEqual(bits(r.absmax2));
      expect(bits([s.offset])).toEqual(bits([r.offset]));
      expect(bits(s.code8)).toEqual(bits(r.code8));
      expect(s.blocksize).toBe(r.nestedBlocksize);
      expect(bits(nf4Absmax(q))).toEqual(bits(ref.dequantizeAbsmax(r.qabsmax, r.absmax2, r.code8, r.offset)));
      expect(bits(dequantizeNf4(q))).toEqual(bits(ref.dequantizeNf4Double(r)));
    });
  }

  it('a 2-D weight quantizes as its row-major flattening', () => {
    const w = weights(7 * 130, 64, 4);
    const q = quantizeNf4(w, [7, 130]);
    expect(q.shape).toEqual([7, 130]);
    expect(Buffer.from(q.packed).equals(Buffer.from(ref.quantizeNf4Double(w, 64).packed))).toBe(true);
    expect(() => quantizeNf4(w, [7, 131])).toThrow(/shape \[7, 131\] has 917 elements, the data 910/);
  });

  it('the dynamic 8-bit map equals the reference (fused multiply-add linspace) and the 8-bit search agrees', () => {
    const m = dynamicMap();
    expect(bits(m)).toEqual(bits(ref.createDynamicMap()));
    const r = rng(7);
    const probes = [NaN, 2, -2, 1, -1, 0, -0];
    for (let k = 0; k < 256; k++) probes.push(m[k], nextUp(m[k]), -nextUp(-m[k]));
    for (let k = 0; k < 255; k++) probes.push(Math.fround((m[k] + m[k + 1]) * 0.5));
    for (let i = 0; i < 20000; i++) probes.push(Math.fround(r() * 2 - 1) * (r() < 0.5 ? 1 : 1e-4));
    for (const x of probes) expect(code8Index(m, x), `x = ${x}`).toBe(ref.quantize8Index(m, x));
  });

  it('double quantization with a given map (e.g. a checkpoint map built without FMA) follows that map', () => {
    const noFma = ref.createDynamicMap(true, 7, 8, false);
    const am = Float32Array.from(normal(600, 3), (v) => Math.abs(v));
    const s = quantizeAbsmax(am, noFma);
    const r = ref.quantizeBlockwise8(am.map((v) => v - s.offset), noFma, 256);
    expect(Buffer.from(s.qabsmax).equals(Buffer.from(r.q))).toBe(true);
    expect(bits(s.absmax2)).toEqual(bits(r.absmax));
  });

  it('rejects block sizes the kernels cannot use', () => {
    for (const bs of [0, 2, 6, 7, 9, 63.5, 8192]) expect(() => checkNf4Blocksize(bs)).toThrow(/even integer in \[8, 4096\]/);
    expect(() => quantizeNf4(new Float32Array(10), [10], { blocksize: 5 })).toThrow(/blocksize/);
  });
});
