// grad_norm.wgsl — global L2 norm of all gradients and the clip coefficient, as torch's
// clip_grad_norm_ (peft-spec §7.3), deterministic (no atomics: fixed reduction order):
//
//   grad_norm_partial:   partials[offset + w] = Σ g[i]²  over chunk w of one gradient tensor      (=)
//                        (chunk = WG·ITEMS consecutive elements; one workgroup per chunk). Call it once
//                        per gradient tensor with disjoint offsets into one shared `partials` buffer.
//   grad_norm_finalize:  total = √(Σ partials[0..count))   → total_norm[0]                          (=)
//                        coef  = min(1, max_norm / (total + 1e-6)) → clip_coef[0], or 1 if !clip    (=)
//                        One workgroup. `total_norm` is the pre-clip norm to log.
//   grad_norm_scale:     g[i] *= clip_coef[0]  (in place, for callers who want clipped gradients;       (=)
//                        adamw_update instead reads clip_coef itself)
//
// bindings (group 0)                                     shape                access
//   0 params                                             —                    uniform (per entry point)
//   partial:   1 partials  2 grad                        (P), (N)             rw, read
//   finalize:  1 total_norm  2 clip_coef  3 partials     (1), (1), (P)        rw, rw, read
//   scale:     1 grad  2 clip_coef                       (N), (1)             rw, read
//
// Sums are f32 (like torch's f32 norms): per invocation a sequential sum of ITEMS squares, then a
// tree over the workgroup (WG must be a power of two). Gradients whose squares overflow f32 (|g| ≳ 1e19)
// give an infinite norm, as in torch; non-finite norms are not special-cased here (the host reads
// total_norm and decides, e.g. skips the step).

override WG: u32 = 256;
override ITEMS: u32 = 16;

struct PartialParams {
  n: u32,       // elements of this gradient tensor
  offset: u32,  // where this tensor's partial sums start in `partials`
}

struct FinalizeParams {
  count: u32,    // number of partial sums
  max_norm: f32,
  clip: u32,     // 0: coef = 1 (norm only, no clipping)
}

struct ScaleParams {
  n: u32,
}

var<workgroup> scratch: array<f32, WG>;

// Tree sum of scratch[0..WG) into scratch[0]. Called from uniform control flow by the whole workgroup.
fn workgroup_sum(lid: u32) -> f32 {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { scratch[lid] = scratch[lid] + scratch[lid + s]; }
    workgroupBarrier();
  }
  return scratch[0];
}

@group(0) @binding(0) var<uniform> pp: PartialParams;
@group(0) @binding(1) var<storage, read_write> partials_out: array<f32>;
@group(0) @binding(2) var<storage, read> grad_in: array<f32>;

@compute @workgroup_size(WG)
fn grad_norm_partial(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let chunk = wid.x + wid.y * nwg.x;  // workgroup-uniform, so the early return keeps barriers uniform
  let base = chunk * WG * ITEMS;
  if (base >= pp.n) { return; }
  var acc = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = base + k * WG + lid;  // consecutive invocations read consecutive elements
    if (i < pp.n) {
      let g = grad_in[i];
      acc = acc + g * g;
    }
  }
  scratch[lid] = acc;
  let total = workgroup_sum(lid);
  if (lid == 0u) { partials_out[pp.offset + chunk] = total; }
}

@group(0) @binding(0) var<uniform> fp: FinalizeParams;
@group(0) @binding(1) var<storage, read_write> total_norm: array<f32>;
@group(0) @binding(2) var<storage, read_write> clip_coef_out: array<f32>;
@group(0) @binding(3) var<storage, read> partials_in: array<f32>;

@compute @workgroup_size(WG)
fn grad_norm_finalize(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < fp.count; i += WG) { acc = acc + partials_in[i]; }
  scratch[lid] = acc;
  let sum = workgroup_sum(lid);
  if (lid == 0u) {
    let total = sqrt(sum);
    total_norm[0] = total;
    clip_coef_out[0] = select(1.0, min(1.0, fp.max_norm / (total + 1e-6)), fp.clip != 0u);
  }
}

@group(0) @binding(0) var<uniform> sp: ScaleParams;
@group(0) @binding(1) var<storage, read_write> grad_io: array<f32>;
@group(0) @binding(2) var<storage, read> clip_coef_in: array<f32>;

@compute @workgroup_size(WG)
fn grad_norm_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= sp.n) { return; }
  grad_io[i] = grad_io[i] * clip_coef_in[0];
}
