// npm run bench:loads — what fetching one float costs next to one FMA on this adapter (not a test).
//
// Every kernel runs 512 trips × 16 unrolled operations per invocation into 4 accumulators, and prints
// operations per second over all lanes. Lines:
//   fma-chains  16 independent scalar FMA chains per trip, no memory: the floor every line pays (on
//               SwiftShader it is bound by the per-trip loop bookkeeping, not by the FMAs)
//   seq/same/strided  scalar storage loads whose 4 lanes' addresses are sequential, equal or scattered
//   vec4        vec4 storage loads (one line = one vec4; divide by 4 for a per-float figure)
//   wgseq/wgsame/wgconst  workgroup-memory loads (dynamic sequential, dynamic equal, constant index)
//   tex-load / tex-sample / tex-gather  one texel per operation (4 floats): textureLoad and
//               textureSampleLevel (nearest) of rgba32float, textureGather of r32float
//   quadswap / bcast / shuffle  subgroup exchanges (quadSwapX, subgroupBroadcast, subgroupShuffle)
// Each line also prints its cost above that floor per lane-operation, in nanoseconds and in FMAs at the
// adapter's FMA ceiling (bench/fma_ceiling.wgsl, measured here too), which is how a kernel pays for it.
// Findings on SwiftShader (2 cores, 2026-12): every dynamically addressed storage or workgroup load is a
// per-lane gather with bounds checks (robust buffer access), ~0.5 G floats/s whatever the address pattern,
// even a constant workgroup index; a vec4 load costs 4 scalar ones; textureLoad ≈ 0.6 G floats/s and
// textureSampleLevel ≈ 1.1 G floats/s (the sampler fetches the 4 lanes without per-lane branches) — the
// cheapest way to get data into lanes; quadSwapX is about as cheap as an FMA. Those ratios bound what a
// matmul can reach there (npm run bench:sampled; shaders/matmul_quad.wgsl).
import { nodeGpu } from '../src/gpu/node';
import { fmaCeiling } from './ceiling';
const gpu = await nodeGpu();
const adapter = (await gpu.requestAdapter())!;
const features = (['subgroups', 'float32-filterable'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
const device = await adapter.requestDevice({ requiredFeatures: features });
const subgroups = features.includes('subgroups');
const N = 1 << 22;
const a = device.createBuffer({ size: N * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
const out = device.createBuffer({ size: 1 << 20, usage: GPUBufferUsage.STORAGE });
const tex = device.createTexture({ size: [1024, 1024], format: 'rgba32float', usage: GPUTextureUsage.TEXTURE_BINDING });
const texR = device.createTexture({ size: [1024, 1024], format: 'r32float', usage: GPUTextureUsage.TEXTURE_BINDING });
const sampler = device.createSampler({ magFilter: 'nearest', minFilter: 'nearest' });
const ITER = 512;
const U = (f: (u: number) => string): string => Array.from({ length: 16 }, (_, u) => f(u)).join('\n');
const uv = (u: number): string => `vec2<f32>(f32((lid + ${u * 7}u) & 1023u) + 0.5, f32((i + base) & 1023u) + 0.5) * (1.0 / 1024.0)`;
const kernels: Record<string, string> = {
  'fma-chains': U((u) => `f${u} = fma(f${u}, 0.999, x);`),
  seq: U((u) => `acc${u % 4} += a[(base + i * 1024u + ${u * 64}u + lid) & MASK];`),
  same: U((u) => `acc${u % 4} += a[(base + i * 1024u + ${u * 64}u) & MASK];`),
  strided: U((u) => `acc${u % 4} += a[(base + i * 1024u + ${u * 64}u + lid * 67u) & MASK];`),
  vec4: U((u) => `acc${u % 4} += dot(av[((base + i * 1024u + ${u * 64}u) / 4u + lid) & (MASK / 4u)], vec4(1.0));`),
  wgseq: U((u) => `acc${u % 4} += sh[(i * 16u + ${u * 4}u + lid) & 1023u];`),
  wgsame: U((u) => `acc${u % 4} += sh[(i * 16u + ${u}u) & 1023u];`),
  wgconst: U((u) => `acc${u % 4} += sh[${u * 3}u];`),
  'tex-load': U((u) => `acc${u % 4} += dot(textureLoad(t, vec2<u32>((lid + ${u * 7}u) & 1023u, (i + base) & 1023u), 0), vec4(1.0));`),
  'tex-sample': U((u) => `acc${u % 4} += dot(textureSampleLevel(t, s, ${uv(u)}, 0.0), vec4(1.0));`),
  'tex-gather': U((u) => `acc${u % 4} += dot(textureGather(0, tr, s, ${uv(u)}), vec4(1.0));`),
  ...(subgroups
    ? {
        quadswap: U((u) => `acc${u % 4} += quadSwapX(x + f32(${u}));`),
        bcast: U((u) => `acc${u % 4} += subgroupBroadcast(x + f32(${u}), ${u % 4}u);`),
        shuffle: U((u) => `acc${u % 4} += subgroupShuffle(x + f32(${u}), (lid + ${u}u) & 3u);`),
      }
    : {}),
};
const layout = device.createBindGroupLayout({
  entries: [
    { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
    { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
    { binding: 2, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
    { binding: 3, visibility: GPUShaderStage.COMPUTE, texture: { sampleType: 'unfilterable-float' } },
    { binding: 4, visibility: GPUShaderStage.COMPUTE, sampler: { type: 'non-filtering' } },
    { binding: 5, visibility: GPUShaderStage.COMPUTE, texture: { sampleType: 'unfilterable-float' } },
  ],
});
const bind = device.createBindGroup({
  layout,
  entries: [
    { binding: 0, resource: { buffer: a } },
    { binding: 1, resource: { buffer: out } },
    { binding: 2, resource: { buffer: a } },
    { binding: 3, resource: tex.createView() },
    { binding: 4, resource: sampler },
    { binding: 5, resource: texR.createView() },
  ],
});
/** Median wall time of 5 runs after one warm-up, in ms. */
async function timeMs(run: () => Promise<void>): Promise<number> {
  await run();
  const ms: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    await run();
    ms.push(performance.now() - t0);
  }
  return ms.sort((x, y) => x - y)[2];
}

// The FMA ceiling in lane-FMAs per second (a lane-FMA is 2 flops).
const fma = await fmaCeiling(device);
const ceiling = fma.flop(128) / 2 / ((await timeMs(() => fma.dispatch(128))) / 1e3);
fma.destroy();
console.log(`FMA ceiling: ${(ceiling / 1e9).toFixed(2)} G lane-FMAs/s (${((2 * ceiling) / 1e9).toFixed(1)} GFLOP/s)`);
let floorMs = 0;
const chains = Array.from({ length: 16 }, (_, u) => `f${u}`);
for (const [name, body] of Object.entries(kernels)) {
  const code = `${subgroups ? 'enable subgroups;' : ''}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> av: array<vec4<f32>>;
@group(0) @binding(3) var t: texture_2d<f32>;
@group(0) @binding(4) var s: sampler;
@group(0) @binding(5) var tr: texture_2d<f32>;
var<workgroup> sh: array<f32, 1024>;
const MASK: u32 = ${N - 1}u;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) w: vec3<u32>) {
  sh[lid] = f32(lid); sh[lid + 64u] = 1.0;
  workgroupBarrier();
  var acc0 = 0.0; var acc1 = 0.0; var acc2 = 0.0; var acc3 = 0.0; let x = f32(lid);
  ${chains.map((c, u) => `var ${c} = x + ${u}.0;`).join(' ')}
  let base = w.x * 4096u;
  for (var i = 0u; i < ${ITER}u; i++) { ${body} }
  let keep = av[0].x * 0.0 + a[0] * 0.0 + sh[0] * 0.0 + textureLoad(t, vec2<u32>(0u), 0).x * 0.0
    + textureSampleLevel(t, s, vec2<f32>(0.5), 0.0).x * 0.0 + textureGather(0, tr, s, vec2<f32>(0.5)).x * 0.0;
  out[g.x] = acc0 + acc1 + acc2 + acc3 + ${chains.join(' + ')} + keep;
}`;
  const module = device.createShaderModule({ code });
  const pipe = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: 'main' },
  });
  const ms = await timeMs(async () => {
    const enc = device.createCommandEncoder();
    const p = enc.beginComputePass();
    p.setPipeline(pipe);
    p.setBindGroup(0, bind);
    p.dispatchWorkgroups(256);
    p.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  });
  if (name === 'fma-chains') floorMs = ms;
  const ops = 256 * 64 * ITER * 16;
  const netNs = ((ms - floorMs) * 1e6) / ops;
  const net = name === 'fma-chains' ? '' : `   net ${netNs.toFixed(2)} ns ≈ ${(netNs * 1e-9 * ceiling).toFixed(0)} ceiling FMAs per lane-op`;
  console.log(`${name.padEnd(11)} ${ms.toFixed(1).padStart(7)} ms  ${(ops / ms / 1e6).toFixed(2)} G ops/s over all lanes${net}`);
}
process.exit(0);
