// Host side of shaders/cross_entropy.wgsl: fused softmax cross-entropy, HF causal-LM semantics.
//   N rows (tokens), V vocabulary. Targets are i32, already shifted by the caller (target[n] = label of
//   token n + 1; see src/ref/cross_entropy.ts shiftLabels), IGNORE_INDEX (−100) marks rows without a target.
import { grid1d, KernelArgumentError, numel, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel } from './check';

export const IGNORE_INDEX = -100;

const WG = 256; // a power of two (tree reductions)
export const CROSS_ENTROPY_FORWARD: KernelSpec = {
  shader: 'cross_entropy',
  entry: 'cross_entropy_forward',
  bindings: ['rw', 'rw', 'read', 'read'],
  constants: { WG },
};
export const CROSS_ENTROPY_MEAN: KernelSpec = {
  shader: 'cross_entropy',
  entry: 'cross_entropy_mean',
  bindings: ['rw', 'read', 'read'],
  constants: { WG },
};
export const CROSS_ENTROPY_BACKWARD: KernelSpec = {
  shader: 'cross_entropy',
  entry: 'cross_entropy_backward',
  bindings: ['rw', 'read', 'read', 'read'],
  constants: { WG },
};

/** Layout of the `stats` output of the mean: [mean, sum, N_valid]. */
export const STATS = { mean: 0, sum: 1, count: 2, length: 3 } as const;

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  /** The targets on the host: validated (a target outside [0, V) that is not ignoreIndex throws, naming it). */
  hostTargets?: ArrayLike<number>;
}

function sizes(kernel: string, logits: GpuTensor, targets: GpuTensor): { rows: number; vocab: number } {
  if (logits.shape.length !== 2) throw new KernelArgumentError(kernel, `logits must be 2-D (N, V), got [${logits.shape.join(', ')}]`);
  const [rows, vocab] = logits.shape;
  if (targets.dtype !== 'i32') throw new KernelArgumentError(kernel, `targets must be i32, got ${targets.dtype}`);
  expectNumel(kernel, 'targets', targets, rows, `one per row of logits`);
  return { rows, vocab };
}

/** Throws a KernelArgumentError naming the first target that is neither ignoreIndex nor in [0, vocab). */
export function checkTargets(kernel: string, targets: ArrayLike<number>, vocab: number, ignoreIndex = IGNORE_INDEX): void {
  for (let n = 0; n < targets.length; n++) {
    const t = targets[n];
    if (t !== ignoreIndex && !(Number.isInteger(t) && t >= 0 && t < vocab)) {
      throw new KernelArgumentError(kernel, `target ${t} at row ${n} is outside the vocabulary [0, ${vocab}) and is not ${ignoreIndex}`);
    }
  }
}

/** N_valid: rows whose target is not ignoreIndex (for the backward scale 1/N_valid, or summed over micro-batches). */
export function countValidTargets(targets: ArrayLike<number>, ignoreIndex = IGNORE_INDEX): number {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== ignoreIndex) n++;
  return n;
}

function packParams(rows: number, vocab: number, ignoreIndex: number, scale: number): Uint8Array {
  return params().u32(rows).u32(vocab).i32(ignoreIndex).f32(scale).bytes();
}

/**
 * Per-row losses (N) and logsumexp (N, saved for the backward); with `stats` (3) also
 * [mean, sum, N_valid] of the losses (mean NaN when every row is ignored). logits: (N, V), targets: (N) i32.
 */
export function crossEntropyForward(
  batch: CommandBatch,
  losses: GpuTensor,
  lse: GpuTensor,
  stats: GpuTensor | null,
  logits: GpuTensor,
  targets: GpuTensor,
  opts: CrossEntropyOptions = {},
): void {
  const k = 'cross_entropy_forward';
  const { rows, vocab } = sizes(k, logits, targets);
  if (vocab < 1) throw new KernelArgumentError(k, 'logits need at least one vocabulary column');
  expectNumel(k, 'losses', losses, rows);
  expectNumel(k, 'lse', lse, rows);
  const ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
  if (opts.hostTargets) checkTargets(k, opts.hostTargets, vocab, ignoreIndex);
  const p = packParams(rows, vocab, ignoreIndex, 0);
  if (rows > 0) {
    batch.dispatch(CROSS_ENTROPY_FORWARD, { params: p, tensors: [losses, lse, logits, targets], grid: grid1d(rows, 1) });
  }
  if (stats) {
    expectNumel('cross_entropy_mean', 'stats', stats, STATS.length, '[mean, sum, N_valid]');
    batch.dispatch(CROSS_ENTROPY_MEAN, { params: p, tensors: [stats, losses, targets], grid: [1, 1, 1] });
  }
}

/**
 * dLogits = (softmax(logits) − onehot(target)) · scale for valid rows, 0 for ignored rows (assigned, =).
 * lse: (N) from the forward. scale: 1/N_valid, or 1/N_total under gradient accumulation.
 * dLogits must be a different buffer from logits.
 */
export function crossEntropyBackward(
  batch: CommandBatch,
  dLogits: GpuTensor,
  logits: GpuTensor,
  lse: GpuTensor,
  targets: GpuTensor,
  scale: number,
  opts: CrossEntropyOptions = {},
): void {
  const k = 'cross_entropy_backward';
  const { rows, vocab } = sizes(k, logits, targets);
  expectNumel(k, 'dLogits', dLogits, rows * vocab, `N=${rows} × V=${vocab}`);
  expectNumel(k, 'lse', lse, rows);
  if (dLogits.buffer === logits.buffer) {
    throw new KernelArgumentError(k, 'dLogits must be a different GPU buffer from logits (one buffer cannot be bound writable and read-only in a dispatch)');
  }
  if (!Number.isFinite(scale)) throw new KernelArgumentError(k, `scale must be finite, got ${scale} (no valid targets?)`);
  const ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
  if (opts.hostTargets) checkTargets(k, opts.hostTargets, vocab, ignoreIndex);
  const n = numel(dLogits.shape);
  if (n === 0) return;
  batch.dispatch(CROSS_ENTROPY_BACKWARD, {
    params: packParams(rows, vocab, ignoreIndex, scale),
    tensors: [dLogits, lse, logits, targets],
    grid: grid1d(n, WG),
  });
}
