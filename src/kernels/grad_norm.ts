// Host side of shaders/grad_norm.wgsl: global gradient L2 norm and clip coefficient (torch's
// clip_grad_norm_), with no read-back: the coefficient stays on the GPU for adamw_update.
import { grid1d, KernelArgumentError, numel, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel } from './check';

const WG = 256;
const ITEMS = 16;
/** Elements reduced into one partial sum (one workgroup). */
export const GRAD_NORM_CHUNK = WG * ITEMS;

export const GRAD_NORM_PARTIAL: KernelSpec = {
  shader: 'grad_norm',
  entry: 'grad_norm_partial',
  bindings: ['rw', 'read'],
  constants: { WG, ITEMS },
};
export const GRAD_NORM_FINALIZE: KernelSpec = {
  shader: 'grad_norm',
  entry: 'grad_norm_finalize',
  bindings: ['rw', 'rw', 'read'],
  constants: { WG, ITEMS },
};
export const GRAD_NORM_SCALE: KernelSpec = {
  shader: 'grad_norm',
  entry: 'grad_norm_scale',
  bindings: ['rw', 'read'],
  constants: { WG, ITEMS },
};

/** Number of partial sums a gradient of `n` elements produces. */
export function gradNormPartialCount(n: number): number {
  return Math.ceil(n / GRAD_NORM_CHUNK);
}

/** Size of the `partials` buffer needed for all of these gradient sizes. */
export function gradNormPartialsLength(sizes: readonly number[]): number {
  return Math.max(1, sizes.reduce((s, n) => s + gradNormPartialCount(n), 0));
}

/**
 * partials[offset …] = sums of squares of `grad`, one per chunk of GRAD_NORM_CHUNK elements.
 * Returns the offset where the next tensor's partial sums go.
 */
export function gradNormPartial(batch: CommandBatch, partials: GpuTensor, grad: GpuTensor, offset: number): number {
  const n = numel(grad.shape);
  const count = gradNormPartialCount(n);
  if (offset + count > numel(partials.shape)) {
    throw new KernelArgumentError(
      'grad_norm_partial',
      `partials has ${numel(partials.shape)} elements, needs ${offset + count} (offset ${offset} + ${count} for ${grad.label})`,
    );
  }
  if (count > 0) {
    batch.dispatch(GRAD_NORM_PARTIAL, {
      params: params().u32(n).u32(offset).bytes(),
      tensors: [partials, grad],
      grid: grid1d(count, 1),
    });
  }
  return offset + count;
}

/**
 * totalNorm[0] = √(Σ partials[0..count)), clipCoef[0] = min(1, maxNorm/(total + 1e-6)).
 * maxNorm = Infinity (or ≤ 0) means no clipping: clipCoef[0] = 1.
 */
export function gradNormFinalize(
  batch: CommandBatch,
  totalNorm: GpuTensor,
  clipCoef: GpuTensor,
  partials: GpuTensor,
  count: number,
  maxNorm: number,
): void {
  const kernel = 'grad_norm_finalize';
  expectNumel(kernel, 'totalNorm', totalNorm, 1);
  expectNumel(kernel, 'clipCoef', clipCoef, 1);
  if (count > numel(partials.shape)) {
    throw new KernelArgumentError(kernel, `count ${count} exceeds the ${numel(partials.shape)} elements of partials`);
  }
  const clip = Number.isFinite(maxNorm) && maxNorm > 0;
  batch.dispatch(GRAD_NORM_FINALIZE, {
    params: params().u32(count).f32(clip ? maxNorm : 0).u32(clip ? 1 : 0).bytes(),
    tensors: [totalNorm, clipCoef, partials],
    grid: [1, 1, 1],
  });
}

/** grad *= clipCoef[0], in place. */
export function gradNormScale(batch: CommandBatch, grad: GpuTensor, clipCoef: GpuTensor): void {
  expectNumel('grad_norm_scale', 'clipCoef', clipCoef, 1);
  const n = numel(grad.shape);
  if (n === 0) return;
  batch.dispatch(GRAD_NORM_SCALE, { params: params().u32(n).bytes(), tensors: [grad, clipCoef], grid: grid1d(n, WG) });
}

/**
 * The whole global-norm computation over several gradient tensors: partial sums of each (into
 * `partials`, at least gradNormPartialsLength(sizes) elements), then the final reduction into
 * `totalNorm` (pre-clip, to log) and `clipCoef` (to pass to adamw_update or gradNormScale).
 */
export function gradNorm(
  batch: CommandBatch,
  out: { totalNorm: GpuTensor; clipCoef: GpuTensor },
  partials: GpuTensor,
  grads: readonly GpuTensor[],
  maxNorm: number,
): void {
  let offset = 0;
  for (const g of grads) offset = gradNormPartial(batch, partials, g, offset);
  gradNormFinalize(batch, out.totalNorm, out.clipCoef, partials, offset, maxNorm);
}
