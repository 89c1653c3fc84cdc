// Host side of shaders/nf4_matmul.wgsl and shaders/nf4_matmul_quad.wgsl: linear layers over an
// NF4-quantized frozen weight (QLoRA), dequantized inside the matmul (no f32 copy of W).
//   nf4MatmulForward:        y (N, out) = x (N, in) · Wᵀ          (= or += with accumulate)
//   nf4MatmulBackwardInput:  dx (N, in) = dy (N, out) · W         (= or += with accumulate)
// W [out, in] as bitsandbytes stores a Linear4bit weight (GPT-2 Conv1D weights are transposed to
// [out, in] before quantizing, as transformers does). N: rows (tokens, B·T). Bias is not applied here;
// W is frozen, so there is no weight gradient.
// Measured on SwiftShader (2 busy cores, N=256, in 896, out 1024, process CPU time): the quad shader
// ≈1.4–1.8 GFLOP/s forward and backward (about dense matmul_reg4x4, half of matmul_quad8x8), the
// plain one ≈0.4–0.6.
import {
  KernelArgumentError,
  params,
  type CommandBatch,
  type GpuContext,
  type GpuTensor,
  type KernelSpec,
  type Role,
} from '../gpu';
import { nf4Blocks, numelOf, type Nf4Tensor } from '../quant/nf4';
import { expectNumel } from './check';
import { uploadBytes, type Nf4DoubleState } from './nf4';

const BINDINGS = ['rw', 'read', 'read', 'read', 'read', 'read'] as const;
const WG = 64;
const GX = 8;
/** Rows of x / dy and output columns per invocation (shaders/nf4_matmul.wgsl: 8×8 register blocks). */
const RM = 8;
const CN = 8;

export const NF4_MATMUL_FORWARD: KernelSpec = {
  shader: 'nf4_matmul',
  entry: 'nf4_matmul_forward',
  bindings: BINDINGS,
  constants: { WG, GX },
};
export const NF4_MATMUL_BACKWARD_INPUT: KernelSpec = {
  shader: 'nf4_matmul',
  entry: 'nf4_matmul_backward_input',
  bindings: BINDINGS,
  constants: { WG, GX },
};
/** Quads per workgroup along the output columns in nf4_matmul_quad.wgsl (a quad: 32 rows × 8 columns). */
const QX = 8;
export const NF4_MATMUL_QUAD_FORWARD: KernelSpec = {
  shader: 'nf4_matmul_quad',
  entry: 'nf4_matmul_quad_forward',
  bindings: BINDINGS,
  constants: { WG, QX },
};
export const NF4_MATMUL_QUAD_BACKWARD_INPUT: KernelSpec = {
  shader: 'nf4_matmul_quad',
  entry: 'nf4_matmul_quad_backward_input',
  bindings: BINDINGS,
  constants: { WG, QX },
};

/**
 * Which shader runs: 'quad' (nf4_matmul_quad.wgsl) shares the dequantization across the four
 * invocations of a quad (needs the `subgroups` feature, in % 8 == 0 and blocksize % 8 == 0);
 * 'plain' (nf4_matmul.wgsl) runs everywhere. Default: 'quad' where it applies and N ≥ 32 (a quad
 * computes 32 rows, so smaller N would waste most of it), else 'plain'.
 */
export type Nf4MatmulVariant = 'plain' | 'quad';

const MAX_GROUPS = 65535;

/** An NF4-quantized frozen weight W [out, in] on the GPU. */
export interface Nf4Weight {
  readonly out: number;
  readonly in: number;
  /** NF4 block size (64 by default). */
  readonly blocksize: number;
  /** ceil(out·in/2) bytes of packed codes ('u8x4'), first element of each byte in the high nibble. */
  readonly codes: GpuTensor;
  /** Single quantization: ceil(out·in/blocksize) f32 block scales; null when double-quantized. */
  readonly absmax: GpuTensor | null;
  /** Double quantization: 8-bit block scales and their constants; null when single. */
  readonly double: Nf4DoubleState | null;
  readonly label: string;
}

export interface UploadNf4Options {
  label?: string;
  role?: Role;
  /**
   * A 256-entry f32 tensor holding the same 8-bit map as the weight's (`nested_quant_map`), shared by
   * every layer instead of one copy each. Its contents are the caller's promise; the size is checked.
   */
  sharedCode8?: GpuTensor;
}

