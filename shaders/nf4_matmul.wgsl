// nf4_matmul.wgsl — linear layers whose frozen weight is NF4 (QLoRA), dequantized on the fly inside
// the matmul: the packed 4-bit codes and block scales are read directly, no f32 copy of W exists.
//
//   nf4_matmul_forward:         y[N, out]  = x[N, in] · Wᵀ   (+ y when beta = 1)       (= or +=)
//   nf4_matmul_backward_input:  dx[N, in]  = dy[N, out] · W  (+ dx when beta = 1)     (= or +=)
//
// W [out, in] is an nn.Linear weight as bitsandbytes stores it (a GPT-2 Conv1D weight is transposed to
// [out, in] before quantizing, as transformers does), flattened row-major: element e = o·in + k.
//   W[e] = NF4[code_e] · absmax_b,   b = e / blocksize        (peft-spec §4.3)
//   single quantization:  absmax_b = scales[b]
//   double quantization:  absmax_b = code8[qabsmax[b]] · scales[b / nested_blocksize] + offset   (§4.4)
//                         (nested_blocksize a power of two: 256 in bitsandbytes)
// code_e: byte e/2 of the packed stream, HIGH nibble for even e; bytes arrive 4 per u32 little-endian
// (a checkpoint's uint8 tensor uploaded unchanged), as in nf4.wgsl. Blocks run over the flattened
// index, so they may straddle rows when in is not a multiple of the block size.
// There is no backward for W: it is frozen (LoRA trains beside it). Compute is f32 throughout; the
// double-quantized scale is one fused multiply-add (bitsandbytes rounds twice: ≤ 1 ulp apart).
//
// bindings (group 0)        shape                                 access
//   0 params                —                                     uniform Params
//   1 out                   y (N, out) | dx (N, in) f32           rw   (= or += by beta)
//   2 a                     x (N, in)  | dy (N, out) f32          read
//   3 codes                 ceil(out·in/2) bytes, u8x4            read
//   4 scales                single: absmax (nblocks) f32          read
//                           double: absmax2 (ceil(nblocks/nested_blocksize)) f32 (`nested_absmax`)
//   5 qabsmax               double: nblocks bytes, u8x4 (`absmax`, uint8); single: any (unread)
//   6 code8                 double: 256 f32 (`nested_quant_map`);           single: any (unread)
//
// Tiling (SwiftShader-friendly, as matmul.wgsl's reg4x4: no workgroup memory, no barriers; every
// invocation works alone on an 8×8 register block of the output, loads scalars, and returns early past
// the edges). Codes are consumed 8 at a time: one u32 word holds 8 consecutive elements of a row of W
// when in % 8 == 0; otherwise the 8 are funnel-shifted out of two words. Rows/columns past the edge
// are clamped for loading and skipped when storing; k past `in` reads x as 0.
//   forward:   8 rows of x × 8 rows of W per invocation; k in steps of 8. The block scale of each W
//              row is carried along k and fetched again only when a block boundary is crossed. Steps
//              of 8 that are word-aligned, inside one block and inside `in` (all of them when in and
//              blocksize are multiples of 8) take a fast path; the others a general one.
//   backward:  8 rows of dy × 8 consecutive columns k (one word of codes) per invocation; loop over
//              out, one block scale per row of W.
// Workgroup: WG invocations, GX of them along the output columns: a tile of (WG/GX)·8 rows × GX·8
// columns. With subgroups, nf4_matmul_quad.wgsl computes the same with the dequantization shared by
// the lanes of a quad (about 3× faster on SwiftShader) for in and blocksize multiples of 8.

struct Params {
  n: u32,                 // N: rows of x / dy (tokens)
  in_f: u32,              // in features (row length of W)
  out_f: u32,             // out features (rows of W)
  blocksize: u32,         // NF4 block size (≥ 8)
  nblocks: u32,           // ceil(out·in / blocksize)
  nwords: u32,            // u32 words of codes: ceil(ceil(out·in/2) / 4)
  double_quant: u32,      // 1: scales are double-quantized
  nested_shift: u32,      // log2(nested_blocksize): 8 for bitsandbytes' 256
  offset: f32,            // `nested_offset`
  beta: f32,              // 0: out = result; 1: out += result
  row_blocks: u32,        // in / blocksize   (backward: block index step per row of W)
  row_rem: u32,           // in % blocksize
}

