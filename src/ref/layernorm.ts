// float64 reference: LayerNorm over the last dimension (N rows of C channels), biased variance.
//   μ = mean(x),  σ² = mean((x − μ)²),  r = 1/√(σ² + eps),  x̂ = (x − μ)·r,  y = x̂·w + b
// Backward, with g = dy ⊙ w: since ∂x̂_k/∂x_j = r·(δ_jk − 1/C − x̂_j·x̂_k/C),
//   ∂L/∂x_j = r·(g_j − mean(g) − x̂_j·mean(g ⊙ x̂)),  ∂L/∂w = Σ_rows dy ⊙ x̂,  ∂L/∂b = Σ_rows dy.

export function layernormForward(
  x: Float64Array,
  w: Float64Array,
  b: Float64Array,
  N: number,
  C: number,
  eps: number,
): { out: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(N * C);
  const mean = new Float64Array(N);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    const row = x.subarray(n * C, (n + 1) * C);
    const mu = row.reduce((s, v) => s + v, 0) / C;
    const variance = row.reduce((s, v) => s + (v - mu) ** 2, 0) / C;
    const r = 1 / Math.sqrt(variance + eps);
    mean[n] = mu;
    rstd[n] = r;
    for (let j = 0; j < C; j++) out[n * C + j] = (row[j] - mu) * r * w[j] + b[j];
  }
  return { out, mean, rstd };
}

/** Gradients of layernormForward: dx (assigned); dw, db summed over rows (a kernel adds them). */
export function layernormBackward(
  dy: Float64Array,
  x: Float64Array,
  w: Float64Array,
  N: number,
  C: number,
  eps: number,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const { mean, rstd } = layernormForward(x, w, new Float64Array(C), N, C, eps);
  const dx = new Float64Array(N * C);
  const dw = new Float64Array(C);
  const db = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const r = rstd[n];
    const xhat = (j: number): number => (x[n * C + j] - mean[n]) * r;
    let meanG = 0;
    let meanGX = 0;
    for (let k = 0; k < C; k++) {
      const g = dy[n * C + k] * w[k];
      meanG += g / C;
      meanGX += (g * xhat(k)) / C;
    }
    for (let j = 0; j < C; j++) {
      const i = n * C + j;
      dx[i] = r * (dy[i] * w[j] - meanG - xhat(j) * meanGX);
      dw[j] += dy[i] * xhat(j);
      db[j] += dy[i];
    }
  }
  return { dx, dw, db };
}
