// nf4_matmul_quad.wgsl — the NF4 dequantizing matmuls of nf4_matmul.wgsl (read its header for the
// math, the packing and the bindings, which are the same), with the dequantization shared by the four
// invocations of a quad. Needs the `subgroups` feature (quadBroadcast); without it, or for a layout it
// does not cover, use nf4_matmul.wgsl.
//
//   nf4_matmul_quad_forward:          y[N, out] = x[N, in] · Wᵀ   (+ y when beta = 1)     (= or +=)
//   nf4_matmul_quad_backward_input:   dx[N, in] = dy[N, out] · W  (+ dx when beta = 1)    (= or +=)
//
// Layout covered: in % 8 == 0 and blocksize % 8 == 0 (every 8 consecutive codes of a row of W are one
// whole u32 word inside one block — true of every real model); the host checks it.
//
// Why: on SwiftShader a table lookup or a load with a different address per invocation costs a gather,
// while a quad (four invocations = the four SIMD lanes) exchanges a value with one shuffle. In
// nf4_matmul.wgsl every invocation decodes each W value it uses itself.
//   forward: the four lanes of a quad compute the same 8 output columns for 4 × 8 rows. Per step of 8
//            k, lane L loads the code words and block scales of columns 2L, 2L+1 and decodes k = 2L,
//            2L+1 of all 8 columns; quadBroadcast hands everything to the others. Each lane loads its
//            own 8 rows of x. Tile per quad: 32 rows × 8 columns.
//   backward: the four lanes compute the same 8 columns k for 4 × 8 rows; per 4 rows of W (o .. o+3)
//            lane L decodes row o+L (word, scale, 8 values) and quadBroadcast shares them. Each lane
//            loads its own rows of dy. Tile per quad: 32 rows × 8 columns.
// Every invocation stays alive to the end (quad operations need all four lanes): rows and columns past
// the edge are clamped for loading and skipped when storing; rows of W past `out` decode to 0.
// Workgroup: WG invocations = WG/4 quads, QX of them along the output columns.

enable subgroups;

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
override QX: u32 = 8;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> codes: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<f32>;
@group(0) @binding(5) var<storage, read> qabsmax: array<u32>;
@group(0) @binding(6) var<storage, read> code8: array<f32>;

// The 16 NF4 values as f32 bit patterns (see nf4_matmul.wgsl).
var<private> NF4_BITS: array<u32, 16> = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u,
);

fn nf4_4(c: vec4<u32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(vec4<u32>(NF4_BITS[c.x], NF4_BITS[c.y], NF4_BITS[c.z], NF4_BITS[c.w]));
}

fn block_scale(b_in: u32) -> f32 {
  let b = min(b_in, params.nblocks - 1u);
  if (params.double_quant != 0u) {
    let q = (qabsmax[b / 4u] >> (8u * (b % 4u))) & 0xffu;
    return fma(code8[q], scales[b >> params.nested_shift], params.offset);
  }
  return scales[b];
}

fn outer_fma(x: vec4<f32>, y: vec4<f32>, acc: mat4x4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(vec4<f32>(x.x), y, acc[0]),
    fma(vec4<f32>(x.y), y, acc[1]),
    fma(vec4<f32>(x.z), y, acc[2]),
    fma(vec4<f32>(x.w), y, acc[3]),
  );
}

struct Acc {
  m00: mat4x4<f32>,
  m01: mat4x4<f32>,
  m10: mat4x4<f32>,
  m11: mat4x4<f32>,
}

fn acc_step(acc: Acc, x0: vec4<f32>, x1: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>) -> Acc {
  return Acc(outer_fma(x0, w0, acc.m00), outer_fma(x0, w1, acc.m01), outer_fma(x1, w0, acc.m10), outer_fma(x1, w1, acc.m11));
}

fn load4(base: vec4<u32>, k: u32) -> vec4<f32> {
  return vec4<f32>(a[base.x + k], a[base.y + k], a[base.z + k], a[base.w + k]);
}

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

