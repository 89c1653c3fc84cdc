// lora.wgsl — the scaled low-rank (LoRA) branch of a linear layer and its backward (peft-spec §1.2):
//
//   y = W x + b + s · B (A · x_d),   x_d = dropout(x) on the LoRA branch only, s = lora_alpha / r
//   (or lora_alpha / √r for rsLoRA). Letters: N rows (tokens, B·T), IN = in_features,
//   OUT = out_features, R = rank r (small: 1–64).
//
//   lora_forward_down:   u  = x_d · Aᵀ                 [N, R]     (=)  saved for backward
//   lora_forward_up:     y += s · u · Bᵀ               [N, OUT]   (+=) y already holds the base output W x + b
//   lora_backward_du:    du = s · dy · B               [N, R]     (=)  ∂L/∂u, scratch for the next two passes
//   lora_backward_db:    dB += s · dyᵀ · u             [OUT, R]   (+=) parameter gradient
//   lora_backward_da:    dA += duᵀ · x_d               [R, IN]    (+=) parameter gradient
//   lora_backward_dx:    dx += du · A                  [N, IN]    (+=) dx already holds the base path's
//                                                                      input gradient Wᵀ dy
// Dropout is the caller's: it passes x_d = mask/(1−p) ⊙ x (dropout_forward; x itself when p = 0) to
// lora_forward_down AND lora_backward_da (dA uses x_d, not x). With dropout, the LoRA part of ∂L/∂x must
// be multiplied by the same mask/(1−p): run lora_backward_dx into a zeroed scratch (∂L/∂x_d), apply
// dropout_backward with the same seed/offset, then add the result to the base dx (residual_backward).
// Without dropout, accumulate straight into the base dx.
//
// bindings (group 0)                                          access
//   0 params                                                  uniform { n, in_f, out_f, r, scale }
//   forward_down:  1 u [N,R]      2 x_d [N,IN]    3 A [R,IN]    rw, read, read
//   forward_up:    1 y [N,OUT]    2 u [N,R]       3 B [OUT,R]   rw, read, read
//   backward_du:   1 du [N,R]     2 dy [N,OUT]    3 B [OUT,R]   rw, read, read
//   backward_db:   1 dB [OUT,R]   2 dy [N,OUT]    3 u [N,R]     rw, read, read
//   backward_da:   1 dA [R,IN]    2 du [N,R]      3 x_d [N,IN]  rw, read, read
//   backward_dx:   1 dx [N,IN]    2 du [N,R]      3 A [R,IN]    rw, read, read
// All row-major (PEFT / nn.Linear layout: A [r, in], B [out, r]).
//
// Every pass is a small matmul C[M, P] (=|+=) α · Σ_q L[m, q] · Rt[q, p]. Register blocking: each
// invocation computes a 4×4 block of C in registers (4 loads of L and 4 of Rt per step of q feed 16
// multiply-adds); no workgroup memory or barriers (expensive on CPU adapters). Row/column indices
// past the edge are clamped for loading and masked for storing. Workgroup WG_X × WG_Y invocations,
// x across P (columns), y across M (rows).

struct Params {
  n: u32,      // N rows (tokens)
  in_f: u32,   // IN
  out_f: u32,  // OUT
  r: u32,      // R
  scale: f32,  // s
}

override WG_X: u32 = 8;
override WG_Y: u32 = 8;

@group(0) @binding(0) var<uniform> params: Params;

// The 4×4 accumulator block: acc[i][j] = C[row0 + i, col0 + j].
struct Block {
  c0: vec4<f32>,
  c1: vec4<f32>,
  c2: vec4<f32>,
  c3: vec4<f32>,
}

fn fma_block(b: ptr<function, Block>, l: vec4<f32>, rt: vec4<f32>) {
  (*b).c0 = (*b).c0 + l.x * rt;
  (*b).c1 = (*b).c1 + l.y * rt;
  (*b).c2 = (*b).c2 + l.z * rt;
  (*b).c3 = (*b).c3 + l.w * rt;
}

fn block_row(b: Block, i: u32) -> vec4<f32> {
  switch (i) {
    case 0u: { return b.c0; }
    case 1u: { return b.c1; }
    case 2u: { return b.c2; }
    default: { return b.c3; }
  }
}

