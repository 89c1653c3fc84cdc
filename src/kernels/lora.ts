// Host side of shaders/lora.wgsl: the LoRA branch y += s · (x_d Aᵀ) Bᵀ and its backward.
// Letters: N rows (tokens), IN/OUT features, R rank. Tensors are row-major; only their element counts
// are checked, so [B, T, C] activations can be passed as they are.
import { KernelArgumentError, numel, params, type CommandBatch, type GpuTensor, type Grid, type KernelSpec } from '../gpu';
import { expectNumel } from './check';

const WG_X = 8;
const WG_Y = 8;
/** Outputs per invocation along each axis (the 4×4 register block in the shader). */
const BLOCK = 4;

function spec(entry: string): KernelSpec {
  return { shader: 'lora', entry, bindings: ['rw', 'read', 'read'], constants: { WG_X, WG_Y } };
}
export const LORA_FORWARD_DOWN = spec('lora_forward_down');
export const LORA_FORWARD_UP = spec('lora_forward_up');
export const LORA_BACKWARD_DU = spec('lora_backward_du');
export const LORA_BACKWARD_DB = spec('lora_backward_db');
export const LORA_BACKWARD_DA = spec('lora_backward_da');
export const LORA_BACKWARD_DX = spec('lora_backward_dx');

export interface LoraDims {
  /** Rows (tokens): N. */
  n: number;
  inFeatures: number;
  outFeatures: number;
  rank: number;
}

function check(kernel: string, d: LoraDims, tensors: Record<string, [GpuTensor, number, string]>): void {
  for (const [k, v] of Object.entries(d)) {
    if (!Number.isInteger(v) || v < 1) throw new KernelArgumentError(kernel, `${k} must be a positive integer, got ${v}`);
  }
  for (const [name, [t, count, what]] of Object.entries(tensors)) expectNumel(kernel, name, t, count, what);
}

/** Grid for an output of M rows × P columns (x across columns, y across rows). */
function grid(rows: number, cols: number): Grid {
  const gy = Math.ceil(rows / (BLOCK * WG_Y));
  const gx = Math.ceil(cols / (BLOCK * WG_X));
  if (gy > 65535 || gx > 65535) throw new KernelArgumentError('lora', `output ${rows}×${cols} too large for one dispatch`);
  return [gx, gy, 1];
}

function uniforms(d: LoraDims, scale: number): Uint8Array {
  return params().u32(d.n).u32(d.inFeatures).u32(d.outFeatures).u32(d.rank).f32(scale).bytes();
}

/** u = x_d · Aᵀ  (u [N, R] is saved for backward). */
export function loraForwardDown(batch: CommandBatch, u: GpuTensor, xd: GpuTensor, a: GpuTensor, d: LoraDims): void {
  check('lora_forward_down', d, {
    u: [u, d.n * d.rank, 'N·rank'],
    xd: [xd, d.n * d.inFeatures, 'N·in'],
    a: [a, d.rank * d.inFeatures, 'rank·in'],
  });
  batch.dispatch(LORA_FORWARD_DOWN, { params: uniforms(d, 0), tensors: [u, xd, a], grid: grid(d.n, d.rank) });
}

/** y += s · u · Bᵀ  (y holds the base output). */
export function loraForwardUp(batch: CommandBatch, y: GpuTensor, u: GpuTensor, b: GpuTensor, d: LoraDims, scale: number): void {
  check('lora_forward_up', d, {
    y: [y, d.n * d.outFeatures, 'N·out'],
    u: [u, d.n * d.rank, 'N·rank'],
    b: [b, d.outFeatures * d.rank, 'out·rank'],
  });
  batch.dispatch(LORA_FORWARD_UP, { params: uniforms(d, scale), tensors: [y, u, b], grid: grid(d.n, d.outFeatures) });
}

/** The LoRA branch forward: u = x_d Aᵀ, y += s · u Bᵀ. */
export function loraForward(
  batch: CommandBatch,
  y: GpuTensor,
  u: GpuTensor,
  xd: GpuTensor,
  a: GpuTensor,
  b: GpuTensor,
  d: LoraDims,
  scale: number,
): void {
  loraForwardDown(batch, u, xd, a, d);
  loraForwardUp(batch, y, u, b, d, scale);
}

