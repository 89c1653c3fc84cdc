// NF4 quantization on the host, as bitsandbytes' CUDA kernels do it (peft-spec §4), for production use:
// `webtune quantize`, QLoRA's frozen base weights, and the bitsandbytes 4-bit checkpoint reader/writer.
// Bit for bit the same as the independent reference in src/ref/nf4.ts (tests compare the two); this
// file is written for speed on large tensors (typed arrays, a decision tree instead of a scan) and
// never imports src/ref.
//
//   W (n values, flattened row-major; a linear weight [out, in] as nn.Linear stores it)
//   quantize:    per block of `blocksize` (last one partial): absmax = max|x| (f32),
//                inv = f32(1/absmax), s = f32(x·inv), code = #{ t_i : s > t_i } over the 15 thresholds
//                of csrc/kernels.cu dQuantizeNF4 (f32 literals; NaN from an all-zero block → code 0)
//   packing:     byte j = code[2j] << 4 | code[2j+1]   (first element in the HIGH nibble; an odd n is
//                padded with the value 0.0, quantized with the last block)
//   double quantization (bitsandbytes `quantize_4bit(compress_statistics=True)`, functional.py):
//                offset = mean(absmax) (f32), (qabsmax, absmax2) = 8-bit blockwise quantization of
//                f32(absmax − offset) with the dynamic map, blocks of 256 (`quantize_blockwise`)
//   dequantize:  W[i] = f32(NF4[code_i] · absmax[i / blocksize]),
//                absmax[b] = f32(f32(code8[qabsmax[b]] · absmax2[b / 256]) + offset) when double-quantized
//
// Where the exact f32 result depends on things outside the algorithm (as in the reference):
//   offset: torch's CUDA mean reduces in an order we do not reproduce; we take the float64 mean rounded
//     to f32 (it may differ in the last bit; a stored checkpoint carries its own `nested_offset`).
//   code8: torch's f32 linspace uses fused multiply-add on x86-64/arm64; we build the map the same way.

/** One f32 from its bit pattern. */
const f32Bits = (bits: number): number => new Float32Array(new Uint32Array([bits]).buffer)[0];
const fr = Math.fround;

/** The 16 NF4 code values (bitsandbytes `get_4bit_type('nf4')`, `nf4_dequantization_lut`), as f32. */
export const NF4_VALUES: Float32Array = Float32Array.from(
  [
    0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
    0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
  ],
  f32Bits,
);

// The decision thresholds of csrc/kernels.cu `dQuantizeNF4` (C float literals, i.e. each decimal rounded
// once to f32; peft-spec §4.2 item 7), as f32 bit patterns, ascending.
const T = Float64Array.from(
  [
    0xbf591cd9, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff,
    0x3df64863, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d03, 0x3f248daf, 0x3f5c89d9,
  ],
  f32Bits,
);

/**
 * NF4 code of a scaled value: the number of thresholds strictly below s, found with four comparisons
 * (the same binary tree as dQuantizeNF4). Every comparison with NaN is false, so NaN → code 0.
 */
export function nf4Code(s: number): number {
  if (s > T[7]) {
    if (s > T[11]) {
      if (s > T[13]) return s > T[14] ? 15 : 14;
      return s > T[12] ? 13 : 12;
    }
    if (s > T[9]) return s > T[10] ? 11 : 10;
    return s > T[8] ? 9 : 8;
  }
  if (s > T[3]) {
    if (s > T[5]) return s > T[6] ? 7 : 6;
    return s > T[4] ? 5 : 4;
  }
  if (s > T[1]) return s > T[2] ? 3 : 2;
  return s > T[0] ? 1 : 0;
}

/** Double quantization of the block scales (`compress_statistics=True`). */
export interface Nf4Nested {
  /** One byte per NF4 block: the 8-bit code of absmax − offset (the checkpoint's `weight.absmax`, uint8). */
  qabsmax: Uint8Array;
  /** ceil(nblocks / blocksize) f32 scales of the 8-bit blocks (`weight.nested_absmax`). */
  absmax2: Float32Array;
  /** The 256-entry dynamic map (`weight.nested_quant_map`). */
  code8: Float32Array;
  /** f32 mean of the absmax values (`nested_offset`). */
  offset: number;
  /** `nested_blocksize` (256). */
  blocksize: number;
}

