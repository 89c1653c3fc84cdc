// Node host: the `webgpu` npm package (Dawn). The Vulkan environment (SwiftShader on machines
// without a GPU) must be set before the process starts; `scripts/webgpu-env.mjs` does that, so
// every npm script and the `webtune` bin go through it and users never type it.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireContext, type ContextOptions, type GpuContext, type ShaderSource } from './context';
import { WebGpuUnavailableError } from './errors';

const SHADER_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shaders');

export const nodeShaderSource: ShaderSource = (name) => {
  try {
    return readFileSync(join(SHADER_DIR, `${name}.wgsl`), 'utf8');
  } catch (e) {
    throw new Error(`shader ${name}.wgsl not found in ${SHADER_DIR}: ${(e as Error).message}`);
  }
};

let gpuObject: GPU | null = null;

/** The `GPU` object of the webgpu package (globals such as GPUBufferUsage installed). */
export async function nodeGpu(): Promise<GPU> {
  if (gpuObject) return gpuObject;
  let mod: { create: (opts: string[]) => GPU; globals: object };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    throw new WebGpuUnavailableError(`the 'webgpu' package could not be loaded (run npm ci): ${(e as Error).message}`);
  }
  // GPUBufferUsage, GPUMapMode, … as globals, as in a browser.
  Object.assign(globalThis, mod.globals);
  gpuObject = mod.create([]);
  return gpuObject;
}

export async function acquireNodeContext(
  options: ContextOptions & { shaderSource?: ShaderSource } = {},
): Promise<GpuContext> {
  const gpu = await nodeGpu();
  try {
    return await acquireContext(gpu, options.shaderSource ?? nodeShaderSource, options);
  } catch (e) {
    if (e instanceof WebGpuUnavailableError && !process.env.VK_ICD_FILENAMES) {
      throw new WebGpuUnavailableError(
        `${e.message} This process was started without the webtune launcher; run it through npm scripts or ` +
          '`node scripts/webgpu-env.mjs <command>` so the Vulkan environment (SwiftShader fallback) is set.',
      );
    }
    throw e;
  }
}
