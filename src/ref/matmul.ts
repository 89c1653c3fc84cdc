// float64 reference: batched matrix multiply and its gradients, written from the definitions
//   C[z][i, j] = alpha · Σ_k op(A)[z][i, k] · op(B)[z][k, j] + beta · C[z][i, j]
// with op(A)[i, k] = A[i, k] ([M, K] row-major) or A[k, i] (transA: stored [K, M]), and
// op(B)[k, j] = B[k, j] ([K, N]) or B[j, k] (transB: stored [N, K]). Operand z starts at z·stride;
// a stride of 0 broadcasts the operand over the batch. C is [M, N] row-major per batch.

export interface RefMatmulShape {
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  alpha?: number;
  beta?: number;
}

/** Returns a new C; `c0` (same layout as C) supplies the beta·C term (zeros if omitted). */
export function matmul(a: ArrayLike<number>, b: ArrayLike<number>, s: RefMatmulShape, c0?: ArrayLike<number>): Float64Array {
  const { m, n, k } = s;
  const batch = s.batch ?? 1;
  const sa = s.strideA ?? m * k;
  const sb = s.strideB ?? k * n;
  const sc = s.strideC ?? m * n;
  const alpha = s.alpha ?? 1;
  const beta = s.beta ?? 0;
  const c = new Float64Array((batch - 1) * sc + m * n);
  if (c0) for (let i = 0; i < c.length; i++) c[i] = c0[i];
  const opA = (z: number, i: number, kk: number): number => a[z * sa + (s.transA ? kk * m + i : i * k + kk)];
  const opB = (z: number, kk: number, j: number): number => b[z * sb + (s.transB ? j * k + kk : kk * n + j)];
  for (let z = 0; z < batch; z++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let kk = 0; kk < k; kk++) sum += opA(z, i, kk) * opB(z, kk, j);
        const at = z * sc + i * n + j;
        c[at] = alpha * sum + (beta === 0 ? 0 : beta * c[at]);
      }
    }
  }
  return c;
}

/**
 * Gradients of C = A·B (A [M,K], B [K,N]) for an upstream gradient dC [M,N]:
 *   dA[i, k] = Σ_j dC[i, j] · B[k, j]   (dA = dC·Bᵀ)
 *   dB[k, j] = Σ_i A[i, k] · dC[i, j]   (dB = Aᵀ·dC)
 */
export function matmulBackward(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dC: ArrayLike<number>,
  m: number,
  n: number,
  k: number,
): { dA: Float64Array; dB: Float64Array } {
  const dA = new Float64Array(m * k);
  const dB = new Float64Array(k * n);
  for (let i = 0; i < m; i++) {
    for (let kk = 0; kk < k; kk++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += dC[i * n + j] * b[kk * n + j];
      dA[i * k + kk] = s;
    }
  }
  for (let kk = 0; kk < k; kk++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += a[i * k + kk] * dC[i * n + j];
      dB[kk * n + j] = s;
    }
  }
  return { dA, dB };
}
