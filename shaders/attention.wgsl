// attention.wgsl — causal multi-head attention with grouped-query heads (GQA), forward and backward.
//
// Letters: B batch, T query tokens per sequence, NH query heads, NKV kv heads (NH = NKV·rep), D head
// dim (any size ≤ 256, odd too), S key rows per sequence in k/v, P = past: keys before the first query.
//
// Layout (token-major, heads of one token contiguous — the q/k/v projections' outputs as they are):
//   q, out, dq, d_out  [B, T, NH, D]       k, v, dk, dv  [B, S, NKV, D]       lse, delta  [B, T, NH]
// Query t sits at absolute position P + t and attends keys j ≤ P + t (causal). Training: P = 0,
// S = T. KV-cache decode: P = cached length, S ≥ P + T (the cache's capacity; rows ≥ P + T unused).
// Query head h reads kv head g = h / rep, i.e. kv head g serves query heads g·rep … (g+1)·rep − 1.
//
//   attention_forward:       s_tj = scale·q_t·k_j,  p_tj = softmax_j(s_tj),  out_t = Σ_j p_tj v_j   (=)
//                            lse_t = log Σ_j exp(s_tj)                                             (=)
//   Forward SAVES lse (the row logsumexp), not P: backward recomputes p_tj = exp(s_tj − lse_t), so
//   the saved state is O(T) per head instead of O(T²) (flash-attention style).
//   attention_backward_dq:   delta_t = d_out_t · out_t                                             (=)
//                            dq_t = scale·Σ_j p_tj (d_out_t·v_j − delta_t) k_j                     (=)
//   attention_backward_dkv:  dv_j = Σ_{h in group} Σ_t p_tj d_out_t                                (=)
//                            dk_j = scale·Σ_{h in group} Σ_t p_tj (d_out_t·v_j − delta_t) q_t      (=)
//   (run dq first: dkv reads the delta it writes). Rows j ≥ P + T of dk, dv are written 0.
// Everything is assigned (=): attention has no parameters. No atomics: each dk/dv row is owned by one
// invocation that loops over its group's query heads and positions in a fixed order (deterministic).
//
// Softmax is numerically stable: an online running max m with rescaling (exp of non-positive
// numbers only), all in f32. Any head dim D ≤ 256 (MAX_D) works, odd ones too.
//
// bindings (group 0)       forward            backward_dq          backward_dkv
//   0 params               uniform            uniform              uniform
//   1                      out    rw          dq     rw            dk     rw
//   2                      lse    rw          delta  rw            dv     rw
//   3 q                    read               read                 read
//   4 k                    read               read                 read
//   5 v                    read               read                 read
//   6                      —                  d_out  read          d_out  read
//   7                      —                  lse    read          lse    read
//   8                      —                  out    read          delta  read
//
// Invocations: forward and dq one per (b, t, h) query row, ordered with h fastest so that neighbours
// share t (same causal loop length) and kv rows; dkv one per (b, j, g) key row. Grids fold into y.

struct Params {
  n_rows: u32,     // forward, dq: B·T·NH;  dkv: B·S·NKV
  seq_len: u32,    // T
  past: u32,       // P
  kv_len: u32,     // S
  heads: u32,      // NH
  kv_heads: u32,   // NKV
  head_dim: u32,   // D
  scale: f32,      // usually 1/√D
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse_out: array<f32>;
@group(0) @binding(1) var<storage, read_write> dq: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta_out: array<f32>;
@group(0) @binding(1) var<storage, read_write> dk: array<f32>;
@group(0) @binding(2) var<storage, read_write> dv: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read> d_out: array<f32>;
@group(0) @binding(7) var<storage, read> lse: array<f32>;
@group(0) @binding(8) var<storage, read> saved_out: array<f32>;
@group(0) @binding(8) var<storage, read> delta: array<f32>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// Offset of kv row (b, j, g) in k/v.
fn kv_base(b: u32, j: u32, g: u32) -> u32 {
  return ((b * params.kv_len + j) * params.kv_heads + g) * params.head_dim;
}

// Largest head dim: per-invocation rows and accumulators live in private arrays of this size
// (the host rejects D > MAX_D). Private memory is much faster than re-reading storage on SwiftShader.
const MAX_D: u32 = 256u;

@compute @workgroup_size(WG)
fn attention_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);              // (b·T + t)·NH + h
  if (i >= params.n_rows) { return; }
  let D = params.head_dim;
  let h = i % params.heads;
  let bt = i / params.heads;
  let t = bt % params.seq_len;
  let b = bt / params.seq_len;
  let g = h / (params.heads / params.kv_heads);
  let qo = i * D;

  var qs: array<f32, MAX_D>;                 // scale·q_t
  var acc: array<f32, MAX_D>;                // Σ_j exp(s_j − m)·v_j (zero-initialised)
  for (var d = 0u; d < D; d++) { qs[d] = q[qo + d] * params.scale; }
  // Online softmax: running max m and running sum l = Σ exp(s_j − m). Starting from a very negative
  // m makes the first key take the "new max" branch with c = 0.
  var m = -3.0e38;
  var l = 0.0;
  for (var j = 0u; j <= params.past + t; j++) {
    let ko = kv_base(b, j, g);
    var s = 0.0;
    for (var d = 0u; d < D; d++) { s += qs[d] * k[ko + d]; }
    // new = old·c + p·v_j: either the max moves to s (c = exp(m − s), p = 1) or not (c = 1).
    var c = 1.0;
    var p = 1.0;
    if (s > m) { c = exp(m - s); m = s; } else { p = exp(s - m); }
    l = l * c + p;
    for (var d = 0u; d < D; d++) { acc[d] = acc[d] * c + p * v[ko + d]; }
  }
  let inv_l = 1.0 / l;
  for (var d = 0u; d < D; d++) { out[qo + d] = acc[d] * inv_l; }
  lse_out[i] = m + log(l);
}

