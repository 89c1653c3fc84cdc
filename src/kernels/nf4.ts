// Host side of shaders/nf4.wgsl: NF4 (QLoRA) dequantization of frozen weights to f32.
// Packed codes and 8-bit block codes are uploaded as raw bytes in 'u8x4' tensors (4 bytes per u32
// word, little-endian), so a checkpoint's uint8 tensors go to the GPU unchanged.
import {
  grid1d,
  KernelArgumentError,
  numel,
  params,
  type CommandBatch,
  type GpuContext,
  type GpuTensor,
  type KernelSpec,
  type Role,
} from '../gpu';
import { expectNumel } from './check';

const WG = 256;
/** Elements per invocation (one u32 word of 4-bit codes). */
const PER_WORD = 8;

export const NF4_DEQUANTIZE: KernelSpec = {
  shader: 'nf4',
  entry: 'nf4_dequantize',
  bindings: ['rw', 'read', 'read'],
  constants: { WG },
};
export const NF4_DEQUANTIZE_DOUBLE: KernelSpec = {
  shader: 'nf4',
  entry: 'nf4_dequantize_double',
  bindings: ['rw', 'read', 'read', 'read', 'read'],
  constants: { WG },
};

/** Upload a byte stream (packed NF4 codes, or 8-bit absmax codes) as a 'u8x4' tensor of bytes.length elements. */
export function uploadBytes(ctx: GpuContext, bytes: Uint8Array, label = 'bytes', role: Role = 'weights'): GpuTensor {
  const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
  padded.set(bytes);
  return ctx.tensor([bytes.length], { dtype: 'u8x4', label, role, data: padded });
}

function expectBytes(kernel: string, name: string, t: GpuTensor, count: number, what: string): void {
  if (t.dtype !== 'u8x4') throw new KernelArgumentError(kernel, `${name} must be a 'u8x4' byte tensor, got ${t.dtype}`);
  expectNumel(kernel, name, t, count, what);
}

function expectBlocksize(kernel: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new KernelArgumentError(kernel, `${name} must be a positive integer, got ${v}`);
}

/** w = dequantized NF4 weight: w [n] f32, packed ceil(n/2) bytes, absmax ceil(n/blocksize) f32. */
export function nf4Dequantize(batch: CommandBatch, w: GpuTensor, packed: GpuTensor, absmax: GpuTensor, blocksize = 64): void {
  const kernel = 'nf4_dequantize';
  const n = numel(w.shape);
  expectBlocksize(kernel, 'blocksize', blocksize);
  expectBytes(kernel, 'packed', packed, Math.ceil(n / 2), 'ceil(n/2) bytes');
  expectNumel(kernel, 'absmax', absmax, Math.ceil(n / blocksize), `ceil(n/${blocksize}) blocks`);
  if (n === 0) return;
  batch.dispatch(NF4_DEQUANTIZE, {
    params: params().u32(n).u32(blocksize).f32(0).u32(1).bytes(),
    tensors: [w, packed, absmax],
    grid: grid1d(Math.ceil(n / PER_WORD), WG),
  });
}

export interface Nf4DoubleState {
  /** One byte per NF4 block ('u8x4'), the checkpoint's `.weight.absmax` (uint8). */
  qabsmax: GpuTensor;
  /** 256 f32, `.weight.nested_quant_map`. */
  code8: GpuTensor;
  /** ceil(nblocks / nestedBlocksize) f32, `.weight.nested_absmax`. */
  absmax2: GpuTensor;
  /** `nested_offset`. */
  offset: number;
  /** `nested_blocksize` (256). */
  nestedBlocksize?: number;
}

/** w = dequantized NF4 weight with double-quantized block scales. */
export function nf4DequantizeDouble(batch: CommandBatch, w: GpuTensor, packed: GpuTensor, s: Nf4DoubleState, blocksize = 64): void {
  const kernel = 'nf4_dequantize_double';
  const n = numel(w.shape);
  const nested = s.nestedBlocksize ?? 256;
  expectBlocksize(kernel, 'blocksize', blocksize);
  expectBlocksize(kernel, 'nestedBlocksize', nested);
  const nblocks = Math.ceil(n / blocksize);
  expectBytes(kernel, 'packed', packed, Math.ceil(n / 2), 'ceil(n/2) bytes');
  expectBytes(kernel, 'qabsmax', s.qabsmax, nblocks, `one byte per block of ${blocksize}`);
  expectNumel(kernel, 'code8', s.code8, 256, 'the 8-bit map');
  expectNumel(kernel, 'absmax2', s.absmax2, Math.ceil(nblocks / nested), `ceil(nblocks/${nested})`);
  if (!Number.isFinite(s.offset)) throw new KernelArgumentError(kernel, `offset must be finite, got ${s.offset}`);
  if (n === 0) return;
  batch.dispatch(NF4_DEQUANTIZE_DOUBLE, {
    params: params().u32(n).u32(blocksize).f32(s.offset).u32(nested).bytes(),
    tensors: [w, packed, s.qabsmax, s.code8, s.absmax2],
    grid: grid1d(Math.ceil(n / PER_WORD), WG),
  });
}
