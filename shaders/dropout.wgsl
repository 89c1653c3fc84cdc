// dropout.wgsl — inverted dropout with a counter-based random stream (Philox-4x32-10), mask regenerated.
//
//   dropout_forward:   out[i] = keep(i) ? x[i] · scale : 0        (=)
//   dropout_backward:  dx[i]  = keep(i) ? dy[i] · scale : 0       (=)   the SAME mask: regenerated from
//                                                                        (seed, offset), nothing is stored
//   keep(i)  = (w >> 8) < keep_threshold,  w = word (offset + i) of the stream of `seed`
//            ⇔ u < 1 − p for u = (w >> 8) / 2^24 (the top 24 bits), keep_threshold = ceil((1 − p)·2^24)
//   scale    = 1 / (1 − p)   (p = 0: threshold 2^24, every element kept, scale 1 → out = x exactly)
// Dropped elements are exactly 0 even where x is NaN/Inf (selected, not multiplied).
//
// The stream (identical in src/ref/rng.ts, bit for bit: integer math only): element `pos` (64-bit) is
// lane pos mod 4 of philox4x32_10(counter = [pos/4 lo, pos/4 hi, 0, 0], key = [seed_lo, seed_hi]).
// Each invocation computes one Philox block, i.e. four consecutive elements. Callers advance `offset`
// by n between draws that share a seed, so draws never reuse random numbers.
//
// bindings (group 0)              shape   access
//   0 params                      —       uniform Params
//   forward:  1 out  2 x          (n)     rw, read
//   backward: 1 dx   2 dy         (n)     rw, read
//
// Workgroup size is the override WG; grids larger than 65535 workgroups fold into y.

struct Params {
  n: u32,
  offset_lo: u32,       // first stream position (64-bit)
  offset_hi: u32,
  seed_lo: u32,         // key (64-bit)
  seed_hi: u32,
  keep_threshold: u32,  // ceil((1 − p)·2^24), in [0, 2^24]
  scale: f32,           // 1/(1 − p); 0 when p = 1
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;

// ---- Philox-4x32-10 (Salmon et al., SC 2011; Random123) -------------------------------------------
const PHILOX_M0: u32 = 0xd2511f53u;
const PHILOX_M1: u32 = 0xcd9e8d57u;
const PHILOX_W0: u32 = 0x9e3779b9u;
const PHILOX_W1: u32 = 0xbb67ae85u;

// High 32 bits of the 64-bit product a·b (WGSL has no 64-bit integers): schoolbook on 16-bit halves.
fn mul_hi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p00 = a0 * b0;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let p11 = a1 * b1;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    if (round > 0u) { k += vec2<u32>(PHILOX_W0, PHILOX_W1); }
    let hi0 = mul_hi(PHILOX_M0, c.x);
    let lo0 = PHILOX_M0 * c.x;
    let hi1 = mul_hi(PHILOX_M1, c.z);
    let lo1 = PHILOX_M1 * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}
// ----------------------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

// Invocation k handles stream block (offset / 4) + k: elements i = 4k + lane − (offset mod 4), lane 0…3.
fn block_words(k: u32) -> vec4<u32> {
  let base_lo = (params.offset_lo >> 2u) | (params.offset_hi << 30u);
  let base_hi = params.offset_hi >> 2u;
  let lo = base_lo + k;
  let hi = base_hi + select(0u, 1u, lo < base_lo); // carry
  return philox4x32_10(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(params.seed_lo, params.seed_hi));
}

fn block_count() -> u32 {
  return (params.n + (params.offset_lo & 3u) + 3u) / 4u;
}

@compute @workgroup_size(WG)
fn dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let k = gid.x + gid.y * nwg.x * WG;
  if (k >= block_count()) { return; }
  let words = block_words(k);
  let phase = params.offset_lo & 3u;
  for (var lane = 0u; lane < 4u; lane++) {
    let p = 4u * k + lane; // element index + phase
    if (p < phase) { continue; }
    let i = p - phase;
    if (i >= params.n) { break; }
    let keep = (words[lane] >> 8u) < params.keep_threshold;
    out[i] = select(0.0, x[i] * params.scale, keep);
  }
}

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;

@compute @workgroup_size(WG)
fn dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let k = gid.x + gid.y * nwg.x * WG;
  if (k >= block_count()) { return; }
  let words = block_words(k);
  let phase = params.offset_lo & 3u;
  for (var lane = 0u; lane < 4u; lane++) {
    let p = 4u * k + lane;
    if (p < phase) { continue; }
    let i = p - phase;
    if (i >= params.n) { break; }
    let keep = (words[lane] >> 8u) < params.keep_threshold;
    dx[i] = select(0.0, dy[i] * params.scale, keep);
  }
}
