// matmul.wgsl — batched matrix multiply with every transpose layout, for forward and backward passes.
//
//   C[z] = alpha · op(A[z]) · op(B[z]) + beta · C[z]      (=, or += with beta = 1)
//
// op(A) is M×K and op(B) is K×N; every operand is addressed through strides, so one pipeline serves
// every layout (the host sets the strides):
//   op(A)[i, kk] = a[z·a_bs + i·a_rs + kk·a_ks]     A [M,K]: (a_rs, a_ks) = (K, 1);  Aᵀ from [K,M]: (1, M)
//   op(B)[kk, j] = b[z·b_bs + kk·b_ks + j·b_cs]     B [K,N]: (b_ks, b_cs) = (N, 1);  Bᵀ from [N,K]: (1, K)
//   C[z][i, j]   = c[z·c_bs + i·N + j]               C is always row-major [M,N]
// So NN is C = A·B, NT is the linear layer y = x·Wᵀ (W [out,in] as HF stores it), TN is the weight
// gradient dW = dYᵀ·X. A batch stride of 0 broadcasts that operand over the batch (z = workgroup_id.z).
// beta = 0 never reads C (so C may hold garbage, even NaN); beta = 1 accumulates (weight gradients +=).
//
// bindings (group 0)                      shape                      access
//   0 params                              —                          uniform Params
//   1 c                                   (batch, M, N)              rw
//   2 a                                   (batch|1, M·K)             read
//   3 b                                   (batch|1, K·N)             read
//
// Two entry points (a third, faster one on SwiftShader needs subgroups: matmul_quad.wgsl):
//   matmul_reg4x4  each invocation keeps a 4×4 block of C in registers; no workgroup memory and no
//                  barriers (slow on SwiftShader). Tile = (WG/GX)·4 rows × GX·4 columns.
//   matmul_tiled   the classic GPU kernel: a 64×64 tile of C per 16×16 workgroup, 16-deep slices of
//                  op(A) and op(B) staged in workgroup memory between barriers, 4×4 per invocation.
// Sizes are not required to be multiples of anything: rows/columns past the edge are clamped (or
// zero-filled) when loading and skipped when storing. Operands are read as scalars (no alignment
// needed): on SwiftShader a vec4 load costs the same as four scalar loads (each component is gathered).

struct Params {
  m: u32,
  n: u32,
  k: u32,
  a_rs: u32,
  a_ks: u32,
  b_ks: u32,
  b_cs: u32,
  a_bs: u32,
  b_bs: u32,
  c_bs: u32,
  alpha: f32,
  beta: f32,
}

override WG: u32 = 64;   // matmul_reg4x4: invocations per workgroup
override GX: u32 = 16;   // matmul_reg4x4: invocations along N
override TX: u32 = 16;   // matmul_tiled: workgroup is TX × TY, each invocation 4×4
override TY: u32 = 16;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

// acc + x ⊗ y: row r of the 4×4 block (acc[r]) gains x[r] · y.
fn outer_fma(x: vec4<f32>, y: vec4<f32>, acc: mat4x4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(vec4<f32>(x.x), y, acc[0]),
    fma(vec4<f32>(x.y), y, acc[1]),
    fma(vec4<f32>(x.z), y, acc[2]),
    fma(vec4<f32>(x.w), y, acc[3]),
  );
}

// op(A) at four rows (their base offsets) and one k offset; op(B) at one k offset and four columns.
fn load_a4(rows: vec4<u32>, ko: u32) -> vec4<f32> {
  return vec4<f32>(a[rows.x + ko], a[rows.y + ko], a[rows.z + ko], a[rows.w + ko]);
}
fn load_b4(ko: u32, cols: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(b[ko + cols.x], b[ko + cols.y], b[ko + cols.z], b[ko + cols.w]);
}

// C[row, col..col+3] = alpha·v + beta·C for the columns inside N (row checked here too).
fn store_c4(base: u32, row: u32, col: u32, v: vec4<f32>) {
  if (row >= params.m) { return; }
  let i = base + row * params.n + col;
  for (var t = 0u; t < 4u; t++) {
    if (col + t < params.n) {
      var r = params.alpha * v[t];
      if (params.beta != 0.0) { r = fma(params.beta, c[i + t], r); }
      c[i + t] = r;
    }
  }
}

