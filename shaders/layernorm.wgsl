// layernorm.wgsl — LayerNorm (GPT-2's ln_1, ln_2, ln_f) over the last dimension and its backward.
// N = rows (B·T tokens), C = channels.
//
//   layernorm_forward:        mean[n] = mean_j x[n,j],  rstd[n] = 1/sqrt(var_j x[n,j] + eps)   (=)
//                             out[n,j] = (x[n,j] − mean)·rstd·w[j] + b[j]                       (=)
//   layernorm_backward:       with x̂ = (x − mean)·rstd and g = dy·w:
//                             dx[n,j] = rstd·(g[j] − mean_k g[k] − x̂[j]·mean_k(g[k]·x̂[k]))    (=)
//   layernorm_backward_dwdb:  dw[j] += Σ_n dy[n,j]·x̂[n,j],  db[j] += Σ_n dy[n,j]                (+=)
// forward saves mean (N) and rstd (N) for backward; backward recomputes x̂ from x, mean, rstd.
// The variance is biased (divides by C), as torch.nn.LayerNorm.
//
// bindings (group 0)                                          shape                       access
//   0 params                                                  —                           uniform { n_rows, c, eps }
//   forward:        1 out  2 mean  3 rstd  4 x  5 w  6 b      (N,C) (N) (N) (N,C) (C) (C) rw, rw, rw, read, read, read
//   backward:       1 dx  2 dy  3 x  4 w  5 mean  6 rstd      (N,C) (N,C) (N,C) (C) (N) (N)  rw, read…
//   backward_dwdb:  1 dw  2 db  3 dy  4 x  5 mean  6 rstd     (C) (C) (N,C) (N,C) (N) (N) rw, rw, read…
//
// Statistics are two-pass and shifted by the row's first element (x − x[0]): a constant row gives
// exactly mean = x[0], var = 0 and out = b, and large offsets do not cancel catastrophically.
// Backward reads the saved f32 mean, so its x̂ carries an error of about ulp(mean)·rstd (as in
// PyTorch's f32 LayerNorm): negligible for |mean| up to ~100, ~5e-4 at |mean| ≈ 1e4.
//
// Row kernels (forward, backward): a workgroup of WG invocations handles WG/LANES rows; the LANES
// invocations of one row stride over C and combine partial sums with a fixed-order tree in
// workgroup memory (deterministic). LANES = 1: one invocation per row, no barriers (SwiftShader);
// 32…256 suits real GPUs. LANES is a power of two dividing WG. Grids over 65535 groups fold into y.
// backward_dwdb: a workgroup covers COLS columns with WG/COLS row lanes, summed in a fixed order.
// No float atomics: results are bitwise reproducible.

struct Params {
  n_rows: u32,
  c: u32,
  eps: f32,   // unused by backward_dwdb
}

override WG: u32 = 64;
override LANES: u32 = 1;   // row kernels: invocations per row
override COLS: u32 = 64;   // backward_dwdb: columns per workgroup

@group(0) @binding(0) var<uniform> params: Params;

var<workgroup> red: array<f32, WG>;

// Sum of `v` over the LANES invocations of this row (all receive it). Call from uniform control flow.
fn row_sum(lid: u32, v: f32) -> f32 {
  if (LANES == 1u) { return v; }
  let lane = lid % LANES;
  red[lid] = v;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s = s / 2u) {
    if (lane < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[lid - lane];
  workgroupBarrier();   // `red` is reused by the next call
  return total;
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * (WG / LANES) + lid / LANES;
}

// ---------------------------------------------------------------- forward

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<f32>;

@compute @workgroup_size(WG)
fn layernorm_forward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = params.c;
  let row = row_of(wid, nwg, lid);
  // Rows past the end still take part in row_sum's barriers: no early return before the last one.
  let live = row < params.n_rows;
  let base = row * c;
  let lane = lid % LANES;
  var shift = 0.0;
  var s = 0.0;
  if (live) {
    shift = x[base];
    for (var j = lane; j < c; j += LANES) { s += x[base + j] - shift; }
  }
  let m = row_sum(lid, s) / f32(c);   // mean of the shifted row
  var ss = 0.0;
  if (live) {
    for (var j = lane; j < c; j += LANES) {
      let d = x[base + j] - shift - m;
      ss += d * d;
    }
  }
  let r = inverseSqrt(row_sum(lid, ss) / f32(c) + params.eps);
  if (!live) { return; }
  if (lane == 0u) {
    mean_out[row] = shift + m;
    rstd_out[row] = r;
  }
  for (var j = lane; j < c; j += LANES) {
    out[base + j] = (x[base + j] - shift - m) * r * w[j] + b[j];
  }
}

// ---------------------------------------------------------------- backward (dx)

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> xb: array<f32>;
@group(0) @binding(4) var<storage, read> wb: array<f32>;
@group(0) @binding(5) var<storage, read> mean_in: array<f32>;
@group(0) @binding(6) var<storage, read> rstd_in: array<f32>;

@compute @workgroup_size(WG)
fn layernorm_backward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = params.c;
  let row = row_of(wid, nwg, lid);
  let live = row < params.n_rows;
  let base = row * c;
  let lane = lid % LANES;
  var mu = 0.0;
  var r = 0.0;
  var sg = 0.0;    // Σ g
  var sgx = 0.0;   // Σ g·x̂
  if (live) {
    mu = mean_in[row];
    r = rstd_in[row];
    for (var j = lane; j < c; j += LANES) {
      let g = dy[base + j] * wb[j];
      sg += g;
      sgx += g * (xb[base + j] - mu) * r;
    }
  }
  let mg = row_sum(lid, sg) / f32(c);
  let mgx = row_sum(lid, sgx) / f32(c);
  if (!live) { return; }
  for (var j = lane; j < c; j += LANES) {
    let xhat = (xb[base + j] - mu) * r;
    dx[base + j] = r * (dy[base + j] * wb[j] - mg - xhat * mgx);
  }
}

// ---------------------------------------------------------------- backward (dw, db)

@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
@group(0) @binding(3) var<storage, read> dyw: array<f32>;
@group(0) @binding(4) var<storage, read> xw: array<f32>;
@group(0) @binding(5) var<storage, read> mean_w: array<f32>;
@group(0) @binding(6) var<storage, read> rstd_w: array<f32>;

var<workgroup> part_w: array<f32, WG>;
var<workgroup> part_b: array<f32, WG>;

@compute @workgroup_size(WG)
fn layernorm_backward_dwdb(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = params.c;
  let lanes = WG / COLS;
  let col = (wid.x + wid.y * nwg.x) * COLS + lid % COLS;
  let lane = lid / COLS;
  var aw = 0.0;
  var ab = 0.0;
  if (col < c) {
    for (var n = lane; n < params.n_rows; n += lanes) {
      let g = dyw[n * c + col];
      aw += g * (xw[n * c + col] - mean_w[n]) * rstd_w[n];
      ab += g;
    }
  }
  if (lanes > 1u) {
    part_w[lid] = aw;
    part_b[lid] = ab;
    workgroupBarrier();
    if (lane != 0u) { return; }
    for (var l = 1u; l < lanes; l++) {
      aw += part_w[l * COLS + lid];
      ab += part_b[l * COLS + lid];
    }
  }
  if (col < c) {
    dw[col] = dw[col] + aw;
    db[col] = db[col] + ab;
  }
}
