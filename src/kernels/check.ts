// Argument checks shared by kernel hosts: wrong shapes fail loudly on the host, naming the kernel
// and the tensor, instead of reading out of bounds on the GPU.
import { KernelArgumentError, numel, type GpuTensor } from '../gpu';

export function expectSameSize(kernel: string, tensors: Record<string, GpuTensor>): void {
  const entries = Object.entries(tensors);
  const n = numel(entries[0][1].shape);
  for (const [name, t] of entries) {
    if (numel(t.shape) !== n) {
      throw new KernelArgumentError(
        kernel,
        `${name} has ${numel(t.shape)} elements [${t.shape.join(', ')}], expected ${n} like ${entries[0][0]}`,
      );
    }
  }
}

/** Check that `t` has exactly `count` elements. */
export function expectNumel(kernel: string, name: string, t: GpuTensor, count: number, what = ''): void {
  if (numel(t.shape) !== count) {
    throw new KernelArgumentError(
      kernel,
      `${name} has ${numel(t.shape)} elements [${t.shape.join(', ')}], expected ${count}${what ? ` (${what})` : ''}`,
    );
  }
}
