// Host side of shaders/residual.wgsl.
import { grid1d, numel, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectSameSize } from './check';

const WG = 256;
export const RESIDUAL_FORWARD: KernelSpec = {
  shader: 'residual',
  entry: 'residual_forward',
  bindings: ['rw', 'read', 'read'],
  constants: { WG },
};
export const RESIDUAL_BACKWARD: KernelSpec = {
  shader: 'residual',
  entry: 'residual_backward',
  bindings: ['rw', 'read'],
  constants: { WG },
};

/** out = a + b. */
export function residualForward(batch: CommandBatch, out: GpuTensor, a: GpuTensor, b: GpuTensor): void {
  expectSameSize('residual_forward', { out, a, b });
  const n = numel(out.shape);
  batch.dispatch(RESIDUAL_FORWARD, { params: params().u32(n).bytes(), tensors: [out, a, b], grid: grid1d(n, WG) });
}

/** dAcc += dOut (gradients of the two paths of a residual join). */
export function residualBackward(batch: CommandBatch, dAcc: GpuTensor, dOut: GpuTensor): void {
  expectSameSize('residual_backward', { dAcc, dOut });
  const n = numel(dAcc.shape);
  batch.dispatch(RESIDUAL_BACKWARD, { params: params().u32(n).bytes(), tensors: [dAcc, dOut], grid: grid1d(n, WG) });
}

/**
 * acc += x, in place: the residual stream update `x = x + f(x)` without a second buffer (a buffer
 * cannot be bound both writable and read-only in one dispatch). Same entry point as the backward.
 */
export function residualAccumulate(batch: CommandBatch, acc: GpuTensor, x: GpuTensor): void {
  residualBackward(batch, acc, x);
}
