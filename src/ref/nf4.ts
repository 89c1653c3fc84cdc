// Reference NF4 quantization as bitsandbytes' CUDA kernels do it (peft-spec §4), f32-exact.
// Every f32 operation of the reference implementation is emulated with Math.fround: each +, −, ×, ÷ of
// two f32 values computed in float64 and rounded once to f32 is the correctly rounded f32 result.
//
//   quantize (kQuantizeBlockwise, NF4): per block of `blocksize` (last one partial)
//     absmax = max|x| (f32), inv = f32(1/absmax), s = f32(x·inv),
//     code = #{ thresholds t_i : s > t_i }   (strict; thresholds are the CUDA kernel's f32 literals;
//                                             NaN from an all-zero block, 0·(1/0), gives code 0)
//     byte j = code[2j] << 4 | code[2j+1]    (first element in the HIGH nibble; an odd n is padded
//                                             with the value 0.0, quantized like the others)
//   dequantize: W[i] = f32(NF4[code_i] · absmax[i / blocksize])
//   double quantization (compress_statistics=True):
//     offset = mean(absmax) (f32), a = f32(absmax − offset),
//     (qabsmax, absmax2) = 8-bit blockwise quantization of a with the dynamic map, blocks of 256
//     dequantized absmax[b] = f32( f32(code8[qabsmax[b]] · absmax2[b / 256]) + offset )
//
// Where bitsandbytes' exact f32 result depends on things outside the algorithm:
//   - offset: torch's CUDA mean reduces in an order we do not reproduce; we take the float64 mean
//     rounded to f32 (may differ in the last bit). Dequantizing a checkpoint uses its stored
//     `nested_offset`, so this only affects re-quantization.
//   - the dynamic map uses torch's f32 linspace, whose last bit depends on fused multiply-add; we build
//     it with FMA (the x86-64/arm64 result, peft-spec §4.2 item 8) unless `fma: false` is asked for.

const f32FromBits = (bits: number): number => new Float32Array(new Uint32Array([bits]).buffer)[0];
const fr = Math.fround;

/** The 16 NF4 code values (bitsandbytes `get_4bit_type('nf4')`), as f32. */
export const NF4_CODE: Float32Array = Float32Array.from(
  [
    0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000, 0x3da2faff, 0x3e24cae3,
    0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
  ].map(f32FromBits),
);

/** The 15 decision thresholds of `dQuantizeNF4` (C float literals in csrc/kernels.cu), as f32 bit patterns. */
export const NF4_THRESHOLDS: Float32Array = Float32Array.from(
  [
    0xbf591cd9, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff, 0x3df64863, 0x3e5067e0,
    0x3e9582d4, 0x3ec753f9, 0x3f006d03, 0x3f248daf, 0x3f5c89d9,
  ].map(f32FromBits),
);

/** NF4 code of a scaled value s ∈ [−1, 1]: the number of thresholds strictly below s (NaN → 0). */
export function nf4Index(s: number): number {
  let c = 0;
  for (let i = 0; i < NF4_THRESHOLDS.length; i++) if (s > NF4_THRESHOLDS[i]) c++;
  return c;
}

export interface Nf4Quantized {
  n: number;
  blocksize: number;
  /** ceil(n/2) bytes, first element of each pair in the high nibble. */
  packed: Uint8Array;
  /** ceil(n/blocksize) f32 block scales. */
  absmax: Float32Array;
}

function checkBlocksize(blocksize: number, what: string): void {
  if (!Number.isInteger(blocksize) || blocksize < 2 || blocksize % 2 !== 0) {
    throw new RangeError(`${what}: blocksize must be an even integer ≥ 2 (bitsandbytes uses 32–4096), got ${blocksize}`);
  }
}