override WG: u32 = 64;
override GX: u32 = 8;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> codes: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<f32>;
@group(0) @binding(5) var<storage, read> qabsmax: array<u32>;
@group(0) @binding(6) var<storage, read> code8: array<f32>;

// The 16 NF4 values as f32 bit patterns (bitsandbytes get_4bit_type('nf4') / nf4_dequantization_lut).
// A private variable, not a const: indexing a const array with a runtime index makes a fresh copy of
// it at every lookup on some compilers.
var<private> NF4_BITS: array<u32, 16> = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u,
);

// NF4 values of four codes (each 0..15).
fn nf4_4(c: vec4<u32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(vec4<u32>(NF4_BITS[c.x], NF4_BITS[c.y], NF4_BITS[c.z], NF4_BITS[c.w]));
}

// absmax of NF4 block b (clamped to the last block: reads past the end only feed discarded outputs).
fn block_scale(b_in: u32) -> f32 {
  let b = min(b_in, params.nblocks - 1u);
  if (params.double_quant != 0u) {
    let q = (qabsmax[b / 4u] >> (8u * (b % 4u))) & 0xffu;
    return fma(code8[q], scales[b >> params.nested_shift], params.offset);
  }
  return scales[b];
}

fn block_scale4(b: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(block_scale(b.x), block_scale(b.y), block_scale(b.z), block_scale(b.w));
}

// Swap the nibbles of every byte, so that element order = nibble order (bitsandbytes puts the first
// element of a byte in its high nibble).
fn swap_nibbles(v: vec4<u32>) -> vec4<u32> {
  return ((v >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu)) | ((v & vec4<u32>(0x0f0f0f0fu)) << vec4<u32>(4u));
}

// For four element indices e0: the codes of e0 .. e0+7, code of e0+i in bits 4i .. 4i+3.
fn codes8(e0: vec4<u32>) -> vec4<u32> {
  let last = params.nwords - 1u;
  let w = e0 >> vec4<u32>(3u);
  let lo = swap_nibbles(vec4<u32>(codes[min(w.x, last)], codes[min(w.y, last)], codes[min(w.z, last)], codes[min(w.w, last)]));
  let sh = (e0 & vec4<u32>(7u)) * 4u;
  if (all(sh == vec4<u32>(0u))) { return lo; }  // word-aligned (always when in % 8 == 0)
  // Otherwise take the rest from the next word. (A shift by 32 is not defined: mask it with select.)
  let w1 = min(w + 1u, vec4<u32>(last));
  let hi = swap_nibbles(vec4<u32>(codes[w1.x], codes[w1.y], codes[w1.z], codes[w1.w]));
  return select((lo >> sh) | (hi << (vec4<u32>(32u) - sh)), lo, sh == vec4<u32>(0u));
}

// Dequantized W for element i (0..7) of four word-aligned 8-element groups in one block each: the
// code of element i sits in the high nibble of byte i/2 for even i, the low nibble for odd i.
fn wvals_aligned(raw: vec4<u32>, i: u32, s: vec4<f32>) -> vec4<f32> {
  return nf4_4((raw >> vec4<u32>(4u * (i ^ 1u))) & vec4<u32>(0xfu)) * s;
}

// Dequantized W for element i (0..7) of four 8-element groups: NF4 · the scale of its block, where
// the elements before `split` use s_lo and the others s_hi (a block boundary inside the 8).
fn wvals(v: vec4<u32>, i: u32, split: vec4<u32>, s_lo: vec4<f32>, s_hi: vec4<f32>) -> vec4<f32> {
  return nf4_4((v >> vec4<u32>(4u * i)) & vec4<u32>(0xfu)) * select(s_hi, s_lo, vec4<u32>(i) < split);
}

