// Host side of shaders/matmul.wgsl and shaders/matmul_quad.wgsl:
//   C[z] = alpha · op(A[z]) · op(B[z]) + beta · C[z]      z < batch, op(X) = X or Xᵀ
// through a table of kernel variants, one chosen per adapter by measurement (tuning.ts).
//
// Layouts (M, N, K as in C[M,N] = op(A)[M,K] · op(B)[K,N]; all row-major):
//   NN  A [M,K], B [K,N]                    C = A·B
//   NT  A [M,K], B [N,K]   transB           the linear layer y = x·Wᵀ, W [out,in] as HF stores it
//   TN  A [K,M], B [K,N]   transA           the weight gradient dW = dYᵀ·X (beta = 1 accumulates)
//   TT  A [K,M], B [N,K]   both
// Batches: operand z starts at z·stride (elements); a stride of 0 broadcasts the operand.

import { KernelArgumentError, numel, params, type CommandBatch, type GpuContext, type GpuTensor, type KernelSpec } from '../gpu';
import { VariantTuner, type Trial, type TuneOptions, type TuningRecord, type Variant } from './tuning';

const BINDINGS = ['rw', 'read', 'read'] as const;

export const MATMUL_QUAD8X8: KernelSpec = {
  shader: 'matmul_quad',
  entry: 'matmul_quad8x8',
  bindings: BINDINGS,
  constants: { WG: 64, QX: 4 },
};
export const MATMUL_REG4X4: KernelSpec = {
  shader: 'matmul',
  entry: 'matmul_reg4x4',
  bindings: BINDINGS,
  constants: { WG: 64, GX: 16 },
};
export const MATMUL_TILED: KernelSpec = {
  shader: 'matmul',
  entry: 'matmul_tiled',
  bindings: BINDINGS,
  constants: { TX: 16, TY: 16 },
};

export interface MatmulVariant extends Variant {
  readonly spec: KernelSpec;
  /** Rows and columns of C one workgroup computes (the dispatch grid is N/tileN × M/tileM × batch). */
  readonly tileM: number;
  readonly tileN: number;
  readonly note: string;
}

/**
 * The variants, in the order used before tuning (first one the adapter supports). The same entry point
 * may appear with different workgroup constants (a smaller tile gives small problems more workgroups).
 */
export const MATMUL_VARIANTS = [
  {
    name: 'quad8x8',
    spec: MATMUL_QUAD8X8,
    tileM: 64,
    tileN: 64,
    features: ['subgroups'],
    note: '8×8 per invocation, loads shared across quads by quadSwap; no workgroup memory (SwiftShader)',
  },
  {
    name: 'quad8x8_wg16',
    spec: { ...MATMUL_QUAD8X8, constants: { WG: 16, QX: 2 } },
    tileM: 32,
    tileN: 32,
    features: ['subgroups'],
    note: 'quad8x8 with 16-invocation workgroups (32×32 tiles: more workgroups for small problems)',
  },
  {
    name: 'reg4x4',
    spec: MATMUL_REG4X4,
    tileM: 16,
    tileN: 64,
    features: [],
    note: '4×4 per invocation in registers; no workgroup memory, no subgroups',
  },
  {
    name: 'tiled',
    spec: MATMUL_TILED,
    tileM: 64,
    tileN: 64,
    features: [],
    note: '64×64 tiles staged in workgroup memory with barriers, 4×4 per invocation (GPUs)',
  },
] as const satisfies readonly MatmulVariant[];

export type MatmulVariantName = (typeof MATMUL_VARIANTS)[number]['name'];

export interface MatmulOptions {
  m: number;
  n: number;
  k: number;
  /** A is stored [K, M] and read transposed. */
  transA?: boolean;
  /** B is stored [N, K] and read transposed. */
  transB?: boolean;
  /** Number of independent products (default 1). */
  batch?: number;
  /** Elements between consecutive batches of A (default M·K; 0 broadcasts A). */
  strideA?: number;
  /** Elements between consecutive batches of B (default K·N; 0 broadcasts B). */
  strideB?: number;
  /** Elements between consecutive batches of C (default M·N; at least M·N when batch > 1). */
  strideC?: number;
  /** Default 1. */
  alpha?: number;
  /** Default 0 (C is overwritten and never read); 1 accumulates into C. */
  beta?: number;
  /** Force a variant instead of the one chosen for this adapter. */
  variant?: MatmulVariantName;
}

const MAX_GROUPS = 65535;

function checkCount(kernel: string, name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min || v > 0xffffffff) {
    throw new KernelArgumentError(kernel, `${name} must be an integer ≥ ${min}, got ${v}`);
  }
}

function checkExtent(kernel: string, name: string, t: GpuTensor, batch: number, stride: number, size: number, what: string): void {
  const need = (batch - 1) * stride + size;
  if (numel(t.shape) < need) {
    throw new KernelArgumentError(
      kernel,
      `${name} has ${numel(t.shape)} elements [${t.shape.join(', ')}], needs at least ${need} (${what})`,
    );
  }
}


