// The matmul reference's layout options agree with plain A·B on explicitly transposed / sliced copies
// (so the GPU tests, which trust the reference for every layout, compare against the right thing).
import { describe, expect, it } from 'vitest';
import * as ref from '../../src/ref/matmul';
import { uniform } from '../helpers/random';

function transpose(x: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c];
  return t;
}

describe('ref.matmul layouts', () => {
  const [m, k, n] = [3, 4, 5];
  const a = uniform(m * k, 1);
  const b = uniform(k * n, 2);
  const plain = ref.matmul(a, b, { m, n, k });

  it('computes Σ_k A[i,k]·B[k,j]', () => {
    let s = 0;
    for (let kk = 0; kk < k; kk++) s += a[1 * k + kk] * b[kk * n + 2];
    expect(plain[1 * n + 2]).toBeCloseTo(s, 12);
  });

  it('transA / transB read [K,M] / [N,K] storage', () => {
    const at = transpose(a, m, k);
    const bt = transpose(b, k, n);
    expect(ref.matmul(at, b, { m, n, k, transA: true })).toEqual(plain);
    expect(ref.matmul(a, bt, { m, n, k, transB: true })).toEqual(plain);
    expect(ref.matmul(at, bt, { m, n, k, transA: true, transB: true })).toEqual(plain);
  });

  it('batches with strides (0 broadcasts) and alpha/beta', () => {
    const b2 = uniform(2 * k * n, 3);
    const c0 = uniform(2 * m * n, 4);
    const got = ref.matmul(a, b2, { m, n, k, batch: 2, strideA: 0, alpha: 2, beta: -1 }, c0);
    for (let z = 0; z < 2; z++) {
      const one = ref.matmul(a, b2.subarray(z * k * n, (z + 1) * k * n), { m, n, k });
      for (let i = 0; i < m * n; i++) expect(got[z * m * n + i]).toBeCloseTo(2 * one[i] - c0[z * m * n + i], 12);
    }
  });
});