fn row_bases(row0: u32, stride: u32) -> array<vec4<u32>, 2> {
  let last = vec4<u32>(params.n - 1u);
  let r = vec4<u32>(0u, 1u, 2u, 3u);
  return array<vec4<u32>, 2>(min(vec4<u32>(row0) + r, last) * stride, min(vec4<u32>(row0 + 4u) + r, last) * stride);
}

// Byte `lane` of each word (lane 0..3), without a shift whose amount differs between lanes.
fn byte_of(v: vec4<u32>, lane: u32) -> vec4<u32> {
  var b = v & vec4<u32>(0xffu);
  b = select(b, (v >> vec4<u32>(8u)) & vec4<u32>(0xffu), lane == 1u);
  b = select(b, (v >> vec4<u32>(16u)) & vec4<u32>(0xffu), lane == 2u);
  b = select(b, v >> vec4<u32>(24u), lane == 3u);
  return b;
}

@compute @workgroup_size(WG)
fn nf4_matmul_quad_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lane = li & 3u;
  let quad = li >> 2u;
  let row0 = ((wg.y * (WG / 4u / QX) + quad / QX) * 4u + lane) * 8u;
  let col0 = (wg.x * QX + quad % QX) * 8u;
  let n_in = params.in_f;
  let bs = params.blocksize;
  let xb = row_bases(row0, n_in);

  // This lane's two columns of W (2·lane, 2·lane + 1), clamped: first element and block state.
  let own = min(vec2<u32>(col0 + 2u * lane) + vec2<u32>(0u, 1u), vec2<u32>(params.out_f - 1u)) * n_in;
  var blk = own / bs;
  var bend = (blk + 1u) * bs;
  var s = vec2<f32>(block_scale(blk.x), block_scale(blk.y));

  var acc: Acc;
  for (var k0 = 0u; k0 < n_in; k0 += 8u) {
    let p = own + k0;
    let adv = p >= bend;
    if (any(adv)) {  // entered the next block (at most one per step of 8)
      blk += select(vec2<u32>(0u), vec2<u32>(1u), adv);
      bend += select(vec2<u32>(0u), vec2<u32>(bs), adv);
      s = select(s, vec2<f32>(block_scale(blk.x), block_scale(blk.y)), adv);
    }
    let wds = vec2<u32>(codes[p.x >> 3u], codes[p.y >> 3u]);
    // Everyone's words and scales: columns 0-3 (lanes 0, 1) and 4-7 (lanes 2, 3).
    let w_0 = quadBroadcast(wds, 0u);
    let w_1 = quadBroadcast(wds, 1u);
    let w_2 = quadBroadcast(wds, 2u);
    let w_3 = quadBroadcast(wds, 3u);
    let s_0 = quadBroadcast(s, 0u);
    let s_1 = quadBroadcast(s, 1u);
    let s_2 = quadBroadcast(s, 2u);
    let s_3 = quadBroadcast(s, 3u);
    let r0 = vec4<u32>(w_0, w_1);
    let r1 = vec4<u32>(w_2, w_3);
    let sc0 = vec4<f32>(s_0, s_1);
    let sc1 = vec4<f32>(s_2, s_3);
    // This lane decodes k0 + 2·lane (high nibble of byte `lane`) and k0 + 2·lane + 1 (low nibble).
    let b0 = byte_of(r0, lane);
    let b1 = byte_of(r1, lane);
    let hi0 = nf4_4(b0 >> vec4<u32>(4u)) * sc0;
    let hi1 = nf4_4(b1 >> vec4<u32>(4u)) * sc1;
    let lo0 = nf4_4(b0 & vec4<u32>(0xfu)) * sc0;
    let lo1 = nf4_4(b1 & vec4<u32>(0xfu)) * sc1;
    acc = acc_step(acc, load4(xb[0], k0), load4(xb[1], k0), quadBroadcast(hi0, 0u), quadBroadcast(hi1, 0u));
    acc = acc_step(acc, load4(xb[0], k0 + 1u), load4(xb[1], k0 + 1u), quadBroadcast(lo0, 0u), quadBroadcast(lo1, 0u));
    acc = acc_step(acc, load4(xb[0], k0 + 2u), load4(xb[1], k0 + 2u), quadBroadcast(hi0, 1u), quadBroadcast(hi1, 1u));
    acc = acc_step(acc, load4(xb[0], k0 + 3u), load4(xb[1], k0 + 3u), quadBroadcast(lo0, 1u), quadBroadcast(lo1, 1u));
    acc = acc_step(acc, load4(xb[0], k0 + 4u), load4(xb[1], k0 + 4u), quadBroadcast(hi0, 2u), quadBroadcast(hi1, 2u));
    acc = acc_step(acc, load4(xb[0], k0 + 5u), load4(xb[1], k0 + 5u), quadBroadcast(lo0, 2u), quadBroadcast(lo1, 2u));
    acc = acc_step(acc, load4(xb[0], k0 + 6u), load4(xb[1], k0 + 6u), quadBroadcast(hi0, 3u), quadBroadcast(hi1, 3u));
    acc = acc_step(acc, load4(xb[0], k0 + 7u), load4(xb[1], k0 + 7u), quadBroadcast(lo0, 3u), quadBroadcast(lo1, 3u));
  }
  if (col0 < params.out_f) { store_acc(acc, row0, col0, params.out_f); }
}