/** Blockwise NF4 quantization of `w` (values taken as f32), as bitsandbytes' CUDA kernel. */
export function quantizeNf4(w: ArrayLike<number>, blocksize = 64): Nf4Quantized {
  checkBlocksize(blocksize, 'quantizeNf4');
  const n = w.length;
  const nblocks = Math.ceil(n / blocksize);
  const absmax = new Float32Array(nblocks);
  const codes = new Uint8Array(n + (n % 2));
  for (let b = 0; b < nblocks; b++) {
    const lo = b * blocksize;
    const hi = Math.min(n, lo + blocksize);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(fr(w[i])));
    absmax[b] = m;
    const inv = fr(1 / m); // Infinity for an all-zero block → 0·∞ = NaN → code 0
    // The padding element of an odd n lies in the last block (blocksize is even) and is the value 0.0.
    const end = b === nblocks - 1 ? codes.length : hi;
    for (let i = lo; i < end; i++) codes[i] = nf4Index(fr((i < n ? fr(w[i]) : 0) * inv));
  }
  const packed = new Uint8Array(codes.length / 2);
  for (let j = 0; j < packed.length; j++) packed[j] = (codes[2 * j] << 4) | codes[2 * j + 1];
  return { n, blocksize, packed, absmax };
}

/** The NF4 code of element i of a packed byte stream. */
export function nf4CodeAt(packed: Uint8Array, i: number): number {
  const byte = packed[i >> 1];
  return i % 2 === 0 ? byte >> 4 : byte & 0xf;
}

/** W[i] = f32(NF4[code_i] · absmax[i / blocksize]). */
export function dequantizeNf4(packed: Uint8Array, absmax: ArrayLike<number>, n: number, blocksize = 64): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = NF4_CODE[nf4CodeAt(packed, i)] * absmax[Math.floor(i / blocksize)];
  return out;
}

// ---------------------------------------------------------------- the dynamic 8-bit map

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU: step = (end − start)/(steps − 1) in f32,
 * the first half start + step·i, the second half end − step·(steps − 1 − i); with `fma` each of those
 * is one fused multiply-add (rounded once), as compilers emit on x86-64 (FMA builds) and arm64.
 */
export function linspaceF32(start: number, end: number, steps: number, fma = true): Float32Array {
  const s = fr(start);
  const e = fr(end);
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = fr(fr(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    // step·k is exact in float64 (24-bit × small integer) and so is the sum for these magnitudes, so
    // fround(step·k ± c) is the single rounding of a fused multiply-add.
    if (i < halfway) out[i] = fma ? fr(s + step * i) : fr(s + fr(step * i));
    else {
      const k = steps - i - 1;
      out[i] = fma ? fr(e - step * k) : fr(e - fr(step * k));
    }
  }
  return out;
}

/**
 * bitsandbytes `create_dynamic_map(signed, max_exponent_bits, total_bits)` in f32: for each exponent i
 * the midpoints of linspace(0.1, 1, fraction_items) scaled by 10^(i − (max_exponent_bits − 1)), with
 * both signs when signed, plus 0 and 1.0, padded with zeros to 256 and sorted.
 */
export function createDynamicMap(signed = true, maxExponentBits = 7, totalBits = 8, fma = true): Float32Array {
  const data: number[] = [];
  const nonSignBits = totalBits - 1; // bitsandbytes: `total_bits - (1 if signed else 1)`
  const additionalItems = 2 ** (nonSignBits - maxExponentBits) - 1;
  const push = (items: number, e: number) => {
    const bounds = linspaceF32(0.1, 1, items, fma);
    const scale = fr(Number(`1e${e}`)); // Python's 10 ** e, passed to an f32 tensor multiply
    for (let j = 0; j + 1 < bounds.length; j++) {
      const mean = fr(fr(bounds[j] + bounds[j + 1]) / 2);
      data.push(fr(scale * mean));
      if (signed) data.push(-fr(scale * mean));
    }
  };
  let i = 0;
  for (i = 0; i < maxExponentBits; i++) {
    const items = signed ? 2 ** (i + nonSignBits - maxExponentBits) + 1 : 2 ** (i + nonSignBits - maxExponentBits + 1) + 1;
    push(items, -(maxExponentBits - 1) + i);
  }
  if (additionalItems > 0) push(additionalItems + 1, -(maxExponentBits - 1) + (i - 1));
  data.push(0, 1.0);
  if (data.length !== 2 ** totalBits) throw new Error(`createDynamicMap: ${data.length} values, expected ${2 ** totalBits}`);
  while (data.length < 256) data.push(0);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}

// ---------------------------------------------------------------- 8-bit blockwise (double quantization)

/** `dQuantize<0>` of csrc/kernels.cu: binary search over the sorted 256-entry code, then midpoint rounding. */
export function quantize8Index(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot];
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upperPivot === 255) upper = code[upperPivot];
  if (lowerPivot === 0) lower = code[lowerPivot];
  if (x > val) {
    const mid = fr(fr(upper + val) * 0.5);
    return x > mid ? upperPivot : pivot;
  }
  const mid = fr(fr(lower + val) * 0.5);
  return x < mid ? lowerPivot : pivot;
}

