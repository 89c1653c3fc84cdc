// Host side of shaders/matmul_f16w.wgsl: matmul whose B operand is a packed-f16 tensor (dtype f16x2),
// for frozen weights resident at half the memory. Same options as matmul (transposes, batches, alpha, beta).
import { KernelArgumentError, numel, params, type CommandBatch, type GpuContext, type GpuTensor, type KernelSpec } from '../gpu';
import { f32ToF16 } from '../io/safetensors';
import type { MatmulOptions } from './matmul';

const WG = 64;
const GX = 16;
export const MATMUL_F16W: KernelSpec = {
  shader: 'matmul_f16w',
  entry: 'matmul_f16w_reg4x4',
  bindings: ['rw', 'read', 'read'],
  constants: { WG, GX },
};
const TILE_M = (WG / GX) * 4;
const TILE_N = GX * 4;

/** Pack f32 values as f16 pairs (even element in the low half), rounding to nearest even. */
export function packF16(values: Float32Array): Uint32Array {
  const out = new Uint32Array(Math.ceil(values.length / 2));
  for (let i = 0; i < values.length; i++) out[i >> 1] |= f32ToF16(values[i]) << ((i & 1) * 16);
  return out;
}

/** Upload f32 host values as a resident f16 tensor (dtype f16x2, 2 bytes per element). */
export function uploadF16(ctx: GpuContext, shape: number[], values: Float32Array, label: string): GpuTensor {
  return ctx.tensor(shape, { role: 'weights', dtype: 'f16x2', label, data: packF16(values) });
}

/** C = alpha·op(A)·op(B) + beta·C with B in f16 (see MatmulOptions). */
export function matmulF16w(batch: CommandBatch, c: GpuTensor, a: GpuTensor, b: GpuTensor, o: MatmulOptions): void {
  const k = 'matmul_f16w';
  const { m, n } = o;
  const kk = o.k;
  if (b.dtype !== 'f16x2') throw new KernelArgumentError(k, `b must be a packed f16 tensor (f16x2), got ${b.dtype}`);
  const nb = o.batch ?? 1;
  const strideA = o.strideA ?? m * kk;
  const strideB = o.strideB ?? kk * n;
  const strideC = o.strideC ?? m * n;
  for (const [name, t, stride, size] of [['a', a, strideA, m * kk], ['b', b, strideB, kk * n], ['c', c, strideC, m * n]] as const) {
    const need = (nb - 1) * stride + size;
    if (numel(t.shape) < need) throw new KernelArgumentError(k, `${name} has ${numel(t.shape)} elements [${t.shape.join(', ')}], needs at least ${need}`);
  }
  if (m < 1 || n < 1) throw new KernelArgumentError(k, `M and N must be ≥ 1, got ${m}, ${n}`);
  const p = params()
    .u32(m)
    .u32(n)
    .u32(kk)
    .u32(o.transA ? 1 : kk)
    .u32(o.transA ? m : 1)
    .u32(o.transB ? 1 : n)
    .u32(o.transB ? kk : 1)
    .u32(strideA)
    .u32(strideB)
    .u32(strideC)
    .f32(o.alpha ?? 1)
    .f32(o.beta ?? 0)
    .bytes();
  batch.dispatch(MATMUL_F16W, { params: p, tensors: [c, a, b], grid: [Math.ceil(n / TILE_N), Math.ceil(m / TILE_M), nb] });
}
