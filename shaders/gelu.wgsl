// gelu.wgsl — GELU, tanh approximation (GPT-2's `gelu_new`), and its backward. Elementwise over N values.
//
//   gelu_forward:   out = 0.5·x·(1 + tanh(z)),  z = √(2/π)·(x + 0.044715·x³)          (=)
//   gelu_backward:  dx = dy · gelu'(x)                                                 (=)
//                   gelu'(x) = 0.5·(1 + tanh z) + 0.5·x·(1 − tanh² z)·√(2/π)·(1 + 3·0.044715·x²)
// Nothing is saved by forward: backward recomputes from x.
//
// Written stably with the identity 0.5·(1 + tanh z) = sigmoid(2z), so gelu = x·σ(u), u = 2z, and
// 0.5·(1 − tanh² z) = 2·σ(u)·(1 − σ(u)). σ is evaluated from e = exp(−|u|) ≤ 1, which never
// overflows (a naive tanh = (e^{2z} − 1)/(e^{2z} + 1) gives inf/inf = NaN for large z), and
// σ(u) for very negative x keeps its relative precision (1 + tanh z would cancel to 0).
// x is clamped to ±20 inside z: there σ is already exactly 0 or 1 in f32, and x³ cannot overflow.
//
// bindings (group 0)                    shape   access
//   0 params                            —       uniform { n }
//   forward:  1 out  2 x                (N)     rw, read
//   backward: 1 dx  2 dy  3 x           (N)     rw, read, read
//
// Workgroup size is the override WG; grids larger than 65535 workgroups fold into y.

struct Params {
  n: u32,
}

override WG: u32 = 256;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_COEF: f32 = 0.044715;

@group(0) @binding(0) var<uniform> params: Params;

// u = 2z = 2·√(2/π)·(x + 0.044715·x³), for x already clamped to ±20 (see header).
fn gelu_u(xc: f32) -> f32 {
  return 2.0 * SQRT_2_OVER_PI * (xc + GELU_COEF * xc * xc * xc);
}

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(WG)
fn gelu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let v = x[i];
  let u = gelu_u(clamp(v, -20.0, 20.0));
  let e = exp(-abs(u));
  let s = 1.0 / (1.0 + e);
  let sig = select(e * s, s, u >= 0.0);   // σ(u)
  out[i] = v * sig;
}

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> xb: array<f32>;

@compute @workgroup_size(WG)
fn gelu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  // Beyond ±20 the second term below is exactly 0 in f32, so using the clamped value there is exact.
  let xc = clamp(xb[i], -20.0, 20.0);
  let u = gelu_u(xc);
  let du = 2.0 * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * xc * xc);
  let e = exp(-abs(u));
  let s = 1.0 / (1.0 + e);
  let sig = select(e * s, s, u >= 0.0);   // σ(u)
  let dsig = e * s * s;                   // σ(u)·(1 − σ(u)), without cancellation
  dx[i] = dy[i] * (sig + xc * dsig * du);
}
