// Linear layers on the GPU in both storage layouts HF uses:
//   nn.Linear  W [out, in]:  y = x·Wᵀ + b   (matmul NT)
//   Conv1D     W [in, out]:  y = x·W  + b   (matmul NN, GPT-2)
// and their backward: dx = dy·W (or dy·Wᵀ), dW += dyᵀ·x (or xᵀ·dy), db += Σ dy.
//   N rows (tokens), in / out features.
import type { CommandBatch, GpuTensor } from '../gpu';
import { biasBackward, biasForward } from '../kernels/bias';
import { matmul, type MatmulOptions } from '../kernels/matmul';
import { matmulF16w } from '../kernels/matmul_f16w';
import { nf4MatmulBackwardInput, nf4MatmulForward } from '../kernels/nf4_matmul';
import type { GpuLinear } from './gpu-model';

/** matmul with W as the B operand, f32 or resident f16. */
function matmulW(b: CommandBatch, c: GpuTensor, a: GpuTensor, w: GpuTensor, o: MatmulOptions): void {
  if (w.dtype === 'f16x2') matmulF16w(b, c, a, w, o);
  else matmul(b, c, a, w, o);
}

/** y (N, out) = x (N, in) · W + b  (=). */
export function linearForward(b: CommandBatch, y: GpuTensor, x: GpuTensor, l: GpuLinear, N: number): void {
  const { in: K, out: M } = l.desc;
  if (l.nf4) nf4MatmulForward(b, y, x, l.nf4, N);
  else matmulW(b, y, x, l.weight, { m: N, n: M, k: K, transB: l.desc.layout === 'out_in' });
  if (l.bias) biasForward(b, y, l.bias, N, M);
}

/** dx (N, in) (= when accumulate is false, += otherwise) from dy (N, out). */
export function linearBackwardInput(b: CommandBatch, dx: GpuTensor, dy: GpuTensor, l: GpuLinear, N: number, accumulate = false): void {
  const { in: K, out: M } = l.desc;
  if (l.nf4) {
    nf4MatmulBackwardInput(b, dx, dy, l.nf4, N, { accumulate });
    return;
  }
  // out_in: dx = dy · W (W [out, in]) → NN; in_out: dx = dy · Wᵀ (W [in, out]) → NT.
  matmulW(b, dx, dy, l.weight, { m: N, n: K, k: M, transB: l.desc.layout === 'in_out', beta: accumulate ? 1 : 0 });
}

/** dW += dyᵀ·x (out_in) or xᵀ·dy (in_out); db += Σ_rows dy. */
export function linearBackwardParams(
  b: CommandBatch,
  dW: GpuTensor | null,
  dBias: GpuTensor | null,
  dy: GpuTensor,
  x: GpuTensor,
  l: GpuLinear,
  N: number,
): void {
  const { in: K, out: M } = l.desc;
  if (dW && l.desc.layout === 'out_in') matmul(b, dW, dy, x, { m: M, n: K, k: N, transA: true, beta: 1 });
  else if (dW) matmul(b, dW, x, dy, { m: K, n: M, k: N, transA: true, beta: 1 });
  if (dBias) biasBackward(b, dBias, dy, N, M);
}

/** logits (N, V) = h (N, C) · Eᵀ, E the (tied) embedding or lm_head [V, C]. */
export function lmHeadForward(b: CommandBatch, logits: GpuTensor, h: GpuTensor, head: GpuTensor, N: number): void {
  const [V, C] = head.shape;
  matmul(b, logits, h, head, { m: N, n: V, k: C, transB: true });
}
