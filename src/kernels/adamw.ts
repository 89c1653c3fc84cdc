// Host side of shaders/adamw.wgsl: one AdamW step over a flat trainable tensor.
import { grid1d, KernelArgumentError, numel, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel, expectSameSize } from './check';

const WG = 256;
export const ADAMW_UPDATE: KernelSpec = {
  shader: 'adamw',
  entry: 'adamw_update',
  bindings: ['rw', 'rw', 'rw', 'read', 'read'],
  constants: { WG },
};

/** torch.optim.AdamW hyper-parameters for one step (defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 1e-2). */
export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count t (the value after torch's `t ← t+1`). */
  step: number;
}

/**
 * Uniform values of one step, computed in float64 on the host (the shader receives them rounded to
 * f32): decay 1 − lr·λ, step size lr/(1 − β1^t) and √(1 − β2^t).
 */
export function adamwConstants(h: AdamWStep): {
  decay: number;
  lerpW: number;
  oneMinusBeta2: number;
  stepSize: number;
  bc2Sqrt: number;
} {
  return {
    decay: 1 - h.lr * h.weightDecay,
    lerpW: 1 - h.beta1,
    oneMinusBeta2: 1 - h.beta2,
    stepSize: h.lr / (1 - h.beta1 ** h.step),
    bc2Sqrt: Math.sqrt(1 - h.beta2 ** h.step),
  };
}

/**
 * param, m, v ← one AdamW step with gradient `grad · clipCoef[0]` (all f32, same size; `clipCoef` has
 * one element: the output of gradNormFinalize, or a tensor holding 1.0 when not clipping).
 */
export function adamwUpdate(
  batch: CommandBatch,
  param: GpuTensor,
  m: GpuTensor,
  v: GpuTensor,
  grad: GpuTensor,
  clipCoef: GpuTensor,
  h: AdamWStep,
): void {
  const kernel = 'adamw_update';
  expectSameSize(kernel, { param, m, v, grad });
  expectNumel(kernel, 'clipCoef', clipCoef, 1, 'the clip coefficient');
  if (!Number.isInteger(h.step) || h.step < 1) throw new KernelArgumentError(kernel, `step must be an integer ≥ 1, got ${h.step}`);
  if (!(h.beta1 >= 0 && h.beta1 < 1 && h.beta2 >= 0 && h.beta2 < 1)) {
    throw new KernelArgumentError(kernel, `betas must be in [0, 1), got (${h.beta1}, ${h.beta2})`);
  }
  const n = numel(param.shape);
  if (n === 0) return;
  const c = adamwConstants(h);
  const p = params()
    .u32(n)
    .f32(c.decay)
    .f32(h.beta1)
    .f32(h.beta2)
    .f32(c.lerpW)
    .f32(c.oneMinusBeta2)
    .f32(c.stepSize)
    .f32(c.bc2Sqrt)
    .f32(h.eps)
    .bytes();
  batch.dispatch(ADAMW_UPDATE, { params: p, tensors: [param, m, v, grad, clipCoef], grid: grid1d(n, WG) });
}
