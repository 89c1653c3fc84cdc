// Host side of shaders/rmsnorm.wgsl. N = rows (B·T tokens), C = channels.
import { KernelArgumentError, grid1d, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel } from './check';

/**
 * How a row kernel (one reduction per row) is laid out: `wg` invocations per workgroup, `lanes` of
 * them cooperating on one row (power of two dividing `wg`). `lanes: 1` = one invocation per row and no
 * barriers (fast on SwiftShader); 32–256 lanes suit real GPUs. Chosen per adapter by the caller.
 */
export interface RowVariant {
  wg: number;
  lanes: number;
}

/**
 * How a column reduction (parameter gradient summed over rows) is laid out: a workgroup covers
 * `cols` columns with `wg / cols` row lanes (`cols` must divide `wg`).
 */
export interface ColumnVariant {
  wg: number;
  cols: number;
}

export const DEFAULT_ROW_VARIANT: RowVariant = { wg: 64, lanes: 1 };
export const DEFAULT_COLUMN_VARIANT: ColumnVariant = { wg: 64, cols: 64 };

export function rowConstants(kernel: string, v: RowVariant): Record<string, number> {
  const pow2 = v.lanes >= 1 && (v.lanes & (v.lanes - 1)) === 0;
  if (!pow2 || v.wg % v.lanes !== 0 || v.wg > 256) {
    throw new KernelArgumentError(kernel, `row variant ${JSON.stringify(v)}: lanes must be a power of two dividing wg ≤ 256`);
  }
  return { WG: v.wg, LANES: v.lanes };
}

export function columnConstants(kernel: string, v: ColumnVariant): Record<string, number> {
  if (v.cols < 1 || v.wg % v.cols !== 0 || v.wg > 256) {
    throw new KernelArgumentError(kernel, `column variant ${JSON.stringify(v)}: cols must divide wg ≤ 256`);
  }
  return { WG: v.wg, COLS: v.cols };
}

export const RMSNORM_FORWARD: KernelSpec = {
  shader: 'rmsnorm',
  entry: 'rmsnorm_forward',
  bindings: ['rw', 'rw', 'read', 'read'],
  constants: rowConstants('rmsnorm_forward', DEFAULT_ROW_VARIANT),
};
export const RMSNORM_BACKWARD: KernelSpec = {
  shader: 'rmsnorm',
  entry: 'rmsnorm_backward',
  bindings: ['rw', 'read', 'read', 'read', 'read'],
  constants: rowConstants('rmsnorm_backward', DEFAULT_ROW_VARIANT),
};
export const RMSNORM_BACKWARD_DW: KernelSpec = {
  shader: 'rmsnorm',
  entry: 'rmsnorm_backward_dw',
  bindings: ['rw', 'read', 'read', 'read'],
  constants: columnConstants('rmsnorm_backward_dw', DEFAULT_COLUMN_VARIANT),
};

function expectSizes(kernel: string, N: number, C: number): void {
  if (!Number.isInteger(N) || !Number.isInteger(C) || N < 1 || C < 1) {
    throw new KernelArgumentError(kernel, `sizes must be positive integers, got N=${N}, C=${C}`);
  }
}

/**
 * out = x · rsqrt(mean(x²) + eps) · w per row; saves rstd for backward.
 * out, x: (N, C); rstd: (N); w: (C). Llama's default eps is 1e-6 (`rms_norm_eps`).
 */
export function rmsnormForward(
  batch: CommandBatch,
  out: GpuTensor,
  rstd: GpuTensor,
  x: GpuTensor,
  w: GpuTensor,
  N: number,
  C: number,
  eps = 1e-6,
  variant: RowVariant = DEFAULT_ROW_VARIANT,
): void {
  const k = 'rmsnorm_forward';
  expectSizes(k, N, C);
  expectNumel(k, 'out', out, N * C, 'N·C');
  expectNumel(k, 'rstd', rstd, N, 'N');
  expectNumel(k, 'x', x, N * C, 'N·C');
  expectNumel(k, 'w', w, C, 'C');
  batch.dispatch(
    { ...RMSNORM_FORWARD, constants: rowConstants(k, variant) },
    { params: params().u32(N).u32(C).f32(eps).bytes(), tensors: [out, rstd, x, w], grid: grid1d(N, variant.wg / variant.lanes) },
  );
}

/**
 * dx = (gradient of RMSNorm wrt x) (=), dw += Σ_rows dy · x · rstd (+=).
 * dx, dy, x: (N, C); w, dw: (C); rstd: (N) as saved by forward. Two dispatches: rows, then columns.
 */
export function rmsnormBackward(
  batch: CommandBatch,
  dx: GpuTensor,
  dw: GpuTensor,
  dy: GpuTensor,
  x: GpuTensor,
  w: GpuTensor,
  rstd: GpuTensor,
  N: number,
  C: number,
  variant: RowVariant = DEFAULT_ROW_VARIANT,
  columns: ColumnVariant = DEFAULT_COLUMN_VARIANT,
): void {
  const k = 'rmsnorm_backward';
  expectSizes(k, N, C);
  expectNumel(k, 'dx', dx, N * C, 'N·C');
  expectNumel(k, 'dw', dw, C, 'C');
  expectNumel(k, 'dy', dy, N * C, 'N·C');
  expectNumel(k, 'x', x, N * C, 'N·C');
  expectNumel(k, 'w', w, C, 'C');
  expectNumel(k, 'rstd', rstd, N, 'N');
  const p = params().u32(N).u32(C).f32(0).bytes();
  batch.dispatch(
    { ...RMSNORM_BACKWARD, constants: rowConstants(k, variant) },
    { params: p, tensors: [dx, dy, x, w, rstd], grid: grid1d(N, variant.wg / variant.lanes) },
  );
  batch.dispatch(
    { ...RMSNORM_BACKWARD_DW, constants: columnConstants('rmsnorm_backward_dw', columns) },
    { params: p, tensors: [dw, dy, x, rstd], grid: grid1d(C, columns.cols) },
  );
}