/** One NF4-quantized tensor on the host, as a bitsandbytes QuantState holds it. */
export interface Nf4Tensor {
  /** The original tensor's shape (`quant_state` "shape"); [out, in] for a linear weight. */
  shape: number[];
  /** NF4 block size (64 by default). */
  blocksize: number;
  /** ceil(n/2) bytes of packed codes, first element of each pair in the high nibble. */
  packed: Uint8Array;
  /** ceil(n/blocksize) f32 block scales when not double-quantized, else null. */
  absmax: Float32Array | null;
  /** The double-quantized block scales, else null. */
  nested: Nf4Nested | null;
}

export interface QuantizeOptions {
  /** NF4 block size, an even integer in [8, 4096] (default 64). */
  blocksize?: number;
  /** Double-quantize the block scales (default true, as QLoRA and bitsandbytes' Linear4bit). */
  doubleQuant?: boolean;
  /** The 8-bit map for double quantization (default `dynamicMap()`). */
  code8?: Float32Array;
}

export const NESTED_BLOCKSIZE = 256;

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Number of NF4 blocks of a tensor with n elements. */
export function nf4Blocks(n: number, blocksize: number): number {
  return Math.ceil(n / blocksize);
}

export function checkNf4Blocksize(blocksize: number, what = 'NF4 blocksize'): void {
  if (!Number.isInteger(blocksize) || blocksize < 8 || blocksize > 4096 || blocksize % 2 !== 0) {
    throw new RangeError(`${what} must be an even integer in [8, 4096] (bitsandbytes uses 32–4096, default 64), got ${blocksize}`);
  }
}

/**
 * Blockwise NF4 quantization of `w` (values taken as f32: pass the f32/f16/bf16 weights converted to
 * f32, which is exact) → packed codes and per-block absmax.
 */
export function quantizeNf4Blocks(w: Float32Array, blocksize = 64): { packed: Uint8Array; absmax: Float32Array } {
  checkNf4Blocksize(blocksize);
  const n = w.length;
  const nblocks = nf4Blocks(n, blocksize);
  const absmax = new Float32Array(nblocks);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < nblocks; b++) {
    const lo = b * blocksize;
    const hi = Math.min(n, lo + blocksize);
    let m = 0;
    for (let i = lo; i < hi; i++) {
      const a = Math.abs(w[i]);
      if (a > m) m = a;
    }
    absmax[b] = m;
    const inv = fr(1 / m); // Infinity for an all-zero block: 0·∞ = NaN → code 0, dequantized 0·0 = 0
    // lo is even (blocksize is even), so the block's pairs start at byte lo/2; an odd n leaves the last
    // pair with the padding value 0.0, quantized with this (the last) block.
    for (let i = lo; i < hi; i += 2) {
      const c0 = nf4Code(fr(w[i] * inv));
      const c1 = nf4Code(fr((i + 1 < n ? w[i + 1] : 0) * inv));
      packed[i >> 1] = (c0 << 4) | c1;
    }
  }
  return { packed, absmax };
}

// ---------------------------------------------------------------- the dynamic 8-bit map

/**
 * bitsandbytes `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)` (functional.py) in
 * f32: for exponent i = 0..6 the 2^i midpoints of torch.linspace(0.1, 1, 2^i + 1) (f32, each half one
 * fused multiply-add from its end) times 10^(i − 6), both signs, plus 0 and 1.0, sorted.
 */
export function dynamicMap(): Float32Array {
  const values: number[] = [0, 1];
  for (let i = 0; i < 7; i++) {
    const steps = 2 ** i + 1;
    const start = fr(0.1);
    const step = fr(fr(1 - start) / (steps - 1));
    const half = Math.floor(steps / 2);
    const bounds = new Float32Array(steps);
    // step·k and the sum are exact in float64 here, so one fround is the single rounding of an FMA.
    for (let k = 0; k < steps; k++) bounds[k] = k < half ? start + step * k : 1 - step * (steps - 1 - k);
    const scale = fr(Number(`1e${i - 6}`));
    for (let k = 0; k + 1 < steps; k++) {
      const v = fr(scale * fr(fr(bounds[k] + bounds[k + 1]) / 2));
      values.push(v, -v);
    }
  }
  return Float32Array.from(values).sort();
}

