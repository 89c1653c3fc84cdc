// matmul_f16w_reg4x4: matmul with B resident as packed f16 vs the float64 reference on the same
// (f16-rounded) values. Tolerance: rtol 1e-4, atol 1e-5·√K (f32 accumulation over K terms).
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../src/io/safetensors';
import { matmulF16w, packF16, uploadF16 } from '../../src/kernels/matmul_f16w';
import { matmul as refMatmul } from '../../src/ref/matmul';
import { expectClose } from '../helpers/compare';
import { download, gpu, upload } from '../helpers/gpu';
import { uniform } from '../helpers/random';

const roundF16 = (x: Float64Array): Float64Array => x.map((v) => f16ToF32(f32ToF16(v)));

describe('packF16', () => {
  it('puts the even element in the low half and rounds to nearest even', () => {
    const w = packF16(Float32Array.from([1, -2, 0.5]));
    expect(w.length).toBe(2);
    expect(w[0] & 0xffff).toBe(0x3c00);
    expect(w[0] >>> 16).toBe(0xc000);
    expect(w[1]).toBe(0x3800);
    expect(f16ToF32(f32ToF16(1 + 2 ** -11))).toBe(1); // tie → even
  });
});

describe('matmul_f16w.wgsl', () => {
  const shapes: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [17, 33, 65], [64, 100, 70]];
  for (const [m, k, n] of shapes) {
    for (const transB of [false, true]) {
      it(`matmul_f16w_reg4x4 M=${m} K=${k} N=${n} ${transB ? 'NT (y = x·Wᵀ)' : 'NN (dx = dy·W)'}`, async () => {
        const c = await gpu();
        const a = uniform(m * k, m + k);
        const b = roundF16(uniform(k * n, n + 7));
        const out = c.tensor([m, n]);
        const bt = uploadF16(c, transB ? [n, k] : [k, n], Float32Array.from(transB ? transpose(b, k, n) : b), 'w f16');
        await c.run((batch) => matmulF16w(batch, out, upload(c, a, [m, k]), bt, { m, n, k, transB }));
        expectClose(await download(c, out), refMatmul(a, b, { m, n, k }), { rtol: 1e-4, atol: 1e-5 * Math.sqrt(k) }, 'matmul_f16w');
      });
    }
  }

  it('matmul_f16w_reg4x4 batched with broadcast B, Aᵀ, alpha and beta', async () => {
    const c = await gpu();
    const [m, k, n, nb] = [9, 13, 11, 3];
    const a = uniform(nb * k * m, 1); // [nb, K, M]
    const b = roundF16(uniform(k * n, 2));
    const c0 = uniform(nb * m * n, 3);
    const out = upload(c, c0, [nb, m, n]);
    await c.run((batch) =>
      matmulF16w(batch, out, upload(c, a, [nb, k, m]), uploadF16(c, [k, n], Float32Array.from(b), 'w'), { m, n, k, transA: true, batch: nb, strideB: 0, alpha: 0.5, beta: 1 }),
    );
    const want = new Float64Array(nb * m * n);
    for (let z = 0; z < nb; z++) {
      const az = new Float64Array(m * k);
      for (let i = 0; i < m; i++) for (let kk = 0; kk < k; kk++) az[i * k + kk] = a[z * k * m + kk * m + i];
      const p = refMatmul(az, b, { m, n, k });
      for (let i = 0; i < m * n; i++) want[z * m * n + i] = 0.5 * p[i] + c0[z * m * n + i];
    }
    expectClose(await download(c, out), want, { rtol: 1e-4, atol: 1e-5 * Math.sqrt(k) }, 'batched f16');
  });

  it('refuses an f32 B', async () => {
    const c = await gpu();
    expect(() => matmulF16w(c.batch(), c.tensor([1, 1]), c.tensor([1, 1]), c.tensor([1, 1]), { m: 1, n: 1, k: 1 })).toThrow(/packed f16/);
  });
});

function transpose(x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j];
  return out;
}
