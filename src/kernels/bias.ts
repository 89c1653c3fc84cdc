// Host side of shaders/bias.wgsl: y[r, c] += b[c] (in place) and db[c] += Σ_r dy[r, c].
// R = rows (tokens, B·T), C = columns (features).
import { grid1d, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel } from './check';

const WG = 256;
export const BIAS_FORWARD: KernelSpec = {
  shader: 'bias',
  entry: 'bias_forward',
  bindings: ['rw', 'read'],
  constants: { WG },
};
export const BIAS_BACKWARD: KernelSpec = {
  shader: 'bias',
  entry: 'bias_backward',
  bindings: ['rw', 'read'],
  constants: { WG },
};

/** y[r, c] += b[c] for every row (in place on y). y: (rows, cols), b: (cols). */
export function biasForward(batch: CommandBatch, y: GpuTensor, b: GpuTensor, rows: number, cols: number): void {
  expectNumel('bias_forward', 'y', y, rows * cols, `rows ${rows} × cols ${cols}`);
  expectNumel('bias_forward', 'b', b, cols, 'cols');
  batch.dispatch(BIAS_FORWARD, { params: params().u32(rows).u32(cols).bytes(), tensors: [y, b], grid: grid1d(rows * cols, WG) });
}

/** db[c] += Σ_r dy[r, c] (accumulates; deterministic). db: (cols), dy: (rows, cols). */
export function biasBackward(batch: CommandBatch, db: GpuTensor, dy: GpuTensor, rows: number, cols: number): void {
  expectNumel('bias_backward', 'db', db, cols, 'cols');
  expectNumel('bias_backward', 'dy', dy, rows * cols, `rows ${rows} × cols ${cols}`);
  batch.dispatch(BIAS_BACKWARD, { params: params().u32(rows).u32(cols).bytes(), tensors: [db, dy], grid: grid1d(cols, WG) });
}
