import { describe, expect, it } from 'vitest';
import { kernelName, type GpuContext } from '../../src/gpu';
import {
  MATMUL_VARIANTS,
  matmul,
  matmulVariantFor,
  supportedMatmulVariants,
  tuneMatmul,
  type MatmulOptions,
  type MatmulVariant,
  type MatmulVariantName,
} from '../../src/kernels/matmul';
import { VariantTuner, type TuningRecord } from '../../src/kernels/tuning';
import * as ref from '../../src/ref/matmul';
import { expectClose, type Tolerance } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { uniform } from '../helpers/random';

// C[M,N] = alpha·op(A)[M,K]·op(B)[K,N] + beta·C; shapes are written M×K×N.
// Entry points exercised (every variant of MATMUL_VARIANTS runs every case below):
//   matmul_quad8x8 (shaders/matmul_quad.wgsl), matmul_reg4x4 and matmul_tiled (shaders/matmul.wgsl).
//
// Tolerance: |got − want| ≤ atol + rtol·|want| with rtol 1e-4 and atol 1e-5·√K (·|alpha|, + |beta|·1e-6):
// inputs are uniform in [−1, 1], so a dot product of K terms has magnitude ~√K/3 and its f32 rounding
// error grows like √K; elements that happen to land near 0 are covered by the atol.
function tol(k: number, alpha = 1, beta = 0): Tolerance {
  return { rtol: 1e-4, atol: 1e-5 * Math.sqrt(Math.max(k, 1)) * Math.max(Math.abs(alpha), 1) + Math.abs(beta) * 1e-6 };
}

const ctx: GpuContext = await gpu();
const supported = new Set(supportedMatmulVariants(ctx).map((v) => v.name));
const missing = (v: MatmulVariant): string => v.features.filter((f) => !ctx.features.has(f)).join(', ');

const LAYOUTS = [
  { name: 'NN', transA: false, transB: false },
  { name: 'NT', transA: false, transB: true },
  { name: 'TN', transA: true, transB: false },
] as const;
// Size-1 edges, sizes that are not multiples of any tile (4, 8, 16, 32, 64) or of the k-unrolling,
// and a GPT-2-like K with a ragged N.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 33, 65],
  [64, 576, 100],
];

// Inputs and float64 results are shared by every variant.
const cases = new Map<string, { a: Float64Array; b: Float64Array; want: Float64Array }>();
function caseFor(m: number, k: number, n: number, transA: boolean, transB: boolean) {
  const key = `${m}x${k}x${n}${transA}${transB}`;
  let c = cases.get(key);
  if (!c) {
    const a = uniform(m * k, 10 + m);
    const b = uniform(k * n, 20 + n);
    c = { a, b, want: ref.matmul(a, b, { m, n, k, transA, transB }) };
    cases.set(key, c);
  }
  return c;
}

async function runGpu(
  variant: MatmulVariantName,
  a: Float64Array,
  b: Float64Array,
  o: MatmulOptions,
  c0?: ArrayLike<number>,
  cLength?: number,
): Promise<Float64Array> {
  const nc = cLength ?? (o.batch ?? 1) * o.m * o.n;
  const ta = upload(ctx, a, [a.length], 'a');
  const tb = upload(ctx, b, [b.length], 'b');
  const tc = c0 ? upload(ctx, c0, [nc], 'c') : ctx.tensor([nc], { label: 'c' });
  try {
    await ctx.run((batch) => matmul(batch, tc, ta, tb, { ...o, variant }));
    return await download(ctx, tc);
  } finally {
    for (const t of [ta, tb, tc]) ctx.release(t);
  }
}

describe('matmul reference', () => {
  it('backward matches finite differences (dA = dC·Bᵀ, dB = Aᵀ·dC)', () => {
    const [m, k, n] = [3, 4, 5];
    checkGradients({
      inputs: [uniform(m * k, 1), uniform(k * n, 2)],
      forward: ([a, b]) => ref.matmul(a, b, { m, n, k }),
      backward: ([a, b], dC) => {
        const g = ref.matmulBackward(a, b, dC, m, n, k);
        return [g.dA, g.dB];
      },
    });
  });
});

describe('matmul variant table', () => {
  it('covers the entry points of matmul.wgsl and matmul_quad.wgsl', () => {
    expect(new Set(MATMUL_VARIANTS.map((v) => v.spec.entry))).toEqual(
      new Set(['matmul_quad8x8', 'matmul_reg4x4', 'matmul_tiled']),
    );
  });

  it('uses only variants whose features the adapter has', () => {
    const chosen = matmulVariantFor(ctx);
    expect(supported.has(chosen.name)).toBe(true);
    for (const v of MATMUL_VARIANTS) expect(supported.has(v.name)).toBe(missing(v) === '');
  });
});

