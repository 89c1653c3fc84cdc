// swiglu.wgsl — the SwiGLU gate of the Llama / Qwen2 MLP and its backward. Elementwise over N values
// (N = B·T·I, I = intermediate size): the MLP computes down(swiglu(gate(x), up(x))).
//
//   swiglu_forward:   out = silu(g)·u,  silu(g) = g·σ(g)                              (=)
//   swiglu_backward:  dgate = dout·u·σ(g)·(1 + g·(1 − σ(g)))                          (=)
//                     dup   = dout·silu(g)                                           (=)
// Nothing is saved by forward: backward recomputes from gate and up.
//
// σ is evaluated from e = exp(−|g|) ≤ 1, which never overflows (exp(−g) of a large negative g would
// be inf), and 1 − σ(g) is formed directly (no cancellation for large positive g).
//
// bindings (group 0)                                   shape   access
//   0 params                                           —       uniform { n }
//   forward:  1 out  2 gate  3 up                      (N)     rw, read, read
//   backward: 1 dgate  2 dup  3 dout  4 gate  5 up     (N)     rw, rw, read, read, read
//
// Workgroup size is the override WG; grids larger than 65535 workgroups fold into y.

struct Params {
  n: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;

// (σ(g), 1 − σ(g)), both to full relative precision.
fn sigmoid_pair(g: f32) -> vec2<f32> {
  let e = exp(-abs(g));
  let s = 1.0 / (1.0 + e);
  return select(vec2<f32>(e * s, s), vec2<f32>(s, e * s), g >= 0.0);
}

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> gate: array<f32>;
@group(0) @binding(3) var<storage, read> up: array<f32>;

@compute @workgroup_size(WG)
fn swiglu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let g = gate[i];
  out[i] = g * sigmoid_pair(g).x * up[i];
}

@group(0) @binding(1) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(2) var<storage, read_write> dup: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> gate_b: array<f32>;
@group(0) @binding(5) var<storage, read> up_b: array<f32>;

@compute @workgroup_size(WG)
fn swiglu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let g = gate_b[i];
  let sg = sigmoid_pair(g);
  let d = dout[i];
  dgate[i] = d * up_b[i] * sg.x * (1.0 + g * sg.y);
  dup[i] = d * g * sg.x;
}
