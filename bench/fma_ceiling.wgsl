// fma_ceiling.wgsl — the FMA-bound ceiling of an adapter, for bench/kernels.ts (not a model kernel).
//
// Every invocation runs 8 independent chains of vec4 fma (two mat4x4s of 4 vec4 each) entirely in
// registers: `iters` loop trips × 16 steps × 8 chains × 4 lanes, no memory traffic except storing one
// float at the end (so the compiler cannot drop the work). GFLOP/s = 2 · 4 · 8 · 16 · iters ·
// invocations / seconds. The 16-deep loop body matters on SwiftShader, where every loop trip pays for
// lane-mask bookkeeping on each loop-carried value: a 4-deep body measures about half as much.
//
// bindings (group 0)                      shape                      access
//   0 params                              —                          uniform { iters, m, c }
//   1 out                                 (invocations)              rw (=)
//
// m should be slightly below 1 (e.g. 0.999) and c small, so the chains stay finite.
//
// fma_ceiling_shallow is the same with a 4-deep loop body (GFLOP/s = 2 · 4 · 8 · 4 · iters · invocations
// / seconds): the kind of FMA loop an untuned kernel has, reported for context only.

struct Params {
  iters: u32,
  m: f32,
  c: f32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

fn fma4(x: mat4x4<f32>, m: vec4<f32>, c: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(x[0], m, c), fma(x[1], m, c), fma(x[2], m, c), fma(x[3], m, c));
}

@compute @workgroup_size(WG)
fn fma_ceiling(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= arrayLength(&out)) { return; }
  let m = vec4<f32>(params.m, params.m * 0.999, params.m * 0.998, params.m * 0.997);
  let c = vec4<f32>(params.c);
  let s = vec4<f32>(f32(i) * 1e-6) + vec4<f32>(0.0, 0.1, 0.2, 0.3);
  var x0 = mat4x4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
  var x1 = mat4x4<f32>(s + 4.0, s + 5.0, s + 6.0, s + 7.0);
  for (var it = 0u; it < params.iters; it++) {
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
  }
  let t = x0[0] + x0[1] + x0[2] + x0[3] + x1[0] + x1[1] + x1[2] + x1[3];
  out[i] = t.x + t.y + t.z + t.w;
}

@compute @workgroup_size(WG)
fn fma_ceiling_shallow(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= arrayLength(&out)) { return; }
  let m = vec4<f32>(params.m, params.m * 0.999, params.m * 0.998, params.m * 0.997);
  let c = vec4<f32>(params.c);
  let s = vec4<f32>(f32(i) * 1e-6) + vec4<f32>(0.0, 0.1, 0.2, 0.3);
  var x0 = mat4x4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
  var x1 = mat4x4<f32>(s + 4.0, s + 5.0, s + 6.0, s + 7.0);
  for (var it = 0u; it < params.iters; it++) {
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
    x0 = fma4(x0, m, c);
    x1 = fma4(x1, m, c);
  }
  let t = x0[0] + x0[1] + x0[2] + x0[3] + x1[0] + x1[1] + x1[2] + x1[3];
  out[i] = t.x + t.y + t.z + t.w;
}
