// float64 reference: torch.nn.utils.clip_grad_norm_ (peft-spec §7.3).
//   total = ‖[‖g_1‖₂, …, ‖g_k‖₂]‖₂  (= √ of the sum of all squared gradient entries)
//   coef  = min(1, max_norm / (total + 1e-6))
//   g_i  *= coef
// The pre-clip total is what gets logged as `grad_norm`.

/** L2 norm over all entries of all tensors. */
export function globalNorm(grads: readonly Float64Array[]): number {
  // As torch: the norm of the per-tensor norms.
  let s = 0;
  for (const g of grads) {
    let t = 0;
    for (let i = 0; i < g.length; i++) t += g[i] * g[i];
    s += Math.sqrt(t) ** 2;
  }
  return Math.sqrt(s);
}

export function clipCoefficient(total: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (total + 1e-6));
}

/** Clipped copies of the gradients and the pre-clip norm. */
export function clipGradNorm(grads: readonly Float64Array[], maxNorm: number): { total: number; coef: number; clipped: Float64Array[] } {
  const total = globalNorm(grads);
  const coef = clipCoefficient(total, maxNorm);
  return { total, coef, clipped: grads.map((g) => g.map((x) => x * coef)) };
}
