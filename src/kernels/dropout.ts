// Host side of shaders/dropout.wgsl: inverted dropout with the counter-based Philox stream of
// src/util/rng.ts. The mask is a pure function of (seed, offset, p): the backward regenerates it.
import { grid1d, KernelArgumentError, numel, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { splitU64 } from '../util/rng';
import { expectSameSize } from './check';

const WG = 256;
export const DROPOUT_FORWARD: KernelSpec = {
  shader: 'dropout',
  entry: 'dropout_forward',
  bindings: ['rw', 'read'],
  constants: { WG },
};
export const DROPOUT_BACKWARD: KernelSpec = {
  shader: 'dropout',
  entry: 'dropout_backward',
  bindings: ['rw', 'read'],
  constants: { WG },
};

export interface DropoutArgs {
  /** Probability of dropping an element, in [0, 1]. */
  p: number;
  /** Key of the random stream, an integer in [0, 2^53). */
  seed: number;
  /** First stream position of this draw, an integer in [0, 2^53); advance it by n between draws. */
  offset: number;
}

/** keep ⇔ (word >> 8) < threshold ⇔ (word >> 8)/2^24 < 1 − p, exactly: threshold = ceil((1 − p)·2^24). */
export function dropoutKeepThreshold(p: number): number {
  return Math.ceil((1 - p) * 16777216);
}

function packParams(kernel: string, n: number, args: DropoutArgs): Uint8Array {
  if (!(args.p >= 0 && args.p <= 1)) throw new KernelArgumentError(kernel, `p must be in [0, 1], got ${args.p}`);
  let seed: [number, number];
  let offset: [number, number];
  try {
    seed = splitU64(args.seed, 'seed');
    offset = splitU64(args.offset, 'offset');
    splitU64(args.offset + n, 'offset + n');
  } catch (e) {
    throw new KernelArgumentError(kernel, (e as Error).message);
  }
  const scale = args.p < 1 ? 1 / (1 - args.p) : 0;
  return params()
    .u32(n)
    .u32(offset[0])
    .u32(offset[1])
    .u32(seed[0])
    .u32(seed[1])
    .u32(dropoutKeepThreshold(args.p))
    .f32(scale)
    .bytes();
}

function dispatch(batch: CommandBatch, spec: KernelSpec, dst: GpuTensor, src: GpuTensor, n: number, args: DropoutArgs): void {
  const p = packParams(spec.entry, n, args);
  if (n === 0) return;
  // One invocation per Philox block of four stream positions.
  const blocks = Math.ceil((n + (args.offset % 4)) / 4);
  batch.dispatch(spec, { params: p, tensors: [dst, src], grid: grid1d(blocks, WG) });
}

/** out = x · keep / (1 − p). out, x: (n). */
export function dropoutForward(batch: CommandBatch, out: GpuTensor, x: GpuTensor, args: DropoutArgs): void {
  expectSameSize('dropout_forward', { out, x });
  dispatch(batch, DROPOUT_FORWARD, out, x, numel(x.shape), args);
}

/** dx = dy · keep / (1 − p), the forward's mask regenerated from the same (seed, offset, p). dx, dy: (n). */
export function dropoutBackward(batch: CommandBatch, dx: GpuTensor, dy: GpuTensor, args: DropoutArgs): void {
  expectSameSize('dropout_backward', { dx, dy });
  dispatch(batch, DROPOUT_BACKWARD, dx, dy, numel(dy.shape), args);
}
