// Host side of shaders/gelu.wgsl (GPT-2's gelu_new, the tanh approximation). N = number of values.
import { grid1d, numel, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectSameSize } from './check';

const WG = 256;
export const GELU_FORWARD: KernelSpec = {
  shader: 'gelu',
  entry: 'gelu_forward',
  bindings: ['rw', 'read'],
  constants: { WG },
};
export const GELU_BACKWARD: KernelSpec = {
  shader: 'gelu',
  entry: 'gelu_backward',
  bindings: ['rw', 'read', 'read'],
  constants: { WG },
};

/** out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). out, x: (N). */
export function geluForward(batch: CommandBatch, out: GpuTensor, x: GpuTensor): void {
  expectSameSize('gelu_forward', { out, x });
  const n = numel(out.shape);
  batch.dispatch(GELU_FORWARD, { params: params().u32(n).bytes(), tensors: [out, x], grid: grid1d(n, WG) });
}

/** dx = dy · gelu'(x) (=). dx, dy, x: (N); x is the forward input. */
export function geluBackward(batch: CommandBatch, dx: GpuTensor, dy: GpuTensor, x: GpuTensor): void {
  expectSameSize('gelu_backward', { dx, dy, x });
  const n = numel(dx.shape);
  batch.dispatch(GELU_BACKWARD, { params: params().u32(n).bytes(), tensors: [dx, dy, x], grid: grid1d(n, WG) });
}
