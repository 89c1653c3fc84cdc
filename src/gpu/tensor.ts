// A tensor on the GPU is a handle into a buffer: { buffer, offset, shape }.
// Every tensor webtune computes with is f32 (4 bytes/element) unless `dtype` says otherwise
// (f16 frozen weights are packed two per u32; NF4 codes are packed bytes, see shaders/nf4.wgsl).

export type Role = 'weights' | 'trainable' | 'gradients' | 'optimizer' | 'activations' | 'scratch' | 'io';

export type DType = 'f32' | 'u32' | 'i32' | 'f16x2' | 'u8x4';

export interface GpuTensor {
  readonly buffer: GPUBuffer;
  /** Byte offset into `buffer` (multiple of the adapter's minStorageBufferOffsetAlignment). */
  readonly offset: number;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Bytes this tensor's binding covers (numel * 4 for 32-bit element types). */
  readonly byteLength: number;
  readonly label: string;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes of one 32-bit word per element: every element type above is stored in 4-byte words. */
export function bytesFor(dtype: DType, count: number): number {
  switch (dtype) {
    case 'f32':
    case 'u32':
    case 'i32':
      return count * 4;
    case 'f16x2':
      return Math.ceil(count / 2) * 4;
    case 'u8x4':
      return Math.ceil(count / 4) * 4;
  }
}
