// cross_entropy.wgsl — softmax cross-entropy over the vocabulary, fused (the probabilities are never
// stored), with Hugging Face causal-LM semantics (docs/peft-spec.md §8).
//
//   N rows (tokens), V vocabulary (up to ~150k: each row is a loop over V, not one invocation per logit).
//   Targets are ALREADY SHIFTED by the caller: target[n] is the id of the token after token n
//   (labels[t + 1]); rows whose target is ignore_index (−100) carry no loss and no gradient.
//
//   cross_entropy_forward:  one workgroup per row. Each invocation walks the row with stride WG keeping an
//                           online (max m, Σ exp(z − m)) pair, the pairs are merged by a tree reduction:
//                           lse[n]    = m + log Σ_j exp(z_nj − m)                                   (=)
//                           losses[n] = (m − z[target]) + log Σ exp(z − m)   (= lse − z[target])     (=)
//                                       0 for ignored rows; NaN for a target outside [0, V)
//   cross_entropy_mean:     one workgroup; rows in a fixed strided order, then a fixed tree → deterministic.
//                           stats = [mean, sum, N_valid] with mean = sum / N_valid, NaN if N_valid = 0  (=)
//                           (an all-ignored batch is reported as NaN and must not be trained on)
//   cross_entropy_backward: one invocation per logit, from the saved lse (no second reduction):
//                           d_logits[n, j] = (exp(z_nj − lse[n]) − [j = target[n]]) · scale             (=)
//                           0 for ignored rows and rows with an out-of-range target.
//                           scale = 1/N_valid for this batch's mean, or 1/N_total over all micro-batches
//                           when accumulating gradients (what the HF Trainer does).
//
// Numerically stable: every exp() has a non-positive argument (max subtracted).
// Forward saves lse (N floats) for backward.
//
// bindings (group 0)                          shape      access
//   0 params                                  —          uniform Params
//   forward:  1 losses                        (N)        rw
//             2 lse                           (N)        rw
//             3 logits                        (N, V)     read
//             4 targets                       (N) i32    read
//   mean:     1 stats                         (3)        rw
//             2 row_losses                    (N)        read   losses from the forward
//             3 mean_targets                  (N) i32    read
//   backward: 1 d_logits                      (N, V)     rw     (must not alias logits)
//             2 saved_lse                     (N)        read
//             3 logits                        (N, V)     read
//             4 targets                       (N) i32    read
//
// WG (override) is the workgroup size; the tree reductions need a power of two. Rows fold into y.

struct Params {
  rows: u32,          // N
  vocab: u32,         // V
  ignore_index: i32,  // −100
  scale: f32,         // backward only
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;

const LOWEST: f32 = -3.40282346638528859812e+38f;

// A quiet NaN. Read from a private variable: bitcast of a constant would be constant-folded, and a
// NaN constant is a shader-creation error in WGSL.
var<private> NAN_BITS: u32 = 0x7fc00000u;

fn nan() -> f32 {
  return bitcast<f32>(NAN_BITS);
}

fn target_in_range(t: i32) -> bool {
  return t >= 0 && u32(t) < params.vocab;
}

var<workgroup> red_max: array<f32, WG>;
var<workgroup> red_sum: array<f32, WG>;
var<workgroup> red_count: array<u32, WG>;

@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;

@compute @workgroup_size(WG)
fn cross_entropy_forward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; } // the whole workgroup returns: barriers stay uniform
  let base = row * params.vocab;

  // Online softmax normaliser: s = Σ exp(z − m) for the running max m (rescaled when m grows).
  var m = LOWEST;
  var s = 0.0;
  for (var j = lid; j < params.vocab; j += WG) {
    let z = logits[base + j];
    if (z > m) {
      s = select(s * exp(m - z), 0.0, s == 0.0) + 1.0;
      m = z;
    } else {
      s += exp(z - m);
    }
  }
  red_max[lid] = m;
  red_sum[lid] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let m1 = red_max[lid];
      let m2 = red_max[lid + stride];
      let mm = max(m1, m2);
      red_sum[lid] = red_sum[lid] * exp(m1 - mm) + red_sum[lid + stride] * exp(m2 - mm);
      red_max[lid] = mm;
    }
    workgroupBarrier();
  }

  if (lid == 0u) {
    let mx = red_max[0];
    let log_s = log(red_sum[0]);
    lse[row] = mx + log_s;
    let t = targets[row];
    var loss = 0.0;
    if (t != params.ignore_index) {
      loss = nan();
      if (target_in_range(t)) { loss = (mx - logits[base + u32(t)]) + log_s; }
    }
    losses[row] = loss;
  }
}

@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read> row_losses: array<f32>;
@group(0) @binding(3) var<storage, read> mean_targets: array<i32>;

@compute @workgroup_size(WG)
fn cross_entropy_mean(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var count = 0u;
  for (var r = lid; r < params.rows; r += WG) {
    if (mean_targets[r] != params.ignore_index) {
      s += row_losses[r];
      count += 1u;
    }
  }
  red_sum[lid] = s;
  red_count[lid] = count;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      red_sum[lid] += red_sum[lid + stride];
      red_count[lid] += red_count[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let total = red_sum[0];
    let n = red_count[0];
    stats[0] = select(nan(), total / f32(n), n > 0u);
    stats[1] = total;
    stats[2] = f32(n);
  }
}

@group(0) @binding(1) var<storage, read_write> d_logits: array<f32>;
@group(0) @binding(2) var<storage, read> saved_lse: array<f32>;

@compute @workgroup_size(WG)
fn cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.rows * params.vocab) { return; }
  let row = i / params.vocab;
  let j = i % params.vocab;
  let t = targets[row];
  var g = 0.0;
  if (t != params.ignore_index && target_in_range(t)) {
    g = exp(logits[i] - saved_lse[row]);
    if (u32(t) == j) { g -= 1.0; }
    g *= params.scale;
  }
  d_logits[i] = g;
}