@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);              // (b·T + t)·NH + h
  if (i >= params.n_rows) { return; }
  let D = params.head_dim;
  let h = i % params.heads;
  let bt = i / params.heads;
  let t = bt % params.seq_len;
  let b = bt / params.seq_len;
  let g = h / (params.heads / params.kv_heads);
  let qo = i * D;

  var qs: array<f32, MAX_D>;                 // scale·q_t
  var dor: array<f32, MAX_D>;                // d_out_t
  var acc: array<f32, MAX_D>;                // dq_t / scale
  // delta_t = Σ_j p_tj (d_out_t·v_j) = d_out_t·out_t: the softmax backward's row term.
  var dl = 0.0;
  for (var d = 0u; d < D; d++) {
    qs[d] = q[qo + d] * params.scale;
    dor[d] = d_out[qo + d];
    dl += dor[d] * saved_out[qo + d];
  }
  delta_out[i] = dl;
  let row_lse = lse[i];
  for (var j = 0u; j <= params.past + t; j++) {
    let ko = kv_base(b, j, g);
    var s = 0.0;
    var dp = 0.0;
    for (var d = 0u; d < D; d++) {
      s += qs[d] * k[ko + d];
      dp += dor[d] * v[ko + d];
    }
    let ds = exp(s - row_lse) * (dp - dl);   // p_tj (dP_tj − delta_t)
    for (var d = 0u; d < D; d++) { acc[d] += ds * k[ko + d]; }
  }
  for (var d = 0u; d < D; d++) { dq[qo + d] = acc[d] * params.scale; }
}

@compute @workgroup_size(WG)
fn attention_backward_dkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);              // (b·S + j)·NKV + g
  if (i >= params.n_rows) { return; }
  let D = params.head_dim;
  let T = params.seq_len;
  let NH = params.heads;
  let rep = NH / params.kv_heads;
  let g = i % params.kv_heads;
  let bj = i / params.kv_heads;
  let j = bj % params.kv_len;
  let b = bj / params.kv_len;
  let ko = i * D;

  var ks: array<f32, MAX_D>;                 // scale·k_j
  var vr: array<f32, MAX_D>;                 // v_j
  var dka: array<f32, MAX_D>;                // dk_j / scale
  var dva: array<f32, MAX_D>;                // dv_j
  for (var d = 0u; d < D; d++) {
    ks[d] = k[ko + d] * params.scale;
    vr[d] = v[ko + d];
  }
  // Queries that see key j: P + t ≥ j. (None when j ≥ P + T: the row is written 0.)
  let t0 = select(0u, j - params.past, j > params.past);
  for (var h = g * rep; h < (g + 1u) * rep; h++) {
    for (var t = t0; t < T; t++) {
      let r = (b * T + t) * NH + h;          // the query row (b, t, h)
      let qo = r * D;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < D; d++) {
        s += q[qo + d] * ks[d];
        dp += d_out[qo + d] * vr[d];
      }
      let p = exp(s - lse[r]);
      let ds = p * (dp - delta[r]);
      for (var d = 0u; d < D; d++) {
        dva[d] += p * d_out[qo + d];
        dka[d] += ds * q[qo + d];
      }
    }
  }
  for (var d = 0u; d < D; d++) {
    dk[ko + d] = dka[d] * params.scale;
    dv[ko + d] = dva[d];
  }
}