// Four consecutive indices starting at i0, clamped to [0, n) so loads stay in bounds.
fn idx4(i0: u32, n: u32) -> vec4<u32> {
  let last = n - 1u;
  return vec4<u32>(min(i0, last), min(i0 + 1u, last), min(i0 + 2u, last), min(i0 + 3u, last));
}

// ---------------------------------------------------------------- forward

@group(0) @binding(1) var<storage, read_write> fd_u: array<f32>;
@group(0) @binding(2) var<storage, read> fd_x: array<f32>;
@group(0) @binding(3) var<storage, read> fd_a: array<f32>;

// u[n, j] = Σ_k x_d[n, k] · A[j, k]
@compute @workgroup_size(WG_X, WG_Y)
fn lora_forward_down(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * 4u;
  let col0 = gid.x * 4u;
  if (row0 >= params.n || col0 >= params.r) { return; }
  let rows = idx4(row0, params.n) * params.in_f;
  let cols = idx4(col0, params.r) * params.in_f;
  var acc: Block;
  for (var k = 0u; k < params.in_f; k++) {
    let l = vec4<f32>(fd_x[rows.x + k], fd_x[rows.y + k], fd_x[rows.z + k], fd_x[rows.w + k]);
    let rt = vec4<f32>(fd_a[cols.x + k], fd_a[cols.y + k], fd_a[cols.z + k], fd_a[cols.w + k]);
    fma_block(&acc, l, rt);
  }
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= params.n) { break; }
    let v = block_row(acc, i);
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= params.r) { break; }
      fd_u[row * params.r + col] = v[j];
    }
  }
}

@group(0) @binding(1) var<storage, read_write> fu_y: array<f32>;
@group(0) @binding(2) var<storage, read> fu_u: array<f32>;
@group(0) @binding(3) var<storage, read> fu_b: array<f32>;

// y[n, o] += s · Σ_j u[n, j] · B[o, j]
@compute @workgroup_size(WG_X, WG_Y)
fn lora_forward_up(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * 4u;
  let col0 = gid.x * 4u;
  if (row0 >= params.n || col0 >= params.out_f) { return; }
  let rows = idx4(row0, params.n) * params.r;
  let cols = idx4(col0, params.out_f) * params.r;
  var acc: Block;
  for (var j = 0u; j < params.r; j++) {
    let l = vec4<f32>(fu_u[rows.x + j], fu_u[rows.y + j], fu_u[rows.z + j], fu_u[rows.w + j]);
    let rt = vec4<f32>(fu_b[cols.x + j], fu_b[cols.y + j], fu_b[cols.z + j], fu_b[cols.w + j]);
    fma_block(&acc, l, rt);
  }
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= params.n) { break; }
    let v = params.scale * block_row(acc, i);
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= params.out_f) { break; }
      let o = row * params.out_f + col;
      fu_y[o] = fu_y[o] + v[j];
    }
  }
}

// ---------------------------------------------------------------- backward

@group(0) @binding(1) var<storage, read_write> bu_du: array<f32>;
@group(0) @binding(2) var<storage, read> bu_dy: array<f32>;
@group(0) @binding(3) var<storage, read> bu_b: array<f32>;

// du[n, j] = s · Σ_o dy[n, o] · B[o, j]
@compute @workgroup_size(WG_X, WG_Y)
fn lora_backward_du(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * 4u;
  let col0 = gid.x * 4u;
  if (row0 >= params.n || col0 >= params.r) { return; }
  let rows = idx4(row0, params.n) * params.out_f;
  let cols = idx4(col0, params.r);
  var acc: Block;
  for (var o = 0u; o < params.out_f; o++) {
    let l = vec4<f32>(bu_dy[rows.x + o], bu_dy[rows.y + o], bu_dy[rows.z + o], bu_dy[rows.w + o]);
    let b = o * params.r;
    let rt = vec4<f32>(bu_b[b + cols.x], bu_b[b + cols.y], bu_b[b + cols.z], bu_b[b + cols.w]);
    fma_block(&acc, l, rt);
  }
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= params.n) { break; }
    let v = params.scale * block_row(acc, i);
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= params.r) { break; }
      bu_du[row * params.r + col] = v[j];
    }
  }
}

