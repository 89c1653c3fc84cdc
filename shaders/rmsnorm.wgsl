// rmsnorm.wgsl — RMSNorm (Llama, Qwen2; HF `LlamaRMSNorm`) over the last dimension and its backward.
// N = rows (B·T tokens), C = channels (hidden size).
//
//   rmsnorm_forward:      rstd[n] = 1 / sqrt(mean_j(x[n,j]²) + eps)                  (=)
//                         out[n,j] = x[n,j] · rstd[n] · w[j]                          (=)
//   rmsnorm_backward:     with g = dy·w (elementwise) and s = Σ_j g[j]·x[n,j]:
//                         dx[n,j] = rstd·g[j] − rstd³·x[n,j]·s / C                    (=)
//   rmsnorm_backward_dw:  dw[j] += Σ_n dy[n,j] · x[n,j] · rstd[n]                     (+=)
// forward saves rstd (N) for backward; backward recomputes x̂ from x and rstd.
//
// bindings (group 0)                                   shape    access
//   0 params                                           —        uniform { n_rows, c, eps }
//   forward:      1 out  2 rstd  3 x  4 w              (N,C) (N) (N,C) (C)   rw, rw, read, read
//   backward:     1 dx  2 dy  3 x  4 w  5 rstd         (N,C) (N,C) (N,C) (C) (N)   rw, read…
//   backward_dw:  1 dw  2 dy  3 x  4 rstd              (C) (N,C) (N,C) (N)   rw, read, read, read
//
// Row kernels (forward, backward): a workgroup of WG invocations handles WG/LANES rows; the LANES
// invocations of one row stride over its C channels and combine their partial sums with a fixed-order
// tree in workgroup memory (deterministic). LANES = 1 means one invocation per row and no barriers
// at all (best on SwiftShader, where barriers are expensive); LANES = 32…256 suits real GPUs.
// LANES must be a power of two dividing WG. Grids larger than 65535 workgroups fold into y.
//
// backward_dw: a workgroup covers COLS columns with WG/COLS row lanes; each invocation sums its
// column over rows lane, lane + WG/COLS, …; the row lanes are then added in a fixed order.
// No float atomics: the result is bitwise reproducible.

struct Params {
  n_rows: u32,
  c: u32,
  eps: f32,   // unused by backward_dw
}

override WG: u32 = 64;
override LANES: u32 = 1;   // row kernels: invocations per row
override COLS: u32 = 64;   // backward_dw: columns per workgroup (WG / COLS row lanes)

@group(0) @binding(0) var<uniform> params: Params;

var<workgroup> red: array<f32, WG>;

// Sum of `v` over the LANES invocations of this row (every one receives the total). Must be called
// from uniform control flow by every invocation of the workgroup.
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
  workgroupBarrier();   // `red` may be reused by the next call
  return total;
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * (WG / LANES) + lid / LANES;
}

// ---------------------------------------------------------------- forward

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;

@compute @workgroup_size(WG)
fn rmsnorm_forward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = params.c;
  let row = row_of(wid, nwg, lid);
  // Rows past the end still take part in the barriers of row_sum, so no early return here.
  let live = row < params.n_rows;
  let base = row * c;
  var ss = 0.0;
  if (live) {
    for (var j = lid % LANES; j < c; j += LANES) {
      let v = x[base + j];
      ss += v * v;
    }
  }
  let r = inverseSqrt(row_sum(lid, ss) / f32(c) + params.eps);
  if (!live) { return; }
  if (lid % LANES == 0u) { rstd_out[row] = r; }
  for (var j = lid % LANES; j < c; j += LANES) {
    out[base + j] = x[base + j] * r * w[j];
  }
}

// ---------------------------------------------------------------- backward (dx)

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> xb: array<f32>;
@group(0) @binding(4) var<storage, read> wb: array<f32>;
@group(0) @binding(5) var<storage, read> rstd_in: array<f32>;

@compute @workgroup_size(WG)
fn rmsnorm_backward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = params.c;
  let row = row_of(wid, nwg, lid);
  let live = row < params.n_rows;
  let base = row * c;
  var s = 0.0;
  if (live) {
    for (var j = lid % LANES; j < c; j += LANES) {
      s += dy[base + j] * wb[j] * xb[base + j];
    }
  }
  s = row_sum(lid, s);
  if (!live) { return; }
  let r = rstd_in[row];
  let k = r * r * r * s / f32(c);
  for (var j = lid % LANES; j < c; j += LANES) {
    dx[base + j] = r * dy[base + j] * wb[j] - k * xb[base + j];
  }
}

// ---------------------------------------------------------------- backward (dw)

@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<storage, read> dyw: array<f32>;
@group(0) @binding(3) var<storage, read> xw: array<f32>;
@group(0) @binding(4) var<storage, read> rstd_w: array<f32>;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn rmsnorm_backward_dw(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = params.c;
  let lanes = WG / COLS;
  let col = (wid.x + wid.y * nwg.x) * COLS + lid % COLS;
  let lane = lid / COLS;
  var acc = 0.0;
  if (col < c) {
    for (var n = lane; n < params.n_rows; n += lanes) {
      acc += dyw[n * c + col] * xw[n * c + col] * rstd_w[n];
    }
  }
  if (lanes > 1u) {
    part[lid] = acc;
    workgroupBarrier();
    if (lane != 0u) { return; }
    for (var l = 1u; l < lanes; l++) { acc += part[l * COLS + lid]; }
  }
  if (col < c) { dw[col] = dw[col] + acc; }
}
