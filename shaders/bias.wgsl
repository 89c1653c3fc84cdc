// bias.wgsl — a bias vector added to every row (the `+ b` of a linear layer) and its gradient.
//
//   bias_forward:   y[r, c] += b[c]                 (+=, in place)   y: (R, C), b: (C)
//   bias_backward:  db[c]   += Σ_r dy[r, c]         (+=)             dy: (R, C), db: (C)
//
// The forward runs in place on the output of the matmul before it (y = x·Wᵀ, then y += b), so it
// needs no extra buffer and saves nothing for backward. Backward: the input gradient is dy itself
// (nothing to write); db is a parameter gradient and accumulates. Each bias_backward invocation owns
// one column and sums its rows in a fixed order (four interleaved partial sums, added at the end):
// deterministic, no atomics.
//
// bindings (group 0)                      shape     access
//   0 params                              —         uniform { rows, cols }
//   forward:  1 y   2 b                   (R, C), (C)   rw, read
//   backward: 1 db  2 dy                  (C), (R, C)   rw, read
//
// Workgroup size is the override WG; grids larger than 65535 workgroups fold into y.

struct Params {
  rows: u32,
  cols: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;

@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(WG)
fn bias_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.rows * params.cols) { return; }
  y[i] = y[i] + b[i % params.cols];
}

@group(0) @binding(1) var<storage, read_write> db: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;

@compute @workgroup_size(WG)
fn bias_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = gid.x + gid.y * nwg.x * WG;
  let cols = params.cols;
  if (c >= cols) { return; }
  var s0 = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  var s3 = 0.0;
  let rows4 = params.rows & ~3u;
  for (var r = 0u; r < rows4; r += 4u) {
    let at = r * cols + c;
    s0 += dy[at];
    s1 += dy[at + cols];
    s2 += dy[at + 2u * cols];
    s3 += dy[at + 3u * cols];
  }
  for (var r = rows4; r < params.rows; r++) {
    s0 += dy[r * cols + c];
  }
  db[c] = db[c] + ((s0 + s1) + (s2 + s3));
}