@group(0) @binding(1) var<storage, read_write> bb_db: array<f32>;
@group(0) @binding(2) var<storage, read> bb_dy: array<f32>;
@group(0) @binding(3) var<storage, read> bb_u: array<f32>;

// dB[o, j] += s · Σ_n dy[n, o] · u[n, j]
@compute @workgroup_size(WG_X, WG_Y)
fn lora_backward_db(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * 4u;   // o
  let col0 = gid.x * 4u;   // j
  if (row0 >= params.out_f || col0 >= params.r) { return; }
  let rows = idx4(row0, params.out_f);
  let cols = idx4(col0, params.r);
  var acc: Block;
  for (var n = 0u; n < params.n; n++) {
    let a = n * params.out_f;
    let l = vec4<f32>(bb_dy[a + rows.x], bb_dy[a + rows.y], bb_dy[a + rows.z], bb_dy[a + rows.w]);
    let b = n * params.r;
    let rt = vec4<f32>(bb_u[b + cols.x], bb_u[b + cols.y], bb_u[b + cols.z], bb_u[b + cols.w]);
    fma_block(&acc, l, rt);
  }
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= params.out_f) { break; }
    let v = params.scale * block_row(acc, i);
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= params.r) { break; }
      let o = row * params.r + col;
      bb_db[o] = bb_db[o] + v[j];
    }
  }
}

@group(0) @binding(1) var<storage, read_write> ba_da: array<f32>;
@group(0) @binding(2) var<storage, read> ba_du: array<f32>;
@group(0) @binding(3) var<storage, read> ba_x: array<f32>;

// dA[j, k] += Σ_n du[n, j] · x_d[n, k]
@compute @workgroup_size(WG_X, WG_Y)
fn lora_backward_da(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * 4u;   // j
  let col0 = gid.x * 4u;   // k
  if (row0 >= params.r || col0 >= params.in_f) { return; }
  let rows = idx4(row0, params.r);
  let cols = idx4(col0, params.in_f);
  var acc: Block;
  for (var n = 0u; n < params.n; n++) {
    let a = n * params.r;
    let l = vec4<f32>(ba_du[a + rows.x], ba_du[a + rows.y], ba_du[a + rows.z], ba_du[a + rows.w]);
    let b = n * params.in_f;
    let rt = vec4<f32>(ba_x[b + cols.x], ba_x[b + cols.y], ba_x[b + cols.z], ba_x[b + cols.w]);
    fma_block(&acc, l, rt);
  }
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= params.r) { break; }
    let v = block_row(acc, i);
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= params.in_f) { break; }
      let o = row * params.in_f + col;
      ba_da[o] = ba_da[o] + v[j];
    }
  }
}

@group(0) @binding(1) var<storage, read_write> bx_dx: array<f32>;
@group(0) @binding(2) var<storage, read> bx_du: array<f32>;
@group(0) @binding(3) var<storage, read> bx_a: array<f32>;

// dx[n, k] += Σ_j du[n, j] · A[j, k]
@compute @workgroup_size(WG_X, WG_Y)
fn lora_backward_dx(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * 4u;   // n
  let col0 = gid.x * 4u;   // k
  if (row0 >= params.n || col0 >= params.in_f) { return; }
  let rows = idx4(row0, params.n) * params.r;
  let cols = idx4(col0, params.in_f);
  var acc: Block;
  for (var j = 0u; j < params.r; j++) {
    let l = vec4<f32>(bx_du[rows.x + j], bx_du[rows.y + j], bx_du[rows.z + j], bx_du[rows.w + j]);
    let b = j * params.in_f;
    let rt = vec4<f32>(bx_a[b + cols.x], bx_a[b + cols.y], bx_a[b + cols.z], bx_a[b + cols.w]);
    fma_block(&acc, l, rt);
  }
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= params.n) { break; }
    let v = block_row(acc, i);
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= params.in_f) { break; }
      let o = row * params.in_f + col;
      bx_dx[o] = bx_dx[o] + v[j];
    }
  }
}