/** Upload a host-quantized linear weight (shape [out, in]) for the NF4 matmuls. */
export function uploadNf4Weight(ctx: GpuContext, q: Nf4Tensor, options: UploadNf4Options = {}): Nf4Weight {
  const label = options.label ?? 'nf4 weight';
  const role = options.role ?? 'weights';
  const fail = (detail: string): never => {
    throw new KernelArgumentError('uploadNf4Weight', `${label}: ${detail}`);
  };
  if (q.shape.length !== 2) fail(`shape [${q.shape.join(', ')}] is not [out, in]`);
  const [out, inF] = q.shape;
  const n = numelOf(q.shape);
  const nblocks = nf4Blocks(n, q.blocksize);
  if (q.packed.length !== Math.ceil(n / 2)) fail(`${q.packed.length} code bytes, [${out}, ${inF}] needs ${Math.ceil(n / 2)}`);
  if (q.absmax && q.absmax.length !== nblocks) fail(`${q.absmax.length} absmax values, expected ${nblocks}`);
  const s = q.nested;
  if (!q.absmax && !s) fail('neither absmax nor nested scales');
  if (s && s.qabsmax.length !== nblocks) fail(`${s.qabsmax.length} 8-bit scales, expected ${nblocks}`);
  if (s && s.code8.length !== 256) fail(`the 8-bit map has ${s.code8.length} entries, expected 256`);
  if (options.sharedCode8) expectNumel('uploadNf4Weight', 'sharedCode8', options.sharedCode8, 256, 'the 8-bit map');

  const codes = uploadBytes(ctx, q.packed, `${label} codes`, role);
  if (q.absmax) {
    const absmax = ctx.tensor([nblocks], { label: `${label} absmax`, role, data: q.absmax });
    return { out, in: inF, blocksize: q.blocksize, codes, absmax, double: null, label };
  }
  return {
    out,
    in: inF,
    blocksize: q.blocksize,
    codes,
    absmax: null,
    double: {
      qabsmax: uploadBytes(ctx, s!.qabsmax, `${label} qabsmax`, role),
      code8: options.sharedCode8 ?? ctx.tensor([256], { label: `${label} code8`, role, data: s!.code8 }),
      absmax2: ctx.tensor([s!.absmax2.length], { label: `${label} absmax2`, role, data: s!.absmax2 }),
      offset: s!.offset,
      nestedBlocksize: s!.blocksize,
    },
    label,
  };
}

/** GPU bytes of a weight's buffers as allocated (4-byte granules); countCode8: false leaves out the 8-bit map (one tensor shared by all layers). */
export function nf4WeightBytes(w: Nf4Weight, options: { countCode8?: boolean } = {}): number {
  const size = (t: GpuTensor): number => Math.max(4, Math.ceil(t.byteLength / 4) * 4);
  let bytes = size(w.codes);
  if (w.absmax) bytes += size(w.absmax);
  if (w.double) {
    bytes += size(w.double.qabsmax) + size(w.double.absmax2);
    if (options.countCode8 ?? true) bytes += size(w.double.code8);
  }
  return bytes;
}

/** Release a weight's buffers (not a shared code8 tensor unless `releaseCode8`). */
export function releaseNf4Weight(ctx: GpuContext, w: Nf4Weight, releaseCode8 = true): void {
  ctx.release(w.codes);
  if (w.absmax) ctx.release(w.absmax);
  if (w.double) {
    ctx.release(w.double.qabsmax);
    ctx.release(w.double.absmax2);
    if (releaseCode8) ctx.release(w.double.code8);
  }
}

function checkCount(kernel: string, name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min || v > 0xffffffff) throw new KernelArgumentError(kernel, `${name} must be an integer ≥ ${min}, got ${v}`);
}

