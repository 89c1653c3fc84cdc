// The GPU context every kernel test uses: the real WebGPU adapter through the `webgpu` package.
// No adapter → the test FAILS with the reason (GPU tests are never silently skipped).
import { acquireNodeContext } from '../../src/gpu/node';
import type { GpuContext, GpuTensor } from '../../src/gpu';

let ctx: Promise<GpuContext> | null = null;

export function gpu(): Promise<GpuContext> {
  ctx ??= acquireNodeContext().catch((e: Error) => {
    throw new Error(
      `no WebGPU adapter for the kernel tests: ${e.message}\n` +
        'Run the tests through `npm test` (which sets the Vulkan/SwiftShader environment); on Debian install `chromium`.',
    );
  });
  return ctx;
}

/** Upload float64 test data as f32. */
export function upload(c: GpuContext, data: ArrayLike<number>, shape: number[], label = 'input'): GpuTensor {
  return c.tensor(shape, { label, data: Float32Array.from(data) });
}

/** Upload integer data as u32 / i32 words. */
export function uploadInts(c: GpuContext, data: ArrayLike<number>, shape: number[], label = 'ints', signed = false): GpuTensor {
  return c.tensor(shape, {
    label,
    dtype: signed ? 'i32' : 'u32',
    data: signed ? Int32Array.from(data) : Uint32Array.from(data),
  });
}

/** Read back a tensor as float64 for comparison. */
export async function download(c: GpuContext, t: GpuTensor): Promise<Float64Array> {
  return Float64Array.from(await c.readF32(t));
}