// acc + x ⊗ y: row r of the 4×4 block (acc[r]) gains x[r] · y.
fn outer_fma(x: vec4<f32>, y: vec4<f32>, acc: mat4x4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(vec4<f32>(x.x), y, acc[0]),
    fma(vec4<f32>(x.y), y, acc[1]),
    fma(vec4<f32>(x.z), y, acc[2]),
    fma(vec4<f32>(x.w), y, acc[3]),
  );
}

// An 8×8 register block of the output: rows 0-3 / 4-7 × columns 0-3 / 4-7.
struct Acc {
  m00: mat4x4<f32>,
  m01: mat4x4<f32>,
  m10: mat4x4<f32>,
  m11: mat4x4<f32>,
}

// acc += [x0; x1] ⊗ [w0, w1]: one k of the forward (or one o of the backward).
fn acc_step(acc: Acc, x0: vec4<f32>, x1: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>) -> Acc {
  return Acc(outer_fma(x0, w0, acc.m00), outer_fma(x0, w1, acc.m01), outer_fma(x1, w0, acc.m10), outer_fma(x1, w1, acc.m11));
}

// a[base + k] for four row bases.
fn load4(base: vec4<u32>, k: u32) -> vec4<f32> {
  return vec4<f32>(a[base.x + k], a[base.y + k], a[base.z + k], a[base.w + k]);
}

// a[base + k] for four row bases; k ≥ kmax reads 0.
fn load4_masked(base: vec4<u32>, k: u32, kmax: u32) -> vec4<f32> {
  let kk = min(k, kmax - 1u);
  let v = vec4<f32>(a[base.x + kk], a[base.y + kk], a[base.z + kk], a[base.w + kk]);
  return select(vec4<f32>(0.0), v, k < kmax);
}

// out[row, col .. col+3] = v (+ out when beta = 1), for the rows and columns inside (rows × cols).
fn store4(row: u32, col: u32, cols: u32, v: vec4<f32>) {
  if (row >= params.n) { return; }
  let base = row * cols + col;
  for (var t = 0u; t < 4u; t++) {
    if (col + t < cols) {
      var r = v[t];
      if (params.beta != 0.0) { r += out[base + t]; }
      out[base + t] = r;
    }
  }
}

fn store_acc(acc: Acc, row0: u32, col0: u32, cols: u32) {
  for (var r = 0u; r < 4u; r++) {
    store4(row0 + r, col0, cols, acc.m00[r]);
    store4(row0 + r, col0 + 4u, cols, acc.m01[r]);
    store4(row0 + 4u + r, col0, cols, acc.m10[r]);
    store4(row0 + 4u + r, col0 + 4u, cols, acc.m11[r]);
  }
}

// Row bases (row · stride) of 8 rows from row0, clamped to the last row.
fn row_bases(row0: u32, stride: u32) -> array<vec4<u32>, 2> {
  let last = vec4<u32>(params.n - 1u);
  let r = vec4<u32>(0u, 1u, 2u, 3u);
  return array<vec4<u32>, 2>(min(vec4<u32>(row0) + r, last) * stride, min(vec4<u32>(row0 + 4u) + r, last) * stride);
}

