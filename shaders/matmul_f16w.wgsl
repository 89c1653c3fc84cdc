// matmul_f16w.wgsl — C = alpha · op(A) · op(B) + beta · C with B held as packed f16 (frozen weights
// kept at half the memory), unpacked in the shader with unpack2x16float (no `shader-f16` needed).
//
// Same strided addressing as matmul.wgsl (see its header): element e of B lives in the 16-bit half
// (e & 1) of word e >> 1 (little-endian: the even element is the low half).
//   op(A)[i, kk] = a[z·a_bs + i·a_rs + kk·a_ks]              f32
//   op(B)[kk, j] = half(b, z·b_bs + kk·b_ks + j·b_cs)         f16 → f32
//   C[z][i, j]   = c[z·c_bs + i·N + j]                        f32, row-major [M, N]
// beta = 0 never reads C. Used for a linear layer's forward (y = x·Wᵀ) and input gradient
// (dx = dy·W) when the frozen weight W is resident in f16; weight gradients never touch f16 data.
//
// bindings (group 0)                      shape                      access
//   0 params                              —                          uniform Params
//   1 c                                   (batch, M, N) f32          rw
//   2 a                                   (batch|1, M·K) f32         read
//   3 b                                   (batch|1, K·N) f16 pairs   read (array<u32>)
//
// matmul_f16w_reg4x4: each invocation keeps a 4×4 block of C in registers; no workgroup memory.

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

override WG: u32 = 64;  // invocations per workgroup
override GX: u32 = 16;  // invocations along N

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;

fn half_at(e: u32) -> f32 {
  let pair = unpack2x16float(b[e >> 1u]);
  return select(pair.x, pair.y, (e & 1u) == 1u);
}

fn load_a4(rows: vec4<u32>, ko: u32) -> vec4<f32> {
  return vec4<f32>(a[rows.x + ko], a[rows.y + ko], a[rows.z + ko], a[rows.w + ko]);
}

fn load_b4(ko: u32, cols: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(half_at(ko + cols.x), half_at(ko + cols.y), half_at(ko + cols.z), half_at(ko + cols.w));
}

fn outer_fma(x: vec4<f32>, y: vec4<f32>, acc: mat4x4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(vec4<f32>(x.x), y, acc[0]),
    fma(vec4<f32>(x.y), y, acc[1]),
    fma(vec4<f32>(x.z), y, acc[2]),
    fma(vec4<f32>(x.w), y, acc[3]),
  );
}

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
fn matmul_f16w_reg4x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = (wg.y * (WG / GX) + li / GX) * 4u;
  let col0 = (wg.x * GX + li % GX) * 4u;
  if (row0 >= params.m || col0 >= params.n) { return; }
  let z = wg.z;
  let step = vec4<u32>(0u, 1u, 2u, 3u);
  // Rows / columns past the edge are clamped on load (valid addresses) and skipped on store.
  let rows = z * params.a_bs + min(vec4<u32>(row0) + step, vec4<u32>(params.m - 1u)) * params.a_rs;
  let cols = z * params.b_bs + min(vec4<u32>(col0) + step, vec4<u32>(params.n - 1u)) * params.b_cs;
  var acc = mat4x4<f32>();
  for (var kk = 0u; kk < params.k; kk += 1u) {
    acc = outer_fma(load_a4(rows, kk * params.a_ks), load_b4(kk * params.b_ks, cols), acc);
  }
  let base = z * params.c_bs;
  for (var r = 0u; r < 4u; r++) {
    store_c4(base, row0 + r, col0, acc[r]);
  }
}
