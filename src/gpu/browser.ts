// Browser host: navigator.gpu, shaders bundled by Vite from the same `shaders/*.wgsl` files Node reads.

import { acquireContext, type ContextOptions, type GpuContext, type ShaderSource } from './context';

const sources = import.meta.glob('/shaders/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<
  string,
  string
>;

export const browserShaderSource: ShaderSource = (name) => {
  const code = sources[`/shaders/${name}.wgsl`];
  if (code === undefined) throw new Error(`shader ${name}.wgsl is not bundled (expected /shaders/${name}.wgsl)`);
  return code;
};

export function hasWebGpu(): boolean {
  return typeof navigator !== 'undefined' && 'gpu' in navigator && !!navigator.gpu;
}

export async function acquireBrowserContext(options: ContextOptions = {}): Promise<GpuContext> {
  return acquireContext(hasWebGpu() ? navigator.gpu : undefined, browserShaderSource, options);
}
