// npm run bench:loads — what one load costs next to one FMA on this adapter (not a test).
//
// Each kernel runs 512 trips × 16 unrolled operations per invocation over 4 independent accumulators:
// scalar storage loads with lane-sequential, lane-equal and scattered addresses, vec4 loads,
// workgroup-memory loads, and plain FMAs. On SwiftShader every dynamically addressed load is a
// per-lane gather with bounds checks (robust buffer access), so sequential, equal and scattered
// addresses cost about the same, workgroup memory is no cheaper, and a vec4 load costs four: the
// reason the matmul kernels trade loads for quad shuffles (shaders/matmul_quad.wgsl).
import { nodeGpu } from '../src/gpu/node';
const gpu = await nodeGpu();
const adapter = (await gpu.requestAdapter())!;
const device = await adapter.requestDevice({ requiredFeatures: adapter.features.has('subgroups') ? ['subgroups' as GPUFeatureName] : [] });
const N = 1 << 22;
const a = device.createBuffer({ size: N * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
const out = device.createBuffer({ size: 1 << 20, usage: GPUBufferUsage.STORAGE });
const ITER = 512;
const U = (f: (u: number) => string) => Array.from({ length: 16 }, (_, u) => f(u)).join('\n');
const kernels: Record<string, string> = {
  seq: U((u) => `acc${u%4} += a[(base + i * 1024u + ${u*64}u + lid) & MASK];`),
  same: U((u) => `acc${u%4} += a[(base + i * 1024u + ${u*64}u) & MASK];`),
  strided: U((u) => `acc${u%4} += a[(base + i * 1024u + ${u*64}u + lid * 67u) & MASK];`),
  vec4: U((u) => `acc${u%4} += dot(av[((base + i * 1024u + ${u*64}u) / 4u + lid) & (MASK / 4u)], vec4(1.0));`),
  wgseq: U((u) => `acc${u%4} += sh[(i * 16u + ${u*4}u + lid) & 1023u];`),
  wgsame: U((u) => `acc${u%4} += sh[(i * 16u + ${u}u) & 1023u];`),
  fma: U((u) => `acc${u%4} = fma(acc${u%4}, 0.999, x);`),
};
for (const [name, body] of Object.entries(kernels)) {
  const code = `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> av: array<vec4<f32>>;
var<workgroup> sh: array<f32, 1024>;
const MASK: u32 = ${N - 1}u;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) w: vec3<u32>) {
  sh[lid] = f32(lid); sh[lid + 64u] = 1.0;
  workgroupBarrier();
  var acc0 = 0.0; var acc1 = 0.0; var acc2 = 0.0; var acc3 = 0.0; let x = f32(lid);
  let base = w.x * 4096u;
  for (var i = 0u; i < ${ITER}u; i++) { ${body} }
  out[g.x] = acc0 + acc1 + acc2 + acc3 + av[0].x * 0.0 + a[0] * 0.0 + sh[0] * 0.0;
}`;
  const module = device.createShaderModule({ code });
  const pipe = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: a } }, { binding: 1, resource: { buffer: out } }, { binding: 2, resource: { buffer: a } }] });
  const run = async () => {
    const enc = device.createCommandEncoder();
    const p = enc.beginComputePass();
    p.setPipeline(pipe); p.setBindGroup(0, bg); p.dispatchWorkgroups(256); p.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await run();
  const t0 = performance.now();
  for (let r = 0; r < 3; r++) await run();
  const ms = (performance.now() - t0) / 3;
  const loads = 256 * 64 * ITER * 16;
  console.log(`${name.padEnd(8)} ${ms.toFixed(1)} ms  ${(loads / ms / 1e6).toFixed(2)} G operations/s (over all lanes)`);
}
process.exit(0);
