// Host side of shaders/swiglu.wgsl (Llama / Qwen2 MLP gate). N = number of values (B·T·I).
import { grid1d, numel, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectSameSize } from './check';

const WG = 256;
export const SWIGLU_FORWARD: KernelSpec = {
  shader: 'swiglu',
  entry: 'swiglu_forward',
  bindings: ['rw', 'read', 'read'],
  constants: { WG },
};
export const SWIGLU_BACKWARD: KernelSpec = {
  shader: 'swiglu',
  entry: 'swiglu_backward',
  bindings: ['rw', 'rw', 'read', 'read', 'read'],
  constants: { WG },
};

/** out = silu(gate) ⊙ up, silu(g) = g·sigmoid(g). out, gate, up: (N). */
export function swigluForward(batch: CommandBatch, out: GpuTensor, gate: GpuTensor, up: GpuTensor): void {
  expectSameSize('swiglu_forward', { out, gate, up });
  const n = numel(out.shape);
  batch.dispatch(SWIGLU_FORWARD, { params: params().u32(n).bytes(), tensors: [out, gate, up], grid: grid1d(n, WG) });
}

/** dGate = dOut·up·silu'(gate), dUp = dOut·silu(gate) (both =). All (N); gate, up are the forward inputs. */
export function swigluBackward(
  batch: CommandBatch,
  dGate: GpuTensor,
  dUp: GpuTensor,
  dOut: GpuTensor,
  gate: GpuTensor,
  up: GpuTensor,
): void {
  expectSameSize('swiglu_backward', { dGate, dUp, dOut, gate, up });
  const n = numel(dGate.shape);
  batch.dispatch(SWIGLU_BACKWARD, {
    params: params().u32(n).bytes(),
    tensors: [dGate, dUp, dOut, gate, up],
    grid: grid1d(n, WG),
  });
}
