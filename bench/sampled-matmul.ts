// npm run bench:sampled — an experiment, not a product kernel: how far a matmul gets on this adapter when
// its operands come through the texture sampler instead of storage-buffer loads (not a test).
//
// Why: on SwiftShader a storage load costs ~30–40 FMAs at the adapter's FMA ceiling per float, a
// textureSampleLevel of an rgba32float texel ~70 per 4 floats (npm run bench:loads). So this generates
// quad-shared register-blocked kernels like shaders/matmul_quad.wgsl (each lane an RM×RN block, the quad's
// 2×2 lanes swapping halves with quadSwapX/Y), but reading op(A) [M,K] and op(B)ᵀ [N,K] as rgba32float
// textures of width K/4 (one texel = 4 consecutive k of one row), nearest sampling. It prints GFLOP/s
// (CPU time ÷ cores, median of 9) of the shipped matmul_quad8x8 on buffers, each generated variant and
// fma_ceiling, all in one process, with each result checked against a float64 dot product at 5 entries.
//
// Upper bound from the bench:loads costs, per trip (4 k) per lane: 4·RM·RN FMAs against (RM+RN)/2 samples
// at ~70 ceiling-FMAs each, i.e. 31 % of the ceiling for 8×8 even if the FMAs ran at the ceiling with 64
// accumulators live. Measured (2026-12, 2 cores, 512×576×1536, four runs): the sampled kernels run at
// 6–10 GFLOP/s, about 2× matmul_quad8x8 on buffers (3.3–4.1) but 15–27 % of a 33–41 GFLOP/s ceiling. They are not in the product:
// every operand would need a pack pass into a texture (dimension limit 8192, so no vocabulary-sized N), and
// on GPUs the buffer kernels are not load-bound like this.
//
//   npm run bench:sampled -- [M K N]      (K a multiple of 4; default 512 576 1536)
import { readFileSync } from 'node:fs';
import { nodeGpu } from '../src/gpu/node';
import { fmaCeiling } from './ceiling';

const [M, K, N] = process.argv.slice(2, 5).map(Number).concat([512, 576, 1536].slice(process.argv.slice(2, 5).length));
if (K % 4 !== 0) throw new Error(`K must be a multiple of 4, got ${K}`);
const KT = K / 4;
const gpu = await nodeGpu();
const adapter = (await gpu.requestAdapter())!;
if (!adapter.features.has('subgroups')) throw new Error('this experiment needs the subgroups feature');
const device = await adapter.requestDevice({ requiredFeatures: ['subgroups' as GPUFeatureName] });
device.addEventListener('uncapturederror', (e) => console.error('GPU error:', (e as GPUUncapturedErrorEvent).error.message));

function rnd(n: number, seed: number): Float32Array<ArrayBuffer> {
  const o = new Float32Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    o[i] = x / 2 ** 31 - 1;
  }
  return o;
}
const A = rnd(M * K, 1); // op(A) [M, K]
const BT = rnd(N * K, 2); // op(B)ᵀ [N, K] (the NT layout)
const probes = [[0, 0], [M - 1, N - 1], [7, 13], [M >> 1, N >> 1], [3, N - 5]];
const expected = probes.map(([i, j]) => {
  let s = 0;
  for (let k = 0; k < K; k++) s += A[i * K + k] * BT[j * K + k];
  return s;
});

const texture = (data: Float32Array<ArrayBuffer>, rows: number): GPUTexture => {
  const t = device.createTexture({ size: [KT, rows], format: 'rgba32float', usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST });
  device.queue.writeTexture({ texture: t }, data, { bytesPerRow: K * 4 }, [KT, rows]);
  return t;
};
const buffer = (data: Float32Array<ArrayBuffer>): GPUBuffer => {
  const b = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(b, 0, data);
  return b;
};
const texA = texture(A, M);
const texB = texture(BT, N);
const C = device.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
const readback = device.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const sampler = device.createSampler({ magFilter: 'nearest', minFilter: 'nearest' });

async function cpuSeconds(run: () => Promise<void>): Promise<number> {
  await run();
  const ts: number[] = [];
  for (let r = 0; r < 9; r++) {
    const c0 = process.cpuUsage();
    await run();
    const u = process.cpuUsage(c0);
    ts.push((u.user + u.system) / 1e6 / 2);
  }
  return ts.sort((x, y) => x - y)[4];
}

