// adamw.wgsl — one AdamW step over a flat f32 parameter tensor, exactly as torch.optim.AdamW
// (peft-spec §7.1; torch `_single_tensor_adam` with decoupled weight decay):
//
//   g  = grad · clip_coef[0]                         gradient clipping without a read-back: clip_coef is
//                                                    written on the GPU by grad_norm_finalize (1.0 = no clip)
//   θ ← θ · (1 − lr·λ)                               decoupled decay first
//   m ← lerp(m, g, 1 − β1)  = β1·m + (1−β1)·g        torch uses lerp; same formula, torch's rounding
//   v ← β2·v + (1−β2)·g²
//   θ ← θ − step_size · m / (√v / √(1−β2^t) + ε)     step_size = lr / (1−β1^t); ε added AFTER the division
//
// The bias corrections depend only on the step t, so the host computes them in float64 and passes
// them (rounded once to f32, as torch passes Python floats to f32 tensor ops): `decay` = 1 − lr·λ,
// `step_size` = lr / (1 − β1^t), `bc2_sqrt` = √(1 − β2^t).
//
// bindings (group 0)   shape   access
//   0 params           —       uniform Params
//   1 param            (N)     rw    θ, updated in place (=)
//   2 m                (N)     rw    first moment, updated in place (=)
//   3 v                (N)     rw    second moment, updated in place (=)
//   4 grad             (N)     read  the accumulated gradient (not modified; the clip is applied on the fly)
//   5 clip_coef        (1)     read  gradient scale, clip_coef[0]
//
// One invocation per element; grids larger than 65535 workgroups fold into y.

struct Params {
  n: u32,
  decay: f32,      // 1 − lr·weight_decay
  beta1: f32,
  beta2: f32,
  lerp_w: f32,     // 1 − β1 (torch's lerp weight)
  one_minus_beta2: f32,
  step_size: f32,  // lr / (1 − β1^t)
  bc2_sqrt: f32,   // √(1 − β2^t)
  eps: f32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;
@group(0) @binding(5) var<storage, read> clip_coef: array<f32>;

@compute @workgroup_size(WG)
fn adamw_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let g = grad[i] * clip_coef[0];
  let theta = param[i] * params.decay;

  // torch.lerp(m, g, w): m + w·(g − m) for w < 0.5, else g − (g − m)·(1 − w).
  let m_old = m[i];
  let w = params.lerp_w;
  let m_new = select(g - (g - m_old) * (1.0 - w), m_old + w * (g - m_old), w < 0.5);
  let v_new = v[i] * params.beta2 + params.one_minus_beta2 * g * g;

  let denom = sqrt(v_new) / params.bc2_sqrt + params.eps;
  param[i] = theta - params.step_size * (m_new / denom);
  m[i] = m_new;
  v[i] = v_new;
}