/** Validate the weight's tensors against its sizes; returns the scale bindings and uniform fields. */
function weightBindings(kernel: string, w: Nf4Weight): { tensors: GpuTensor[]; double: boolean; nested: number; offset: number; nblocks: number } {
  checkCount(kernel, 'W out', w.out, 1);
  checkCount(kernel, 'W in', w.in, 1);
  if (!Number.isInteger(w.blocksize) || w.blocksize < 8) {
    throw new KernelArgumentError(kernel, `${w.label}: blocksize must be an integer ≥ 8, got ${w.blocksize}`);
  }
  const n = w.out * w.in;
  const nblocks = nf4Blocks(n, w.blocksize);
  if (w.codes.dtype !== 'u8x4') throw new KernelArgumentError(kernel, `${w.label} codes must be a 'u8x4' byte tensor, got ${w.codes.dtype}`);
  expectNumel(kernel, `${w.label} codes`, w.codes, Math.ceil(n / 2), `ceil(${w.out}·${w.in}/2) bytes`);
  if (w.absmax && w.double) throw new KernelArgumentError(kernel, `${w.label}: has both absmax and double-quantized scales`);
  if (w.absmax) {
    if (w.absmax.dtype !== 'f32') throw new KernelArgumentError(kernel, `${w.label} absmax must be f32, got ${w.absmax.dtype}`);
    expectNumel(kernel, `${w.label} absmax`, w.absmax, nblocks, `ceil(${n}/${w.blocksize}) blocks`);
    // qabsmax / code8 are not read in single mode: bind the codes and absmax in their places.
    return { tensors: [w.codes, w.absmax, w.codes, w.absmax], double: false, nested: 1, offset: 0, nblocks };
  }
  const d = w.double;
  if (!d) throw new KernelArgumentError(kernel, `${w.label}: neither absmax nor double-quantized scales`);
  const nested = d.nestedBlocksize ?? 256;
  if (!Number.isInteger(nested) || nested < 1 || (nested & (nested - 1)) !== 0) {
    throw new KernelArgumentError(kernel, `${w.label}: nestedBlocksize must be a power of two (bitsandbytes: 256), got ${nested}`);
  }
  if (d.qabsmax.dtype !== 'u8x4') throw new KernelArgumentError(kernel, `${w.label} qabsmax must be a 'u8x4' byte tensor, got ${d.qabsmax.dtype}`);
  expectNumel(kernel, `${w.label} qabsmax`, d.qabsmax, nblocks, `one byte per block of ${w.blocksize}`);
  expectNumel(kernel, `${w.label} code8`, d.code8, 256, 'the 8-bit map');
  expectNumel(kernel, `${w.label} absmax2`, d.absmax2, Math.ceil(nblocks / nested), `ceil(${nblocks}/${nested})`);
  for (const [name, t] of [['code8', d.code8], ['absmax2', d.absmax2]] as const) {
    if (t.dtype !== 'f32') throw new KernelArgumentError(kernel, `${w.label} ${name} must be f32, got ${t.dtype}`);
  }
  if (!Number.isFinite(d.offset)) throw new KernelArgumentError(kernel, `${w.label}: offset must be finite, got ${d.offset}`);
  return { tensors: [w.codes, d.absmax2, d.qabsmax, d.code8], double: true, nested, offset: d.offset, nblocks };
}

function expectF32(kernel: string, name: string, t: GpuTensor, count: number, what: string): void {
  if (t.dtype !== 'f32') throw new KernelArgumentError(kernel, `${name} must be f32, got ${t.dtype}`);
  expectNumel(kernel, name, t, count, what);
}

function contextOf(batch: CommandBatch): GpuContext {
  return (batch as unknown as { ctx: GpuContext }).ctx;
}

/** The variant `nf4MatmulForward` / `nf4MatmulBackwardInput` use for this weight and N by default. */
export function nf4MatmulVariantFor(ctx: GpuContext, w: Nf4Weight, n: number): Nf4MatmulVariant {
  return quadApplies(ctx, w) && n >= 32 ? 'quad' : 'plain';
}

function quadApplies(ctx: GpuContext, w: Nf4Weight): boolean {
  return ctx.features.has('subgroups') && w.in % 8 === 0 && w.blocksize % 8 === 0;
}

