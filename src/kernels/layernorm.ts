// Host side of shaders/layernorm.wgsl. N = rows (B·T tokens), C = channels.
import { KernelArgumentError, grid1d, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel } from './check';
import {
  DEFAULT_COLUMN_VARIANT,
  DEFAULT_ROW_VARIANT,
  columnConstants,
  rowConstants,
  type ColumnVariant,
  type RowVariant,
} from './rmsnorm';

export const LAYERNORM_FORWARD: KernelSpec = {
  shader: 'layernorm',
  entry: 'layernorm_forward',
  bindings: ['rw', 'rw', 'rw', 'read', 'read', 'read'],
  constants: rowConstants('layernorm_forward', DEFAULT_ROW_VARIANT),
};
export const LAYERNORM_BACKWARD: KernelSpec = {
  shader: 'layernorm',
  entry: 'layernorm_backward',
  bindings: ['rw', 'read', 'read', 'read', 'read', 'read'],
  constants: rowConstants('layernorm_backward', DEFAULT_ROW_VARIANT),
};
export const LAYERNORM_BACKWARD_DWDB: KernelSpec = {
  shader: 'layernorm',
  entry: 'layernorm_backward_dwdb',
  bindings: ['rw', 'rw', 'read', 'read', 'read', 'read'],
  constants: columnConstants('layernorm_backward_dwdb', DEFAULT_COLUMN_VARIANT),
};

function expectSizes(kernel: string, N: number, C: number): void {
  if (!Number.isInteger(N) || !Number.isInteger(C) || N < 1 || C < 1) {
    throw new KernelArgumentError(kernel, `sizes must be positive integers, got N=${N}, C=${C}`);
  }
}

/**
 * out = (x − mean)·rstd·w + b per row; saves mean and rstd for backward.
 * out, x: (N, C); mean, rstd: (N); w, b: (C). GPT-2 uses eps = 1e-5.
 */
export function layernormForward(
  batch: CommandBatch,
  out: GpuTensor,
  mean: GpuTensor,
  rstd: GpuTensor,
  x: GpuTensor,
  w: GpuTensor,
  b: GpuTensor,
  N: number,
  C: number,
  eps = 1e-5,
  variant: RowVariant = DEFAULT_ROW_VARIANT,
): void {
  const k = 'layernorm_forward';
  expectSizes(k, N, C);
  expectNumel(k, 'out', out, N * C, 'N·C');
  expectNumel(k, 'mean', mean, N, 'N');
  expectNumel(k, 'rstd', rstd, N, 'N');
  expectNumel(k, 'x', x, N * C, 'N·C');
  expectNumel(k, 'w', w, C, 'C');
  expectNumel(k, 'b', b, C, 'C');
  batch.dispatch(
    { ...LAYERNORM_FORWARD, constants: rowConstants(k, variant) },
    {
      params: params().u32(N).u32(C).f32(eps).bytes(),
      tensors: [out, mean, rstd, x, w, b],
      grid: grid1d(N, variant.wg / variant.lanes),
    },
  );
}

/**
 * dx = gradient of LayerNorm wrt x (=); dw += Σ_rows dy·x̂, db += Σ_rows dy (+=).
 * dx, dy, x: (N, C); w, dw, db: (C); mean, rstd: (N) as saved by forward. Two dispatches.
 */
export function layernormBackward(
  batch: CommandBatch,
  dx: GpuTensor,
  dw: GpuTensor,
  db: GpuTensor,
  dy: GpuTensor,
  x: GpuTensor,
  w: GpuTensor,
  mean: GpuTensor,
  rstd: GpuTensor,
  N: number,
  C: number,
  variant: RowVariant = DEFAULT_ROW_VARIANT,
  columns: ColumnVariant = DEFAULT_COLUMN_VARIANT,
): void {
  const k = 'layernorm_backward';
  expectSizes(k, N, C);
  expectNumel(k, 'dx', dx, N * C, 'N·C');
  expectNumel(k, 'dw', dw, C, 'C');
  expectNumel(k, 'db', db, C, 'C');
  expectNumel(k, 'dy', dy, N * C, 'N·C');
  expectNumel(k, 'x', x, N * C, 'N·C');
  expectNumel(k, 'w', w, C, 'C');
  expectNumel(k, 'mean', mean, N, 'N');
  expectNumel(k, 'rstd', rstd, N, 'N');
  const p = params().u32(N).u32(C).f32(0).bytes();
  batch.dispatch(
    { ...LAYERNORM_BACKWARD, constants: rowConstants(k, variant) },
    { params: p, tensors: [dx, dy, x, w, mean, rstd], grid: grid1d(N, variant.wg / variant.lanes) },
  );
  batch.dispatch(
    { ...LAYERNORM_BACKWARD_DWDB, constants: columnConstants('layernorm_backward_dwdb', columns) },
    { params: p, tensors: [dw, db, dy, x, mean, rstd], grid: grid1d(C, columns.cols) },
  );
}
