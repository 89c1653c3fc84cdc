// The FMA-bound ceiling kernel (bench/fma_ceiling.wgsl), set up once for any bench: `dispatch(iters)`
// runs `groups` workgroups of 64 invocations for `iters` loop trips and waits for the GPU; `flop(iters)`
// is the work that did. Each bench times it its own way (wall clock, CPU time).
import { readFileSync } from 'node:fs';

export interface FmaCeiling {
  dispatch(iters: number): Promise<void>;
  flop(iters: number): number;
  destroy(): void;
}

/** fma_ceiling (16-deep loop body) or fma_ceiling_shallow (4-deep, for context). */
export async function fmaCeiling(device: GPUDevice, entryPoint: 'fma_ceiling' | 'fma_ceiling_shallow' = 'fma_ceiling', groups = 512): Promise<FmaCeiling> {
  const WG = 64;
  const code = readFileSync(new URL('./fma_ceiling.wgsl', import.meta.url), 'utf8');
  const layout = device.createBindGroupLayout({
    entries: [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
      { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
    ],
  });
  const pipeline = await device.createComputePipelineAsync({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module: device.createShaderModule({ code }), entryPoint, constants: { WG } },
  });
  const out = device.createBuffer({ size: WG * groups * 4, usage: GPUBufferUsage.STORAGE });
  const uniform = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const bind = device.createBindGroup({
    layout,
    entries: [
      { binding: 0, resource: { buffer: uniform } },
      { binding: 1, resource: { buffer: out } },
    ],
  });
  const depth = entryPoint === 'fma_ceiling' ? 16 : 4;
  return {
    async dispatch(iters) {
      const p = new ArrayBuffer(16);
      new Uint32Array(p, 0, 1)[0] = iters;
      new Float32Array(p, 4, 2).set([0.999, 1e-3]);
      device.queue.writeBuffer(uniform, 0, p);
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(groups);
      pass.end();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
    },
    // 8 chains of vec4 fma (4 lanes), 2 flops each, `depth` per loop trip.
    flop: (iters) => 2 * 4 * 8 * depth * iters * WG * groups,
    destroy() {
      out.destroy();
      uniform.destroy();
    },
  };
}