function dispatch(
  batch: CommandBatch,
  pass: 'forward' | 'backward_input',
  o: GpuTensor,
  a: GpuTensor,
  w: Nf4Weight,
  n: number,
  accumulate: boolean,
  variant: Nf4MatmulVariant | undefined,
): void {
  const kernel = `nf4_matmul_${pass}`;
  const wb = weightBindings(kernel, w);
  const ctx = contextOf(batch);
  const v = variant ?? nf4MatmulVariantFor(ctx, w, n);
  if (v === 'quad' && !quadApplies(ctx, w)) {
    throw new KernelArgumentError(
      kernel,
      ctx.features.has('subgroups')
        ? `variant 'quad' needs in % 8 == 0 and blocksize % 8 == 0 (${w.label}: in ${w.in}, blocksize ${w.blocksize})`
        : "variant 'quad' needs the subgroups feature, which this adapter lacks",
    );
  }
  const spec =
    v === 'quad'
      ? pass === 'forward' ? NF4_MATMUL_QUAD_FORWARD : NF4_MATMUL_QUAD_BACKWARD_INPUT
      : pass === 'forward' ? NF4_MATMUL_FORWARD : NF4_MATMUL_BACKWARD_INPUT;
  // Tile per workgroup: plain (WG/GX)·8 rows × GX·8 columns; quad (WG/4/QX)·32 rows × QX·8 columns.
  const [tileM, tileN] = v === 'quad' ? [(WG / 4 / QX) * 32, QX * CN] : [(WG / GX) * RM, GX * CN];
  const columns = pass === 'forward' ? w.out : w.in;
  const grid: [number, number, number] = [Math.ceil(columns / tileN), Math.ceil(n / tileM), 1];
  if (grid[0] > MAX_GROUPS || grid[1] > MAX_GROUPS) {
    throw new KernelArgumentError(kernel, `grid ${grid.join('×')} exceeds ${MAX_GROUPS} workgroups per dimension; split the rows`);
  }
  const p = params()
    .u32(n)
    .u32(w.in)
    .u32(w.out)
    .u32(w.blocksize)
    .u32(wb.nblocks)
    .u32(Math.ceil(Math.ceil((w.out * w.in) / 2) / 4))
    .u32(wb.double ? 1 : 0)
    .u32(Math.log2(wb.nested))
    .f32(wb.offset)
    .f32(accumulate ? 1 : 0)
    .u32(Math.floor(w.in / w.blocksize))
    .u32(w.in % w.blocksize)
    .bytes();
  batch.dispatch(spec, { params: p, tensors: [o, a, ...wb.tensors], grid });
}

export interface Nf4MatmulOptions {
  /** out += result instead of out = result. */
  accumulate?: boolean;
  /** Force a shader (default: nf4MatmulVariantFor). */
  variant?: Nf4MatmulVariant;
}

/** y (N, out) = x (N, in) · Wᵀ, or y += … with `accumulate`. */
export function nf4MatmulForward(batch: CommandBatch, y: GpuTensor, x: GpuTensor, w: Nf4Weight, n: number, options: Nf4MatmulOptions = {}): void {
  const kernel = 'nf4_matmul_forward';
  checkCount(kernel, 'N', n, 1);
  expectF32(kernel, 'x', x, n * w.in, `[N=${n}, in=${w.in}]`);
  expectF32(kernel, 'y', y, n * w.out, `[N=${n}, out=${w.out}]`);
  dispatch(batch, 'forward', y, x, w, n, options.accumulate ?? false, options.variant);
}

/** dx (N, in) = dy (N, out) · W, or dx += … with `accumulate` (inputs shared by several linears). */
export function nf4MatmulBackwardInput(batch: CommandBatch, dx: GpuTensor, dy: GpuTensor, w: Nf4Weight, n: number, options: Nf4MatmulOptions = {}): void {
  const kernel = 'nf4_matmul_backward_input';
  checkCount(kernel, 'N', n, 1);
  expectF32(kernel, 'dy', dy, n * w.out, `[N=${n}, out=${w.out}]`);
  expectF32(kernel, 'dx', dx, n * w.in, `[N=${n}, in=${w.in}]`);
  dispatch(batch, 'backward_input', dx, dy, w, n, options.accumulate ?? false, options.variant);
}

/** Bits per parameter of a quantized weight from its GPU buffers (see nf4WeightBytes). */
export function nf4BitsPerParam(w: Nf4Weight, options: { countCode8?: boolean } = {}): number {
  return (8 * nf4WeightBytes(w, options)) / (w.out * w.in);
}