let cachedMap: Float32Array | null = null;
function defaultMap(): Float32Array {
  cachedMap ??= dynamicMap();
  return cachedMap;
}

/** The 8-bit code of x (csrc/kernels.cu `dQuantize<0>`: binary search, then the nearer neighbour by f32 midpoint). */
export function code8Index(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot];
  for (let step = 64; step > 0; step >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += step;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= step;
    }
    val = code[pivot];
  }
  if (upperPivot === 255) upper = code[255];
  if (lowerPivot === 0) lower = code[0];
  if (x > val) return x > fr(fr(upper + val) * 0.5) ? upperPivot : pivot;
  return x < fr(fr(lower + val) * 0.5) ? lowerPivot : pivot;
}

/** Double quantization of NF4 block scales: offset, then 8-bit blockwise with the dynamic map. */
export function quantizeAbsmax(absmax: Float32Array, code8: Float32Array = defaultMap(), blocksize = NESTED_BLOCKSIZE): Nf4Nested {
  if (code8.length !== 256) throw new RangeError(`the 8-bit map must have 256 entries, got ${code8.length}`);
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i];
  const offset = absmax.length ? fr(sum / absmax.length) : 0;
  const n = absmax.length;
  const qabsmax = new Uint8Array(n);
  const absmax2 = new Float32Array(Math.ceil(n / blocksize));
  const centred = new Float32Array(n);
  for (let i = 0; i < n; i++) centred[i] = absmax[i] - offset; // stored as f32: one rounding
  for (let b = 0; b < absmax2.length; b++) {
    const lo = b * blocksize;
    const hi = Math.min(n, lo + blocksize);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(centred[i]));
    absmax2[b] = m;
    const inv = fr(1 / m);
    for (let i = lo; i < hi; i++) qabsmax[i] = code8Index(code8, fr(centred[i] * inv));
  }
  return { qabsmax, absmax2, code8, offset, blocksize };
}

/** NF4-quantize a tensor of the given shape (a linear weight [out, in], flattened row-major). */
export function quantizeNf4(w: Float32Array, shape: readonly number[], options: QuantizeOptions = {}): Nf4Tensor {
  const blocksize = options.blocksize ?? 64;
  if (numelOf(shape) !== w.length) {
    throw new RangeError(`quantizeNf4: shape [${shape.join(', ')}] has ${numelOf(shape)} elements, the data ${w.length}`);
  }
  const { packed, absmax } = quantizeNf4Blocks(w, blocksize);
  const double = options.doubleQuant ?? true;
  return {
    shape: [...shape],
    blocksize,
    packed,
    absmax: double ? null : absmax,
    nested: double ? quantizeAbsmax(absmax, options.code8 ?? defaultMap()) : null,
  };
}

/** The f32 block scales of a quantized tensor (decoded from their 8-bit codes when double-quantized). */
export function nf4Absmax(q: Nf4Tensor): Float32Array {
  if (q.absmax) return q.absmax;
  const s = q.nested!;
  const out = new Float32Array(s.qabsmax.length);
  // Two roundings, as bitsandbytes: dequantize_blockwise, then + offset.
  for (let b = 0; b < out.length; b++) out[b] = fr(s.code8[s.qabsmax[b]] * s.absmax2[Math.floor(b / s.blocksize)]) + s.offset;
  return out;
}

/** Dequantize to f32 on the host (for checks and exports; training reads the codes on the GPU). */
export function dequantizeNf4(q: Nf4Tensor): Float32Array {
  const n = numelOf(q.shape);
  const absmax = nf4Absmax(q);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = q.packed[i >> 1];
    out[i] = NF4_VALUES[i & 1 ? byte & 0xf : byte >> 4] * absmax[Math.floor(i / q.blocksize)];
  }
  return out;
}

/** Bytes the quantized tensor occupies (codes, scales, nested constants), for memory accounting. */
export function nf4HostBytes(q: Nf4Tensor): number {
  if (q.absmax) return q.packed.byteLength + q.absmax.byteLength;
  const s = q.nested!;
  return q.packed.byteLength + s.qabsmax.byteLength + s.absmax2.byteLength + s.code8.byteLength + 4;
}