// Forward, 8 columns of x starting at k0 in the common case: all 8 inside `in`, each group of 8 codes
// one whole u32 word inside one block (always when in and blocksize are multiples of 8).
fn forward_chunk_aligned(acc_in: Acc, xb: array<vec4<u32>, 2>, k0: u32, p0: vec4<u32>, p1: vec4<u32>, s0: vec4<f32>, s1: vec4<f32>) -> Acc {
  let w0 = p0 >> vec4<u32>(3u);
  let w1 = p1 >> vec4<u32>(3u);
  let r0 = vec4<u32>(codes[w0.x], codes[w0.y], codes[w0.z], codes[w0.w]);
  let r1 = vec4<u32>(codes[w1.x], codes[w1.y], codes[w1.z], codes[w1.w]);
  var acc = acc_in;
  acc = acc_step(acc, load4(xb[0], k0), load4(xb[1], k0), wvals_aligned(r0, 0u, s0), wvals_aligned(r1, 0u, s1));
  acc = acc_step(acc, load4(xb[0], k0 + 1u), load4(xb[1], k0 + 1u), wvals_aligned(r0, 1u, s0), wvals_aligned(r1, 1u, s1));
  acc = acc_step(acc, load4(xb[0], k0 + 2u), load4(xb[1], k0 + 2u), wvals_aligned(r0, 2u, s0), wvals_aligned(r1, 2u, s1));
  acc = acc_step(acc, load4(xb[0], k0 + 3u), load4(xb[1], k0 + 3u), wvals_aligned(r0, 3u, s0), wvals_aligned(r1, 3u, s1));
  acc = acc_step(acc, load4(xb[0], k0 + 4u), load4(xb[1], k0 + 4u), wvals_aligned(r0, 4u, s0), wvals_aligned(r1, 4u, s1));
  acc = acc_step(acc, load4(xb[0], k0 + 5u), load4(xb[1], k0 + 5u), wvals_aligned(r0, 5u, s0), wvals_aligned(r1, 5u, s1));
  acc = acc_step(acc, load4(xb[0], k0 + 6u), load4(xb[1], k0 + 6u), wvals_aligned(r0, 6u, s0), wvals_aligned(r1, 6u, s1));
  acc = acc_step(acc, load4(xb[0], k0 + 7u), load4(xb[1], k0 + 7u), wvals_aligned(r0, 7u, s0), wvals_aligned(r1, 7u, s1));
  return acc;
}

// Forward, any 8 columns from k0: codes funnel-shifted from two words, a block boundary inside the 8
// (elements before split* use s*, the others t*), x past `in` read as 0.
fn forward_chunk_general(
  acc_in: Acc, xb: array<vec4<u32>, 2>, k0: u32, p0: vec4<u32>, p1: vec4<u32>,
  split0: vec4<u32>, split1: vec4<u32>, s0: vec4<f32>, s1: vec4<f32>, t0: vec4<f32>, t1: vec4<f32>,
) -> Acc {
  let v0 = codes8(p0);
  let v1 = codes8(p1);
  let kmax = min(params.in_f, k0 + 8u);
  var acc = acc_in;
  for (var i = 0u; i < 8u; i++) {
    let x0 = load4_masked(xb[0], k0 + i, kmax);
    let x1 = load4_masked(xb[1], k0 + i, kmax);
    acc = acc_step(acc, x0, x1, wvals(v0, i, split0, s0, t0), wvals(v1, i, split1, s1, t1));
  }
  return acc;
}

@compute @workgroup_size(WG)
fn nf4_matmul_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = (wg.y * (WG / GX) + li / GX) * 8u;
  let col0 = (wg.x * GX + li % GX) * 8u;
  let n_in = params.in_f;
  let bs = params.blocksize;
  if (row0 >= params.n || col0 >= params.out_f) { return; }
  let xb = row_bases(row0, n_in);

  // W rows col0 .. col0+7 (clamped) in two groups of four: first element, and the block state carried
  // along k: current block, first element past it, its absmax.
  let lastc = vec4<u32>(params.out_f - 1u);
  let cidx = vec4<u32>(0u, 1u, 2u, 3u);
  let e_0 = min(vec4<u32>(col0) + cidx, lastc) * n_in;
  let e_1 = min(vec4<u32>(col0 + 4u) + cidx, lastc) * n_in;
  var blk0 = e_0 / bs;
  var blk1 = e_1 / bs;
  var end0 = (blk0 + 1u) * bs;
  var end1 = (blk1 + 1u) * bs;
  var s0 = block_scale4(blk0);
  var s1 = block_scale4(blk1);
  // Word-aligned groups of 8 codes in every row of W?
  let aligned = (n_in & 7u) == 0u;

  var acc: Acc;
  for (var k0 = 0u; k0 < n_in; k0 += 8u) {
    let p0 = e_0 + k0;
    let p1 = e_1 + k0;
    // Entered the next block? (blocksize ≥ 8: at most one per step of 8.)
    let adv0 = p0 >= end0;
    let adv1 = p1 >= end1;
    if (any(adv0) || any(adv1)) {
      blk0 += select(vec4<u32>(0u), vec4<u32>(1u), adv0);
      blk1 += select(vec4<u32>(0u), vec4<u32>(1u), adv1);
      end0 += select(vec4<u32>(0u), vec4<u32>(bs), adv0);
      end1 += select(vec4<u32>(0u), vec4<u32>(bs), adv1);
      s0 = select(s0, block_scale4(blk0), adv0);
      s1 = select(s1, block_scale4(blk1), adv1);
    }
    // A block boundary inside these 8 (only when in or blocksize is not a multiple of 8)?
    let cross0 = p0 + 8u > end0;
    let cross1 = p1 + 8u > end1;
    if (aligned && k0 + 8u <= n_in && !any(cross0) && !any(cross1)) {
      acc = forward_chunk_aligned(acc, xb, k0, p0, p1, s0, s1);
    } else {
      let split0 = select(vec4<u32>(8u), end0 - p0, cross0);
      let split1 = select(vec4<u32>(8u), end1 - p1, cross1);
      let t0 = select(s0, block_scale4(blk0 + 1u), cross0);
      let t1 = select(s1, block_scale4(blk1 + 1u), cross1);
      acc = forward_chunk_general(acc, xb, k0, p0, p1, split0, split1, s0, s1, t0, t1);
    }
  }
  store_acc(acc, row0, col0, params.out_f);
}

