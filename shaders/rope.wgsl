// rope.wgsl — rotary position embedding (RoPE), Hugging Face `rotate_half` (half-split) convention,
// applied IN PLACE to queries or keys, and its backward (also in place).
//
// Letters: B batch, T tokens per sequence, NH heads of this tensor (query or kv heads), D head dim
// (even), H = D/2 rotation pairs per head.
//
// Layout: x is [B, T, NH, D], token-major with the heads of one token contiguous — exactly the output
// of q_proj / k_proj ([B, T, NH·D]) viewed per head. Pair i of a head couples element i with element
// i + H (not 2i with 2i+1: HF permutes Meta's interleaved weights so the half split is right).
//
//   pos      = pos_offset + t                          (t = token index in its sequence; pos_offset
//                                                      is the KV-cache length in a decode step, else 0)
//   angle_i  = f32(pos) · inv_freq[i]                  (one f32 product, as HF does in f32)
//   rope_forward:   x_i     ← x_i cos − x_{i+H} sin     (=, in place)
//                   x_{i+H} ← x_{i+H} cos + x_i sin
//   rope_backward:  the transpose = inverse rotation (sin → −sin), also in place on dx:
//                   dx_i     ← dy_i cos + dy_{i+H} sin  (=, in place: the buffer holds dy on entry and
//                   dx_{i+H} ← dy_{i+H} cos − dy_i sin      dx on exit)
// RoPE has no parameters, so nothing accumulates; forward saves nothing (the backward only needs the
// positions, and it does not need the pre-rotation x).
//
// inv_freq is a host-computed table [H] (plain 1/θ^(2i/D), or llama3-scaled; see src/kernels/rope.ts),
// so θ and any scaling live on the host and the kernel stays one pipeline.
//
// Angles reach ~2048 rad at position 2048; cos/sin are computed by our own range reduction and
// polynomials (see cos_sin), because the built-ins are too coarse for this.
//
// bindings (group 0)                        shape        access
//   0 params                                —            uniform { n_pairs, seq_len, heads, half, pos_offset }
//   1 x   (forward) / dx (backward)         [B,T,NH,D]   rw (in place)
//   2 inv_freq                              [H]          read
//
// One invocation per (token, head, pair): n_pairs = B·T·NH·H. Grids over 65535 workgroups fold into y.

struct Params {
  n_pairs: u32,     // B·T·NH·H
  seq_len: u32,     // T
  heads: u32,       // NH
  half: u32,        // H = D/2
  pos_offset: u32,  // position of token t = 0
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;

// π/2 split in three (Cody–Waite): k·PIO2_HI is exact for |k| < 2^16 and k·PIO2_MID for |k| < 2^12
// (angles up to ~6400 rad), so r = angle − k·π/2 keeps full f32 accuracy.
const PIO2_HI: f32 = 1.5703125;
const PIO2_MID: f32 = 4.838705062866211e-4;
const PIO2_LO: f32 = -4.371138828673793e-8;
const TWO_OVER_PI: f32 = 0.6366197723675814;

// (cos, sin) of `angle`, accurate to a few f32 ulps. The built-in cos/sin are only specified to an
// absolute error of 2^-11 on [−π, π] (SwiftShader is that coarse: ~2e-4), and unspecified outside it,
// so we reduce to r ∈ [−π/4, π/4] and use the Cephes sinf/cosf minimax polynomials.
fn cos_sin(angle: f32) -> vec2<f32> {
  let k = round(angle * TWO_OVER_PI);
  let r = ((angle - k * PIO2_HI) - k * PIO2_MID) - k * PIO2_LO;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  // angle = k·π/2 + r: rotate (cos r, sin r) by quarter turns.
  switch (i32(k) & 3) {
    case 0: { return vec2<f32>(c, s); }
    case 1: { return vec2<f32>(-s, c); }
    case 2: { return vec2<f32>(-c, -s); }
    default: { return vec2<f32>(s, -c); }
  }
}

// Rotates pair `i` of flat index `gi` by +angle (dir = 1) or −angle (dir = −1).
fn rotate_pair(gi: u32, dir: f32) {
  let half = params.half;
  let pair = gi % half;
  let row = gi / half;                       // (b·T + t)·NH + h
  let t = (row / params.heads) % params.seq_len;
  let pos = f32(params.pos_offset + t);
  let cs = cos_sin(pos * inv_freq[pair]);
  let s = dir * cs.y;
  let lo = row * 2u * half + pair;
  let hi = lo + half;
  let a = x[lo];
  let b = x[hi];
  x[lo] = a * cs.x - b * s;
  x[hi] = b * cs.x + a * s;
}

@compute @workgroup_size(WG)
fn rope_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n_pairs) { return; }
  rotate_pair(i, 1.0);
}

@compute @workgroup_size(WG)
fn rope_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n_pairs) { return; }
  rotate_pair(i, -1.0);
}