for (const v of MATMUL_VARIANTS) {
  const skip = supported.has(v.name) ? '' : ` (not run: adapter lacks ${missing(v)})`;
  describe(`matmul variant ${v.name} (${kernelName(v.spec)})${skip}`, () => {
    for (const [m, k, n] of SHAPES) {
      for (const l of LAYOUTS) {
        it.skipIf(!!skip)(`${l.name} ${m}×${k}×${n} matches float64`, async () => {
          const { a, b, want } = caseFor(m, k, n, l.transA, l.transB);
          const got = await runGpu(v.name, a, b, { m, n, k, transA: l.transA, transB: l.transB });
          expectClose(got, want, tol(k), `${v.spec.entry} ${l.name} ${m}x${k}x${n}`);
        });
      }
    }

    it.skipIf(!!skip)('batched, with A broadcast (strideA 0) and a padded C stride', async () => {
      const [m, k, n, batch] = [9, 13, 11, 3];
      const s = { m, n, k, transB: true, batch, strideA: 0, strideC: m * n + 5 };
      const a = uniform(m * k, 30);
      const b = uniform(batch * n * k, 31);
      const cLength = (batch - 1) * s.strideC + m * n;
      const c0 = uniform(cLength, 32); // the padding between batches must stay untouched (beta 0 writes only C)
      const want = ref.matmul(a, b, s);
      for (let z = 0; z < batch - 1; z++) for (let p = 0; p < 5; p++) want[z * s.strideC + m * n + p] = c0[z * s.strideC + m * n + p];
      expectClose(await runGpu(v.name, a, b, s, c0, cLength), want, tol(k), `${v.spec.entry} batched`);
    });

    it.skipIf(!!skip)('batched, with B broadcast (strideB 0) and Aᵀ', async () => {
      const [m, k, n, batch] = [7, 10, 18, 2];
      const s = { m, n, k, transA: true, batch, strideB: 0 };
      const a = uniform(batch * k * m, 33);
      const b = uniform(k * n, 34);
      expectClose(await runGpu(v.name, a, b, s), ref.matmul(a, b, s), tol(k), `${v.spec.entry} broadcast B`);
    });

    it.skipIf(!!skip)('alpha and beta: C = 0.5·A·B − 2·C (TN, the weight-gradient layout)', async () => {
      const [m, k, n] = [21, 19, 35];
      const s = { m, n, k, transA: true, alpha: 0.5, beta: -2 };
      const a = uniform(k * m, 35);
      const b = uniform(k * n, 36);
      const c0 = uniform(m * n, 37);
      expectClose(await runGpu(v.name, a, b, s, c0), ref.matmul(a, b, s, c0), tol(k, 0.5, 2), `${v.spec.entry} alpha/beta`);
    });

    it.skipIf(!!skip)('beta = 1 accumulates (dW += dYᵀ·X twice gives twice the gradient)', async () => {
      const [m, k, n] = [6, 40, 10];
      const s = { m, n, k, transA: true, beta: 1 };
      const a = uniform(k * m, 38);
      const b = uniform(k * n, 39);
      const ta = upload(ctx, a, [k, m]);
      const tb = upload(ctx, b, [k, n]);
      const tc = ctx.tensor([m, n]);
      await ctx.run((batch) => {
        matmul(batch, tc, ta, tb, { ...s, variant: v.name });
        matmul(batch, tc, ta, tb, { ...s, variant: v.name });
      });
      const once = ref.matmul(a, b, { m, n, k, transA: true });
      expectClose(await download(ctx, tc), once.map((x) => 2 * x), tol(k, 2), `${v.spec.entry} accumulate`);
    });

    it.skipIf(!!skip)('beta = 0 never reads C (NaN in C is overwritten), and K = 0 gives beta·C', async () => {
      const [m, k, n] = [5, 3, 9];
      const a = uniform(m * k, 40);
      const b = uniform(k * n, 41);
      const nan = new Float64Array(m * n).fill(NaN);
      expectClose(await runGpu(v.name, a, b, { m, n, k }, nan), ref.matmul(a, b, { m, n, k }), tol(k), `${v.spec.entry} NaN C`);
      const c0 = uniform(m * n, 42);
      const got = await runGpu(v.name, new Float64Array(1), new Float64Array(1), { m, n, k: 0, beta: 3 }, c0);
      expectClose(got, c0.map((x) => 3 * x), tol(1), `${v.spec.entry} K=0`);
    });
  });
}

