// float64 reference: RMSNorm over the last dimension (N rows of C channels).
//   r = 1/√(mean(x²) + eps),  y = x · r · w
// Backward, with g = dy ⊙ w:  ∂L/∂x_j = r·g_j − r³·x_j·(Σ_k g_k x_k)/C  (r depends on every x_k:
// ∂r/∂x_j = −r³·x_j/C),  ∂L/∂w_j = Σ_rows dy_j · x_j · r.

export function rmsnormForward(
  x: Float64Array,
  w: Float64Array,
  N: number,
  C: number,
  eps: number,
): { out: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(N * C);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let j = 0; j < C; j++) ss += x[n * C + j] ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    rstd[n] = r;
    for (let j = 0; j < C; j++) out[n * C + j] = x[n * C + j] * r * w[j];
  }
  return { out, rstd };
}

/** Gradients of rmsnormForward: dx (assigned), dw (the sum over rows; a kernel adds it to dw). */
export function rmsnormBackward(
  dy: Float64Array,
  x: Float64Array,
  w: Float64Array,
  N: number,
  C: number,
  eps: number,
): { dx: Float64Array; dw: Float64Array } {
  const { rstd } = rmsnormForward(x, w, N, C, eps);
  const dx = new Float64Array(N * C);
  const dw = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const r = rstd[n];
    let dot = 0;
    for (let k = 0; k < C; k++) dot += dy[n * C + k] * w[k] * x[n * C + k];
    for (let j = 0; j < C; j++) {
      const i = n * C + j;
      dx[i] = r * dy[i] * w[j] - (r ** 3 * x[i] * dot) / C;
      dw[j] += dy[i] * x[i] * r;
    }
  }
  return { dx, dw };
}