@compute @workgroup_size(WG)
fn nf4_matmul_quad_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lane = li & 3u;
  let quad = li >> 2u;
  let row0 = ((wg.y * (WG / 4u / QX) + quad / QX) * 4u + lane) * 8u;
  let k0 = (wg.x * QX + quad % QX) * 8u;
  let n_in = params.in_f;
  let n_out = params.out_f;
  let bs = params.blocksize;
  let db = row_bases(row0, n_out);
  let kc = min(k0, n_in - 8u);  // in % 8 == 0: a whole word, also for quads past the edge

  // This lane decodes rows o + lane of W: element e = (o + lane)·in + kc, its block and offset in the
  // block, stepped by 4 rows of W (4·in elements) without division.
  var e = lane * n_in + kc;
  var blk = e / bs;
  var rem = e % bs;
  let step_elems = 4u * n_in;
  let step_blocks = step_elems / bs;
  let step_rem = step_elems % bs;
  var acc: Acc;
  for (var o = 0u; o < n_out; o += 4u) {
    let mine = o + lane < n_out;
    let raw = vec4<u32>(codes[min(e >> 3u, params.nwords - 1u)]);
    let sc = select(0.0, block_scale(blk), mine);  // rows of W past `out` contribute 0
    let w0 = nf4_4((raw >> vec4<u32>(4u, 0u, 12u, 8u)) & vec4<u32>(0xfu)) * sc;
    let w1 = nf4_4((raw >> vec4<u32>(20u, 16u, 28u, 24u)) & vec4<u32>(0xfu)) * sc;
    let o1 = min(o + 1u, n_out - 1u);
    let o2 = min(o + 2u, n_out - 1u);
    let o3 = min(o + 3u, n_out - 1u);
    acc = acc_step(acc, load4(db[0], o), load4(db[1], o), quadBroadcast(w0, 0u), quadBroadcast(w1, 0u));
    acc = acc_step(acc, load4(db[0], o1), load4(db[1], o1), quadBroadcast(w0, 1u), quadBroadcast(w1, 1u));
    acc = acc_step(acc, load4(db[0], o2), load4(db[1], o2), quadBroadcast(w0, 2u), quadBroadcast(w1, 2u));
    acc = acc_step(acc, load4(db[0], o3), load4(db[1], o3), quadBroadcast(w0, 3u), quadBroadcast(w1, 3u));

    e += step_elems;
    blk += step_blocks;
    rem += step_rem;
    if (rem >= bs) {
      rem -= bs;
      blk += 1u;
    }
  }
  if (k0 < n_in) { store_acc(acc, row0, k0, n_in); }
}