/** du = s · dy · B  (∂L/∂u, [N, R], assigned). */
export function loraBackwardDu(batch: CommandBatch, du: GpuTensor, dy: GpuTensor, b: GpuTensor, d: LoraDims, scale: number): void {
  check('lora_backward_du', d, {
    du: [du, d.n * d.rank, 'N·rank'],
    dy: [dy, d.n * d.outFeatures, 'N·out'],
    b: [b, d.outFeatures * d.rank, 'out·rank'],
  });
  batch.dispatch(LORA_BACKWARD_DU, { params: uniforms(d, scale), tensors: [du, dy, b], grid: grid(d.n, d.rank) });
}

/** dB += s · dyᵀ · u. */
export function loraBackwardDb(batch: CommandBatch, dB: GpuTensor, dy: GpuTensor, u: GpuTensor, d: LoraDims, scale: number): void {
  check('lora_backward_db', d, {
    dB: [dB, d.outFeatures * d.rank, 'out·rank'],
    dy: [dy, d.n * d.outFeatures, 'N·out'],
    u: [u, d.n * d.rank, 'N·rank'],
  });
  batch.dispatch(LORA_BACKWARD_DB, { params: uniforms(d, scale), tensors: [dB, dy, u], grid: grid(d.outFeatures, d.rank) });
}

/** dA += duᵀ · x_d  (x_d: the dropped-out input the forward used). */
export function loraBackwardDa(batch: CommandBatch, dA: GpuTensor, du: GpuTensor, xd: GpuTensor, d: LoraDims): void {
  check('lora_backward_da', d, {
    dA: [dA, d.rank * d.inFeatures, 'rank·in'],
    du: [du, d.n * d.rank, 'N·rank'],
    xd: [xd, d.n * d.inFeatures, 'N·in'],
  });
  batch.dispatch(LORA_BACKWARD_DA, { params: uniforms(d, 1), tensors: [dA, du, xd], grid: grid(d.rank, d.inFeatures) });
}

/**
 * dx += du · A. dx holds the base path's input gradient. With dropout this is ∂L/∂x_d: pass a zeroed
 * scratch instead, apply dropout_backward (same seed/offset as the forward) and add the result to the
 * base gradient (residual_backward).
 */
export function loraBackwardDx(batch: CommandBatch, dx: GpuTensor, du: GpuTensor, a: GpuTensor, d: LoraDims): void {
  check('lora_backward_dx', d, {
    dx: [dx, d.n * d.inFeatures, 'N·in'],
    du: [du, d.n * d.rank, 'N·rank'],
    a: [a, d.rank * d.inFeatures, 'rank·in'],
  });
  batch.dispatch(LORA_BACKWARD_DX, { params: uniforms(d, 1), tensors: [dx, du, a], grid: grid(d.n, d.inFeatures) });
}

/**
 * The LoRA branch backward. `du` is an [N, R] scratch. Parameter gradients accumulate (+=); `dx`
 * (optional: omit it when x needs no gradient) accumulates the LoRA part of ∂L/∂x.
 */
export function loraBackward(
  batch: CommandBatch,
  grads: { dA: GpuTensor; dB: GpuTensor; du: GpuTensor; dx?: GpuTensor },
  dy: GpuTensor,
  xd: GpuTensor,
  u: GpuTensor,
  a: GpuTensor,
  b: GpuTensor,
  d: LoraDims,
  scale: number,
): void {
  loraBackwardDb(batch, grads.dB, dy, u, d, scale);
  loraBackwardDu(batch, grads.du, dy, b, d, scale);
  loraBackwardDa(batch, grads.dA, grads.du, xd, d);
  if (grads.dx) loraBackwardDx(batch, grads.dx, grads.du, a, d);
}

/** LoraDims from the shapes of x [.., IN], A [R, IN] and B [OUT, R]; N = numel(x) / IN. */
export function loraDimsOf(x: GpuTensor, a: GpuTensor, b: GpuTensor): LoraDims {
  const rank = a.shape[0];
  const inFeatures = a.shape[a.shape.length - 1];
  const outFeatures = b.shape[0];
  if (a.shape.length !== 2 || b.shape.length !== 2 || b.shape[1] !== rank) {
    throw new KernelArgumentError('lora', `A must be [r, in] and B [out, r]; got A [${a.shape.join(', ')}], B [${b.shape.join(', ')}]`);
  }
  const n = numel(x.shape) / inFeatures;
  if (!Number.isInteger(n)) throw new KernelArgumentError('lora', `x [${x.shape.join(', ')}] is not a multiple of in_features ${inFeatures}`);
  return { n, inFeatures, outFeatures, rank };
}