/** C = alpha·op(A)·op(B) + beta·C (see MatmulOptions; C is [batch, M, N] row-major). */
export function matmul(batch: CommandBatch, c: GpuTensor, a: GpuTensor, b: GpuTensor, o: MatmulOptions): void {
  const { m, n, k } = o;
  const kernel = 'matmul';
  checkCount(kernel, 'M', m, 1);
  checkCount(kernel, 'N', n, 1);
  checkCount(kernel, 'K', k, 0);
  const nb = o.batch ?? 1;
  checkCount(kernel, 'batch', nb, 1);
  const strideA = o.strideA ?? m * k;
  const strideB = o.strideB ?? k * n;
  const strideC = o.strideC ?? m * n;
  checkCount(kernel, 'strideA', strideA, 0);
  checkCount(kernel, 'strideB', strideB, 0);
  checkCount(kernel, 'strideC', strideC, nb > 1 ? m * n : 0);
  const la = o.transA ? `[K=${k}, M=${m}]` : `[M=${m}, K=${k}]`;
  const lb = o.transB ? `[N=${n}, K=${k}]` : `[K=${k}, N=${n}]`;
  checkExtent(kernel, 'a', a, nb, strideA, m * k, `${nb} × ${la} at stride ${strideA}`);
  checkExtent(kernel, 'b', b, nb, strideB, k * n, `${nb} × ${lb} at stride ${strideB}`);
  checkExtent(kernel, 'c', c, nb, strideC, m * n, `${nb} × [M=${m}, N=${n}] at stride ${strideC}`);

  for (const [name, t] of Object.entries({ c, a, b })) {
    if (t.dtype !== 'f32') throw new KernelArgumentError(kernel, `${name} is ${t.dtype}; matmul reads and writes f32`);
  }

  const ctx = batch.ctx;
  const variant: MatmulVariant = o.variant ? matmulTuner.byName(o.variant) : matmulTuner.choice(ctx);
  const lacking = variant.features.filter((f) => !ctx.features.has(f));
  if (lacking.length) {
    throw new KernelArgumentError(kernel, `variant '${variant.name}' needs ${lacking.join(', ')}, which this adapter lacks`);
  }
  const grid: [number, number, number] = [Math.ceil(n / variant.tileN), Math.ceil(m / variant.tileM), nb];
  if (grid[0] > MAX_GROUPS || grid[1] > MAX_GROUPS || grid[2] > MAX_GROUPS) {
    throw new KernelArgumentError(kernel, `grid ${grid.join('×')} exceeds ${MAX_GROUPS} workgroups per dimension; split the batch`);
  }
  const p = params()
    .u32(m)
    .u32(n)
    .u32(k)
    .u32(o.transA ? 1 : k) // a_rs: step between rows of op(A)
    .u32(o.transA ? m : 1) // a_ks: step along K in op(A)
    .u32(o.transB ? 1 : n) // b_ks
    .u32(o.transB ? k : 1) // b_cs
    .u32(strideA)
    .u32(strideB)
    .u32(strideC)
    .f32(o.alpha ?? 1)
    .f32(o.beta ?? 0)
    .bytes();
  batch.dispatch(variant.spec, { params: p, tensors: [c, a, b], grid });
}

// ------------------------------------------------------------------ tuning

/** The workload every variant is timed on: the linear-layer layout (NT) at a moderate size. */
const TUNE = { m: 256, k: 256, n: 256, transB: true };

function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** A variant must get a small awkward problem right (odd sizes, Aᵀ, broadcast B, alpha) before it is timed. */
async function checkVariant(ctx: GpuContext, v: MatmulVariant): Promise<string | null> {
  const [m, n, k, nb] = [19, 21, 11, 2];
  const ha = seeded(nb * m * k, 1);
  const hb = seeded(k * n, 2);
  const a = ctx.tensor([nb, k, m], { label: 'tune a', data: ha });
  const b = ctx.tensor([k, n], { label: 'tune b', data: hb });
  const c = ctx.tensor([nb, m, n], { label: 'tune c' });
  try {
    await ctx.run((batch) => matmul(batch, c, a, b, { m, n, k, transA: true, batch: nb, strideB: 0, alpha: 0.5, variant: v.name as MatmulVariantName }));
    const got = await ctx.readF32(c);
    for (let z = 0; z < nb; z++) {
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let kk = 0; kk < k; kk++) s += ha[z * m * k + kk * m + i] * hb[kk * n + j];
          const want = 0.5 * s;
          const g = got[(z * m + i) * n + j];
          if (!(Math.abs(g - want) <= 1e-4 * (1 + Math.abs(want)))) return `C[${z}, ${i}, ${j}] = ${g}, expected ${want}`;
        }
      }
    }
    return null;
  } finally {
    for (const t of [a, b, c]) ctx.release(t);
  }
}

function tuneTrial(ctx: GpuContext, v: MatmulVariant): Trial {
  const { m, n, k } = TUNE;
  const a = ctx.tensor([m, k], { label: 'tune a', data: seeded(m * k, 3) });
  const b = ctx.tensor([n, k], { label: 'tune b', data: seeded(n * k, 4) });
  const c = ctx.tensor([m, n], { label: 'tune c' });
  return {
    run: () => ctx.run((batch) => matmul(batch, c, a, b, { ...TUNE, variant: v.name as MatmulVariantName })),
    dispose: () => [a, b, c].forEach((t) => ctx.release(t)),
  };
}

const matmulTuner = new VariantTuner<MatmulVariant>({
  kernel: 'matmul',
  variants: MATMUL_VARIANTS,
  workload: `NT M=${TUNE.m} K=${TUNE.k} N=${TUNE.n}`,
  check: checkVariant,
  trial: tuneTrial,
});

/** Measure every supported variant once for this adapter and use the fastest from now on. */
export function tuneMatmul(ctx: GpuContext, options?: TuneOptions): Promise<TuningRecord> {
  return matmulTuner.tune(ctx, options);
}

/** The variant `matmul` uses on this context (measured choice, or the first supported one). */
export function matmulVariantFor(ctx: GpuContext): MatmulVariant {
  return matmulTuner.choice(ctx);
}

/** Variants this adapter can run (table order). */
export function supportedMatmulVariants(ctx: GpuContext): MatmulVariant[] {
  return matmulTuner.supported(ctx);
}
