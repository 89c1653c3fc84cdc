// matmul_quad.wgsl — register-blocked matmul whose four-invocation quads share their loads.
// Needs the `subgroups` feature (quadSwapX / quadSwapY); without it use matmul.wgsl.
//
//   C[z] = alpha · op(A[z]) · op(B[z]) + beta · C[z]      (=, or += with beta = 1)
//
// op(A) is M×K and op(B) is K×N; every operand is addressed through strides, so one pipeline serves
// every transpose layout (the host sets the strides):
//   op(A)[i, kk] = a[z·a_bs + i·a_rs + kk·a_ks]     A [M,K]: (a_rs, a_ks) = (K, 1);  Aᵀ from [K,M]: (1, M)
//   op(B)[kk, j] = b[z·b_bs + kk·b_ks + j·b_cs]     B [K,N]: (b_ks, b_cs) = (N, 1);  Bᵀ from [N,K]: (1, K)
//   C[z][i, j]   = c[z·c_bs + i·N + j]               C is always row-major [M,N]
// A batch stride of 0 broadcasts that operand over the batch (z = workgroup_id.z).
// beta = 0 never reads C (so C may hold garbage, even NaN); beta = 1 accumulates (weight gradients).
//
// bindings (group 0)                      shape                      access
//   0 params                              —                          uniform Params
//   1 c                                   (batch, M, N)              rw
//   2 a                                   (batch|1, M·K)             read
//   3 b                                   (batch|1, K·N)             read
//
// Why quads: on SwiftShader (WebGPU on the CPU) every invocation's load of one float from a storage
// buffer is a masked gather costing as much as ~20 FMAs, while a quadSwap is one shuffle. Each lane
// of a quad computes an 8×8 block of a 16×16 quad tile; the two lanes of a quad that need the same
// 8 rows of op(A) each load 4 of them and swap (quadSwapX), and likewise for the 8 columns of op(B)
// (quadSwapY). That halves the loads per FMA. No workgroup memory, no barriers (both are slow
// there). The quad roles come from local_invocation_index & 3, i.e. quads must be four consecutive
// invocations (true on SwiftShader and on the GPUs we know; the tuner verifies every variant's result
// before choosing it). Operands are read as scalars: SwiftShader gathers every component of a vec4 load
// separately, so vec4 loads measured no faster there, and scalar loads need no alignment of M, N, K.
// Measured on SwiftShader (2 cores, 512×576×1536): ~2.5–4 GFLOP/s vs ~1.0–1.5 for matmul_reg4x4.
// Also measured there (2026-12, generated variants, not kept): per-lane blocks of 8×16, 16×8 and 16×16 and
// k unrolled 1–16 times were no faster than this 8×8 with 2 k per trip; with the loads replaced by register
// arithmetic the same kernels reach only ~6–8 GFLOP/s, so the FMA/shuffle structure, not memory, is what
// holds them at ~10 % of the FMA ceiling (npm run bench:loads shows what each load costs: 30–40 FMAs at the
// ceiling per float from a storage buffer). Reading the operands through the texture sampler instead
// (npm run bench:sampled, an experiment) doubles the speed there but still stays at 15–27 % of the ceiling.
//
// Workgroup: WG invocations = WG/4 quads, QX quads along N; tile = (WG/4/QX)·16 rows × QX·16 columns.
// Every invocation stays alive to the end (quad operations need all four lanes): rows and columns past
// the edge are clamped for loading and skipped when storing.

enable subgroups;

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

override WG: u32 = 64;
override QX: u32 = 4;

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
fn matmul_quad8x8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lane = li & 3u;
  let qi = lane >> 1u;        // which 8 rows of the quad's 16
  let qj = lane & 1u;         // which 8 columns of the quad's 16
  let quad = li >> 2u;
  let row0 = (wg.y * (WG / 4u / QX) + quad / QX) * 16u + qi * 8u;
  let col0 = (wg.x * QX + quad % QX) * 16u + qj * 8u;
  // Lanes (qi, 0) and (qi, 1) need the same 8 rows: each loads 4 ("own") and receives 4 ("partner").
  let row_own = row0 + qj * 4u;
  let row_par = row0 + (1u - qj) * 4u;
  // Lanes (0, qj) and (1, qj) need the same 8 columns.
  let col_own = col0 + qi * 4u;
  let col_par = col0 + (1u - qi) * 4u;

  let z = wg.z;
  let step = vec4<u32>(0u, 1u, 2u, 3u);
  let rows = z * params.a_bs + min(vec4<u32>(row_own) + step, vec4<u32>(params.m - 1u)) * params.a_rs;
  let cols = z * params.b_bs + min(vec4<u32>(col_own) + step, vec4<u32>(params.n - 1u)) * params.b_cs;
  let a_ks = params.a_ks;
  let b_ks = params.b_ks;

  // Four 4×4 blocks: (own | partner rows) × (own | partner columns).
  var oo = mat4x4<f32>();
  var op = mat4x4<f32>();
  var po = mat4x4<f32>();
  var pp = mat4x4<f32>();
  // Two k per iteration (measured best on SwiftShader: larger bodies spill), then the odd one.
  let k_even = params.k & ~1u;
  for (var kk = 0u; kk < k_even; kk += 2u) {
    let ao0 = load_a4(rows, kk * a_ks);
    let bo0 = load_b4(kk * b_ks, cols);
    let ao1 = load_a4(rows, (kk + 1u) * a_ks);
    let bo1 = load_b4((kk + 1u) * b_ks, cols);
    let ap0 = quadSwapX(ao0);
    let bp0 = quadSwapY(bo0);
    let ap1 = quadSwapX(ao1);
    let bp1 = quadSwapY(bo1);
    oo = outer_fma(ao0, bo0, oo);
    op = outer_fma(ao0, bp0, op);
    po = outer_fma(ap0, bo0, po);
    pp = outer_fma(ap0, bp0, pp);
    oo = outer_fma(ao1, bo1, oo);
    op = outer_fma(ao1, bp1, op);
    po = outer_fma(ap1, bo1, po);
    pp = outer_fma(ap1, bp1, pp);
  }
  for (var kk = k_even; kk < params.k; kk += 1u) {
    let ao = load_a4(rows, kk * a_ks);
    let bo = load_b4(kk * b_ks, cols);
    let ap = quadSwapX(ao);
    let bp = quadSwapY(bo);
    oo = outer_fma(ao, bo, oo);
    op = outer_fma(ao, bp, op);
    po = outer_fma(ap, bo, po);
    pp = outer_fma(ap, bp, pp);
  }

  let base = z * params.c_bs;
  for (var r = 0u; r < 4u; r++) {
    store_c4(base, row_own + r, col_own, oo[r]);
    store_c4(base, row_own + r, col_par, op[r]);
    store_c4(base, row_par + r, col_own, po[r]);
    store_c4(base, row_par + r, col_par, pp[r]);
  }
}