describe('matmul host checks', () => {
  it('rejects wrong sizes naming the kernel and tensor', () => {
    const batch = ctx.batch();
    const [a, b, c] = [ctx.tensor([4, 3]), ctx.tensor([3, 5]), ctx.tensor([4, 5])];
    expect(() => matmul(batch, c, a, b, { m: 4, n: 5, k: 4 })).toThrow(/matmul: a has 12 elements .* needs at least 16/);
    expect(() => matmul(batch, c, a, b, { m: 4, n: 6, k: 3 })).toThrow(/matmul: b has 15 elements/);
    expect(() => matmul(batch, c, a, b, { m: 2, n: 5, k: 3, batch: 2, strideA: 6, strideB: 0, strideC: 9 })).toThrow(
      /matmul: strideC must be an integer ≥ 10/,
    );
    expect(() => matmul(batch, c, a, b, { m: 0, n: 5, k: 3 })).toThrow(/matmul: M must be an integer ≥ 1/);
    expect(() => matmul(batch, c, a, b, { m: 4, n: 5, k: 3, variant: 'nope' as MatmulVariantName })).toThrow(/no variant named 'nope'/);
    expect(() => matmul(batch, c, ctx.tensor([4, 3], { dtype: 'u32' }), b, { m: 4, n: 5, k: 3 })).toThrow(/matmul: a is u32/);
  });
});

describe('matmul tuning (src/kernels/tuning.ts)', () => {
  it('measures the supported variants once per adapter and matmul then uses the choice', async () => {
    const rec = await tuneMatmul(ctx);
    expect(rec.adapterKey).toBe(ctx.adapterKey);
    expect(supported.has(rec.variant as MatmulVariantName)).toBe(true);
    expect(Object.keys(rec.seconds).sort()).toEqual([...supported].sort());
    for (const v of MATMUL_VARIANTS) if (!supported.has(v.name)) expect(rec.rejected[v.name]).toMatch(/adapter lacks/);
    expect(await tuneMatmul(ctx)).toBe(rec); // cached, not measured again
    expect(matmulVariantFor(ctx).name).toBe(rec.variant);

    const chosen = kernelName(matmulVariantFor(ctx).spec);
    const before = ctx.dispatchCounts.get(chosen) ?? 0;
    const [m, k, n] = [3, 4, 5];
    const a = uniform(m * k, 50);
    const b = uniform(k * n, 51);
    const tc = ctx.tensor([m, n]);
    await ctx.run((batch) => matmul(batch, tc, upload(ctx, a, [m, k]), upload(ctx, b, [k, n]), { m, n, k }));
    expect(ctx.dispatchCounts.get(chosen)).toBe(before + 1);
    expectClose(await download(ctx, tc), ref.matmul(a, b, { m, n, k }), tol(k), 'matmul with the tuned variant');
  });

  it('rejects variants that lack features or compute wrong results, and persists through a store', async () => {
    type Fake = { name: string; features: string[]; correct: boolean };
    const variants: Fake[] = [
      { name: 'needs-feature', features: ['no-such-feature'], correct: true },
      { name: 'wrong', features: [], correct: false },
      { name: 'right', features: [], correct: true },
    ];
    const checked: string[] = [];
    const config = {
      kernel: 'fake',
      variants,
      workload: 'nothing',
      check: async (_c: GpuContext, v: Fake) => {
        checked.push(v.name);
        return v.correct ? null : 'off by one';
      },
      trial: () => ({ run: async () => {}, dispose: () => {} }),
    };
    const saved: TuningRecord[] = [];
    const store = { load: async () => undefined, save: async (r: TuningRecord) => void saved.push(r) };
    const tuner = new VariantTuner(config);
    expect(tuner.choice(ctx).name).toBe('wrong'); // untuned: first supported in table order
    const rec = await tuner.tune(ctx, { store, reps: 1 });
    expect(rec.variant).toBe('right');
    expect(rec.rejected['needs-feature']).toMatch(/no-such-feature/);
    expect(rec.rejected.wrong).toMatch(/off by one/);
    expect(saved).toEqual([rec]);
    expect(tuner.choice(ctx).name).toBe('right');

    // A fresh session loads the stored record instead of measuring.
    checked.length = 0;
    const fresh = new VariantTuner(config);
    const loaded = await fresh.tune(ctx, { store: { load: async () => rec, save: async () => {} } });
    expect(loaded).toBe(rec);
    expect(checked).toEqual([]);
    expect(fresh.choice(ctx).name).toBe('right');
  });
});
