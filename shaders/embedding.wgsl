// embedding.wgsl — token embedding lookup (plus GPT-2's learned positions) and its backward.
//
//   N tokens (N = B·T: B sequences of T tokens), C channels, V vocabulary rows, P position rows.
//
//   embedding_forward:             out[n, :] = wte[ids[n], :] (+ wpe[pos_start + n mod T, :] if use_pos)   (=)
//                                  Llama: use_pos = 0 (bind wte again as wpe; it is not read).
//                                  GPT-2: use_pos = 1, positions are pos_start + t (t = n mod T): llm.c's
//                                  encoder_forward in one pass. pos_start is 0 in training and the number
//                                  of cached tokens when decoding.
//   embedding_backward:            d_wte[rows[u], :] += Σ_{k = offsets[u]}^{offsets[u+1]−1} d_out[order[k], :]   (+=)
//                                  Deterministic without atomics: the host sorts the token positions by id
//                                  (src/kernels/embedding.ts buildEmbeddingIndex); each touched vocabulary
//                                  row sums its own tokens in ascending position order. Work is U·C
//                                  (U = distinct ids ≤ N), independent of V, so a 150k vocabulary costs nothing.
//   embedding_positions_backward:  d_wpe[pos_start + t, :] += Σ_b d_out[b·T + t, :]                         (+=)
//
// Out-of-range ids (ids[n] ≥ V) read nothing: the token term is 0 (the host validates ids and throws
// a KernelArgumentError naming the id before this can happen). Positions ≥ P likewise read/write nothing.
// Forward saves nothing for backward (the ids are host data; backward needs only the index built from them).
//
// bindings (group 0)                                 shape        access
//   0 params                                         —            uniform Params
//   forward:              1 out                      (N, C)       rw
//                         2 ids                      (N) u32      read
//                         3 wte                      (V, C)       read
//                         4 wpe                      (P, C)       read
//   backward:             1 d_wte                    (V, C)       rw
//                         2 d_out                    (N, C)       read
//                         3 rows                     (U) u32      read   distinct ids, ascending
//                         4 offsets                  (U+1) u32    read   row u owns order[offsets[u] .. offsets[u+1])
//                         5 order                    (N) u32      read   token positions grouped by id, ascending
//   positions_backward:   1 d_wpe                    (P, C)       rw
//                         2 d_out                    (N, C)       read
//
// One invocation per output element; workgroup size is the override WG; grids fold into y.

struct Params {
  n_tokens: u32,   // N
  channels: u32,   // C
  vocab: u32,      // V
  seq_len: u32,    // T
  pos_start: u32,
  n_pos: u32,      // P
  use_pos: u32,    // 1: add wpe rows (forward)
  n_touched: u32,  // U (backward)
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;

@compute @workgroup_size(WG)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);
  if (i >= params.n_tokens * params.channels) { return; }
  let n = i / params.channels;
  let c = i % params.channels;
  let id = ids[n];
  var v = 0.0;
  if (id < params.vocab) { v = wte[id * params.channels + c]; }
  if (params.use_pos != 0u) {
    let pos = params.pos_start + n % params.seq_len;
    if (pos < params.n_pos) { v += wpe[pos * params.channels + c]; }
  }
  out[i] = v;
}

@group(0) @binding(1) var<storage, read_write> d_wte: array<f32>;
@group(0) @binding(2) var<storage, read> d_out: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<storage, read> offsets: array<u32>;
@group(0) @binding(5) var<storage, read> order: array<u32>;

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);
  if (i >= params.n_touched * params.channels) { return; }
  let u = i / params.channels;
  let c = i % params.channels;
  let row = rows[u];
  if (row >= params.vocab) { return; }
  var s = 0.0;
  for (var k = offsets[u]; k < offsets[u + 1u]; k++) {
    s += d_out[order[k] * params.channels + c];
  }
  let j = row * params.channels + c;
  d_wte[j] = d_wte[j] + s;
}

@group(0) @binding(1) var<storage, read_write> d_wpe: array<f32>;

@compute @workgroup_size(WG)
fn embedding_positions_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);
  if (i >= params.seq_len * params.channels) { return; }
  let t = i / params.channels;
  let c = i % params.channels;
  let pos = params.pos_start + t;
  if (pos >= params.n_pos) { return; }
  var s = 0.0;
  // Sequences in order b = 0 … B−1: a fixed summation order, so the result is deterministic.
  for (var n = t; n < params.n_tokens; n += params.seq_len) {
    s += d_out[n * params.channels + c];
  }
  let j = pos * params.channels + c;
  d_wpe[j] = d_wpe[j] + s;
}