function dispatcher(pipe: GPUComputePipeline, bg: GPUBindGroup, groups: [number, number]): () => Promise<void> {
  return async () => {
    const e = device.createCommandEncoder();
    const p = e.beginComputePass();
    p.setPipeline(pipe);
    p.setBindGroup(0, bg);
    p.dispatchWorkgroups(...groups);
    p.end();
    device.queue.submit([e.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
}

async function matmulRate(label: string, run: () => Promise<void>): Promise<number> {
  const clear = device.createCommandEncoder();
  clear.clearBuffer(C);
  device.queue.submit([clear.finish()]);
  await run();
  const copy = device.createCommandEncoder();
  copy.copyBufferToBuffer(C, 0, readback, 0, M * N * 4);
  device.queue.submit([copy.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const c = new Float32Array(readback.getMappedRange().slice(0));
  readback.unmap();
  const err = Math.max(...probes.map(([i, j], p) => Math.abs(c[i * N + j] - expected[p])));
  if (!(err < 1e-3)) throw new Error(`${label}: wrong result (max error ${err})`);
  const gflops = (2 * M * N * K) / (await cpuSeconds(run)) / 1e9;
  return gflops;
}

/** The generated kernel: lane block RM×RN (multiples of 2), WG invocations, QX quads along N, k unrolled UNR texels per trip. */
function sampledKernel(RM: number, RN: number, WG: number, QX: number, UNR: number): string {
  const HA = RM / 2;
  const HB = RN / 2;
  const body: string[] = [];
  for (let i = 0; i < HA; i++) body.push(`let ao${i} = textureSampleLevel(ta, s, vec2<f32>(u, va${i}), 0.0);`);
  for (let j = 0; j < HB; j++) body.push(`let bo${j} = textureSampleLevel(tb, s, vec2<f32>(u, vb${j}), 0.0);`);
  for (let i = 0; i < HA; i++) body.push(`let ap${i} = quadSwapX(ao${i});`);
  for (let j = 0; j < HB; j++) body.push(`let bp${j} = quadSwapY(bo${j});`);
  const aRow = (i: number): string => (i < HA ? `ao${i}` : `ap${i - HA}`);
  const bCol = (j: number): string => (j < HB ? `bo${j}` : `bp${j - HB}`);
  for (let kk = 0; kk < 4; kk++) {
    const comp = 'xyzw'[kk];
    for (let jb = 0; jb < RN / 4; jb++) body.push(`let b${jb}_${kk} = vec4<f32>(${[0, 1, 2, 3].map((q) => `${bCol(jb * 4 + q)}.${comp}`).join(', ')});`);
    for (let i = 0; i < RM; i++) for (let jb = 0; jb < RN / 4; jb++) body.push(`acc${i}_${jb} = fma(vec4<f32>(${aRow(i)}.${comp}), b${jb}_${kk}, acc${i}_${jb});`);
  }
  const decl: string[] = [];
  const store: string[] = [];
  for (let i = 0; i < RM; i++) {
    for (let jb = 0; jb < RN / 4; jb++) {
      decl.push(`var acc${i}_${jb} = vec4<f32>();`);
      const row = i < HA ? `ro + ${i}u` : `rp + ${i - HA}u`;
      for (let q = 0; q < 4; q++) {
        const j = jb * 4 + q;
        store.push(`st(${row}, ${j < HB ? `co + ${j}u` : `cp + ${j - HB}u`}, acc${i}_${jb}.${'xyzw'[q]});`);
      }
    }
  }
  const coords: string[] = [];
  for (let i = 0; i < HA; i++) coords.push(`let va${i} = (f32(ro + ${i}u) + 0.5) / ${M}.0;`);
  for (let j = 0; j < HB; j++) coords.push(`let vb${j} = (f32(co + ${j}u) + 0.5) / ${N}.0;`);
  const trips = Array.from({ length: UNR }, (_, q) => `{\n    let u = (f32(t0 + ${q}u) + 0.5) / ${KT}.0;\n    ${body.join('\n    ')}\n  }`);
  return `enable subgroups;
@group(0) @binding(0) var ta: texture_2d<f32>;
@group(0) @binding(1) var tb: texture_2d<f32>;
@group(0) @binding(2) var s: sampler;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
fn st(r: u32, col: u32, v: f32) { if (r < ${M}u && col < ${N}u) { c[r * ${N}u + col] = v; } }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lane = li & 3u;
  let qi = lane >> 1u;
  let qj = lane & 1u;
  let quad = li >> 2u;
  let row0 = (wg.y * ${WG / 4 / QX}u + quad / ${QX}u) * ${2 * RM}u + qi * ${RM}u;
  let col0 = (wg.x * ${QX}u + quad % ${QX}u) * ${2 * RN}u + qj * ${RN}u;
  let ro = row0 + qj * ${HA}u;
  let rp = row0 + (1u - qj) * ${HA}u;
  let co = col0 + qi * ${HB}u;
  let cp = col0 + (1u - qi) * ${HB}u;
  ${coords.join('\n  ')}
  ${decl.join('\n  ')}
  for (var t0 = 0u; t0 + ${UNR}u <= ${KT}u; t0 += ${UNR}u) {
  ${trips.join('\n  ')}
  }
  ${store.join('\n  ')}
}`;
}

const rows: [string, number][] = [];
{
  const module = device.createShaderModule({ code: readFileSync(new URL('../shaders/matmul_quad.wgsl', import.meta.url), 'utf8') });
  const pipe = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'matmul_quad8x8', constants: { WG: 64, QX: 4 } } });
  const params = new ArrayBuffer(48);
  new Uint32Array(params).set([M, N, K, K, 1, 1, K, 0, 0, 0]);
  new Float32Array(params).set([1, 0], 10);
  const pb = device.createBuffer({ size: 48, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(pb, 0, params);
  const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [pb, C, buffer(A), buffer(BT)].map((b, i) => ({ binding: i, resource: { buffer: b } })) });
  rows.push(['matmul_quad8x8 (buffers, shipped)', await matmulRate('quad8x8', dispatcher(pipe, bg, [Math.ceil(N / 64), Math.ceil(M / 64)]))]);
}
// rgba32float is unfilterable without the float32-filterable feature: nearest sampling with a non-filtering sampler.
const sampledLayout = device.createBindGroupLayout({
  entries: [
    { binding: 0, visibility: GPUShaderStage.COMPUTE, texture: { sampleType: 'unfilterable-float' } },
    { binding: 1, visibility: GPUShaderStage.COMPUTE, texture: { sampleType: 'unfilterable-float' } },
    { binding: 2, visibility: GPUShaderStage.COMPUTE, sampler: { type: 'non-filtering' } },
    { binding: 3, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
  ],
});
const variants: [number, number, number, number, number][] = [
  [8, 8, 64, 4, 1],
  [8, 8, 32, 2, 1],
  [8, 4, 64, 4, 2],
  [8, 4, 32, 2, 2],
  [4, 8, 32, 4, 2],
  [4, 4, 64, 4, 4],
  [12, 8, 64, 4, 1],
];
for (const [RM, RN, WG, QX, UNR] of variants) {
  if (KT % UNR !== 0) continue;
  const module = device.createShaderModule({ code: sampledKernel(RM, RN, WG, QX, UNR) });
  const pipe = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [sampledLayout] }), compute: { module, entryPoint: 'main' } });
  const bg = device.createBindGroup({
    layout: sampledLayout,
    entries: [
      { binding: 0, resource: texA.createView() },
      { binding: 1, resource: texB.createView() },
      { binding: 2, resource: sampler },
      { binding: 3, resource: { buffer: C } },
    ],
  });
  const label = `sampled ${RM}x${RN} WG${WG} unroll ${UNR}`;
  rows.push([label, await matmulRate(label, dispatcher(pipe, bg, [Math.ceil(N / (QX * 2 * RN)), Math.ceil(M / ((WG / 4 / QX) * 2 * RM))]))]);
}
const fma = await fmaCeiling(device, 'fma_ceiling', 1024);
const ceiling = fma.flop(256) / (await cpuSeconds(() => fma.dispatch(256))) / 1e9;
fma.destroy();
console.log(`${M}x${K}x${N} NT, GFLOP/s by CPU time ÷ 2 cores; FMA ceiling ${ceiling.toFixed(1)} GFLOP/s`);
for (const [label, g] of rows) console.log(`  ${label.padEnd(36)} ${g.toFixed(2).padStart(6)} GFLOP/s  ${((100 * g) / ceiling).toFixed(0).padStart(3)} % of ceiling`);
process.exit(0);