@compute @workgroup_size(WG)
fn matmul_reg4x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = (wg.y * (WG / GX) + li / GX) * 4u;
  let col0 = (wg.x * GX + li % GX) * 4u;
  if (row0 >= params.m || col0 >= params.n) { return; }
  let z = wg.z;
  let step = vec4<u32>(0u, 1u, 2u, 3u);
  let rows = z * params.a_bs + min(vec4<u32>(row0) + step, vec4<u32>(params.m - 1u)) * params.a_rs;
  let cols = z * params.b_bs + min(vec4<u32>(col0) + step, vec4<u32>(params.n - 1u)) * params.b_cs;
  let a_ks = params.a_ks;
  let b_ks = params.b_ks;

  var acc = mat4x4<f32>();
  // Four k per iteration: fewer trips through SwiftShader's per-iteration lane-mask bookkeeping.
  let k_main = params.k & ~3u;
  for (var kk = 0u; kk < k_main; kk += 4u) {
    let a0 = load_a4(rows, kk * a_ks);
    let b0 = load_b4(kk * b_ks, cols);
    let a1 = load_a4(rows, (kk + 1u) * a_ks);
    let b1 = load_b4((kk + 1u) * b_ks, cols);
    let a2 = load_a4(rows, (kk + 2u) * a_ks);
    let b2 = load_b4((kk + 2u) * b_ks, cols);
    let a3 = load_a4(rows, (kk + 3u) * a_ks);
    let b3 = load_b4((kk + 3u) * b_ks, cols);
    acc = outer_fma(a0, b0, acc);
    acc = outer_fma(a1, b1, acc);
    acc = outer_fma(a2, b2, acc);
    acc = outer_fma(a3, b3, acc);
  }
  for (var kk = k_main; kk < params.k; kk += 1u) {
    acc = outer_fma(load_a4(rows, kk * a_ks), load_b4(kk * b_ks, cols), acc);
  }

  let base = z * params.c_bs;
  for (var r = 0u; r < 4u; r++) {
    store_c4(base, row0 + r, col0, acc[r]);
  }
}

// matmul_tiled: BK-deep slices of op(A) (4·TY rows) and op(B) (4·TX columns) in workgroup memory,
// stored k-major as vec4s of 4 rows / 4 columns so the inner loop reads one vec4 of each.
const BK: u32 = 16u;
var<workgroup> tile_a: array<vec4<f32>, BK * TY>;
var<workgroup> tile_b: array<vec4<f32>, BK * TX>;

@compute @workgroup_size(TX, TY)
fn matmul_tiled(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let tile_m = 4u * TY;
  let tile_n = 4u * TX;
  let row0 = wg.y * tile_m;
  let col0 = wg.x * tile_n;
  let z = wg.z;
  let a_base = z * params.a_bs;
  let b_base = z * params.b_bs;

  var acc = mat4x4<f32>();
  for (var k0 = 0u; k0 < params.k; k0 += BK) {
    // Stage op(A)[row0 .. row0+tile_m, k0 .. k0+BK] (k fastest) and op(B)[k0 .., col0 ..] (columns
    // fastest), zero outside the matrices, every invocation loading its share.
    for (var e = li; e < tile_m * BK; e += TX * TY) {
      let r = e / BK;
      let kk = e % BK;
      var v = 0.0;
      if (row0 + r < params.m && k0 + kk < params.k) {
        v = a[a_base + (row0 + r) * params.a_rs + (k0 + kk) * params.a_ks];
      }
      tile_a[kk * TY + r / 4u][r % 4u] = v;
    }
    for (var e = li; e < tile_n * BK; e += TX * TY) {
      let kk = e / tile_n;
      let cc = e % tile_n;
      var v = 0.0;
      if (col0 + cc < params.n && k0 + kk < params.k) {
        v = b[b_base + (k0 + kk) * params.b_ks + (col0 + cc) * params.b_cs];
      }
      tile_b[kk * TX + cc / 4u][cc % 4u] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      acc = outer_fma(tile_a[kk * TY + lid.y], tile_b[kk * TX + lid.x], acc);
    }
    workgroupBarrier();
  }

  let base = z * params.c_bs;
  for (var r = 0u; r < 4u; r++) {
    store_c4(base, row0 + lid.y * 4u + r, col0 + lid.x * 4u, acc[r]);
  }
}
