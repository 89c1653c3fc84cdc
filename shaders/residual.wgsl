// residual.wgsl — the residual connection of a transformer block and its backward.
//
//   residual_forward:   out = a + b                 (=)   out, a, b: (N)
//   residual_backward:  d_acc += d_out               (+=)  where two gradient streams join: the skip
//                       path's gradient is added into the branch input's gradient (and vice versa).
//
// bindings (group 0)                       shape   access
//   0 params                               —       uniform { n }
//   forward:  1 out  2 a  3 b              (N)     rw, read, read
//   backward: 1 d_acc  2 d_out             (N)     rw, read
//
// Workgroup size is the override WG; grids larger than 65535 workgroups fold into y.

struct Params {
  n: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

@compute @workgroup_size(WG)
fn residual_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  out[i] = a[i] + b[i];
}

@group(0) @binding(1) var<storage, read_write> d_acc: array<f32>;
@group(0) @binding(2) var<storage, read> d_out: array<f32>;

@compute @workgroup_size(WG)
fn residual_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  d_acc[i] = d_acc[i] + d_out[i];
}