@compute @workgroup_size(WG)
fn nf4_matmul_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = (wg.y * (WG / GX) + li / GX) * 8u;
  let k0 = (wg.x * GX + li % GX) * 8u;
  let n_in = params.in_f;
  let n_out = params.out_f;
  let bs = params.blocksize;
  if (row0 >= params.n || k0 >= n_in) { return; }
  let db = row_bases(row0, n_out);

  // Element e = o·in + k0 of W row o, its block and its offset in the block, stepped along o without
  // division: e += in moves the block by in / blocksize and the offset by in % blocksize.
  let aligned = (n_in & 7u) == 0u;
  var e = k0;
  var blk = k0 / bs;
  var rem = k0 % bs;
  var acc: Acc;
  for (var o = 0u; o < n_out; o++) {
    let s_lo = block_scale(blk);
    var split = 8u;
    var s_hi = s_lo;
    if (rem + 8u > bs) {  // a block boundary inside these 8
      split = bs - rem;
      s_hi = block_scale(blk + 1u);
    }
    var w0: vec4<f32>;
    var w1: vec4<f32>;
    if (aligned && split == 8u) {
      // One whole word, one block: element i in the high nibble of byte i/2 for even i, low for odd.
      let raw = vec4<u32>(codes[e >> 3u]);
      w0 = nf4_4((raw >> vec4<u32>(4u, 0u, 12u, 8u)) & vec4<u32>(0xfu)) * s_lo;
      w1 = nf4_4((raw >> vec4<u32>(20u, 16u, 28u, 24u)) & vec4<u32>(0xfu)) * s_lo;
    } else {
      let v = vec4<u32>(codes8(vec4<u32>(e)).x);
      let i0 = vec4<u32>(0u, 1u, 2u, 3u);
      w0 = nf4_4((v >> (4u * i0)) & vec4<u32>(0xfu)) * select(vec4<f32>(s_hi), vec4<f32>(s_lo), i0 < vec4<u32>(split));
      w1 = nf4_4((v >> (4u * i0 + 16u)) & vec4<u32>(0xfu)) * select(vec4<f32>(s_hi), vec4<f32>(s_lo), i0 + 4u < vec4<u32>(split));
    }
    let d0 = vec4<f32>(a[db[0].x + o], a[db[0].y + o], a[db[0].z + o], a[db[0].w + o]);
    let d1 = vec4<f32>(a[db[1].x + o], a[db[1].y + o], a[db[1].z + o], a[db[1].w + o]);
    acc = acc_step(acc, d0, d1, w0, w1);

    e += n_in;
    blk += params.row_blocks;
    rem += params.row_rem;
    if (rem >= bs) {
      rem -= bs;
      blk += 1u;
    }
  }
  store_acc(acc, row0, k0, n_in);
}