/** 8-bit blockwise quantization with a 256-entry code (CUDA kQuantizeBlockwise, General8bit). */
export function quantizeBlockwise8(a: Float32Array, code: Float32Array, blocksize = 256): { q: Uint8Array; absmax: Float32Array } {
  const n = a.length;
  const nblocks = Math.ceil(n / blocksize);
  const q = new Uint8Array(n);
  const absmax = new Float32Array(nblocks);
  for (let b = 0; b < nblocks; b++) {
    const lo = b * blocksize;
    const hi = Math.min(n, lo + blocksize);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(a[i]));
    absmax[b] = m;
    const inv = fr(1 / m);
    for (let i = lo; i < hi; i++) q[i] = quantize8Index(code, fr(a[i] * inv));
  }
  return { q, absmax };
}

export function dequantizeBlockwise8(q: Uint8Array, absmax: ArrayLike<number>, code: Float32Array, blocksize = 256): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = code[q[i]] * absmax[Math.floor(i / blocksize)];
  return out;
}

export interface Nf4DoubleQuantized {
  n: number;
  blocksize: number;
  packed: Uint8Array;
  /** One byte per NF4 block: the 8-bit code of absmax − offset. */
  qabsmax: Uint8Array;
  /** ceil(nblocks / nestedBlocksize) f32 scales of the 8-bit blocks. */
  absmax2: Float32Array;
  /** The dynamic map (`nested_quant_map`), 256 f32. */
  code8: Float32Array;
  /** f32 mean of the absmax values (`nested_offset`). */
  offset: number;
  nestedBlocksize: number;
}

/** NF4 with double-quantized block scales (bitsandbytes `quantize_4bit(compress_statistics=True)`). */
export function quantizeNf4Double(w: ArrayLike<number>, blocksize = 64, code8: Float32Array = createDynamicMap()): Nf4DoubleQuantized {
  const { n, packed, absmax } = quantizeNf4(w, blocksize);
  let sum = 0;
  for (const v of absmax) sum += v;
  const offset = fr(sum / absmax.length);
  const centred = absmax.map((v) => v - offset); // Float32Array.map rounds each to f32
  const nestedBlocksize = 256;
  const { q, absmax: absmax2 } = quantizeBlockwise8(centred, code8, nestedBlocksize);
  return { n, blocksize, packed, qabsmax: q, absmax2, code8, offset, nestedBlocksize };
}

/** Block scales from their 8-bit codes: f32(f32(code8[q]·absmax2[b/256]) + offset), as bitsandbytes (two roundings). */
export function dequantizeAbsmax(
  qabsmax: Uint8Array,
  absmax2: ArrayLike<number>,
  code8: Float32Array,
  offset: number,
  nestedBlocksize = 256,
): Float32Array {
  const scaled = dequantizeBlockwise8(qabsmax, absmax2, code8, nestedBlocksize);
  return scaled.map((v) => v + offset);
}

export function dequantizeNf4Double(q: Nf4DoubleQuantized): Float32Array {
  const absmax = dequantizeAbsmax(q.qabsmax, q.absmax2, q.code8, q.offset, q.nestedBlocksize);
  return dequantizeNf4(q.packed, absmax, q.n, q.blocksize);
}
