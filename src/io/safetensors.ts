// safetensors: read (bounds-checked, tensor by tensor from a ByteSource) and write.
// Layout (huggingface/safetensors README): u64 LE header length N | N bytes of UTF-8 JSON header
// (may be right-padded with spaces) | byte buffer with every tensor, row-major, little-endian.
// Reader rules enforced here: N ≤ 100,000,000; offsets inside the buffer; tensors contiguous from 0
// in offset order with no holes or overlaps; end − begin = numel × dtype size; the file ends exactly
// at the last tensor; known dtypes; no duplicate keys.

import type { ByteSource } from './bytes';

export type SafetensorsDType =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

/** Bytes per element of each dtype we can read. (Sub-byte F4/F6 dtypes are refused.) */
export const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  F64: 8, I64: 8, U64: 8,
};

export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsFormatError extends Error {
  override name = 'SafetensorsFormatError';
  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor ? `: tensor "${tensor}"` : ''}: ${detail}`);
  }
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor's data in the file. */
  readonly start: number;
  readonly byteLength: number;
}

export interface SafetensorsFile {
  readonly source: ByteSource;
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
}

const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Parse and validate the header; tensor bytes are read later with readTensorBytes / readTensorF32. */
export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  const file = source.name;
  if (source.size < 8) throw new SafetensorsFormatError(file, `file is ${source.size} bytes, shorter than the 8-byte header length`);
  const lenBytes = await source.read(0, 8);
  const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const n = Number(dv.getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES) throw new SafetensorsFormatError(file, `header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes (corrupt file?)`);
  if (8 + n > source.size) throw new SafetensorsFormatError(file, `header length ${n} runs past the end of the file (${source.size} bytes): truncated or not a safetensors file`);
  const headerBytes = await source.read(8, n);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsFormatError(file, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw new SafetensorsFormatError(file, 'header does not start with "{": not a safetensors file');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsFormatError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsFormatError(file, 'header is not a JSON object');
  }
  checkNoDuplicateKeys(file, text);
  const dataStart = 8 + n;
  const dataSize = source.size - dataStart;
  const metadata: Record<string, string> = {};
  const list: (TensorInfo & { begin: number; end: number })[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null) throw new SafetensorsFormatError(file, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new SafetensorsFormatError(file, `__metadata__ value for "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null) throw new SafetensorsFormatError(file, 'entry is not an object', name);
    const dtype = info.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw new SafetensorsFormatError(file, `unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`, name);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsFormatError(file, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsFormatError(file, `data_offsets ${JSON.stringify(offs)} is not [begin, end]`, name);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) throw new SafetensorsFormatError(file, `data_offsets [${begin}, ${end}] end before begin`, name);
    if (end > dataSize) {
      throw new SafetensorsFormatError(file, `data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes): truncated file`, name);
    }
    const want = numelOf(shape) * DTYPE_BYTES[dtype as SafetensorsDType];
    if (end - begin !== want) {
      throw new SafetensorsFormatError(
        file,
        `holds ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${want}`,
        name,
      );
    }
    list.push({ name, dtype: dtype as SafetensorsDType, shape, start: dataStart + begin, byteLength: end - begin, begin, end });
  }
  list.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const t of list) {
    if (t.begin < cursor) throw new SafetensorsFormatError(file, `data overlaps the previous tensor (offset ${t.begin} < ${cursor})`, t.name);
    if (t.begin > cursor) throw new SafetensorsFormatError(file, `hole in the data before this tensor (offset ${t.begin}, expected ${cursor})`, t.name);
    cursor = t.end;
  }
  if (cursor !== dataSize) {
    throw new SafetensorsFormatError(file, `the tensors cover ${cursor} bytes but the data section has ${dataSize}: ${cursor < dataSize ? 'trailing bytes' : 'truncated file'}`);
  }
  const tensors = new Map<string, TensorInfo>();
  for (const { begin: _b, end: _e, ...t } of list) tensors.set(t.name, t);
  return { source, metadata, tensors };
}

/** JSON.parse keeps the last duplicate silently; the format forbids duplicates, so look for them. */
function checkNoDuplicateKeys(file: string, text: string): void {
  // Top-level keys only: scan with a tiny tokenizer tracking depth and strings.
  const seen = new Set<string>();
  let depth = 0;
  let i = 0;
  let expectKey = false;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const raw = text.slice(i, j + 1);
      if (depth === 1 && expectKey) {
        const key = JSON.parse(raw) as string;
        if (seen.has(key)) throw new SafetensorsFormatError(file, 'duplicate key in header', key);
        seen.add(key);
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (ch === '{' || ch === '[') {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (ch === '}' || ch === ']') depth--;
    else if (ch === ',' && depth === 1) expectKey = true;
    i++;
  }
}

export function tensorInfo(f: SafetensorsFile, name: string): TensorInfo {
  const t = f.tensors.get(name);
  if (!t) throw new SafetensorsFormatError(f.source.name, 'missing tensor', name);
  return t;
}

export async function readTensorBytes(f: SafetensorsFile, name: string): Promise<Uint8Array> {
  const t = tensorInfo(f, name);
  return f.source.read(t.start, t.byteLength);
}

/** Read a floating-point tensor as f32 (F32, F16, BF16, F64 accepted). */
export async function readTensorF32(f: SafetensorsFile, name: string): Promise<Float32Array> {
  const t = tensorInfo(f, name);
  const bytes = await f.source.read(t.start, t.byteLength);
  return toF32(bytes, t.dtype, f.source.name, name);
}

export function toF32(bytes: Uint8Array, dtype: SafetensorsDType, file = '', tensor = ''): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(i * 2, true));
      return out;
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(i * 2, true) << 16;
      return out;
    }
    default:
      throw new SafetensorsFormatError(file, `dtype ${dtype} is not a floating-point type`, tensor);
  }
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function f32ToF16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: Uint8Array;
}

/**
 * Write a safetensors file as the reference writer does: `__metadata__` first, tensors sorted by
 * dtype alignment (descending) then name, header padded with spaces to a multiple of 8.
 */
export function writeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const sorted = [...tensors].sort(
    (a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const names = new Set<string>();
  for (const t of sorted) {
    if (names.has(t.name)) throw new Error(`writeSafetensors: duplicate tensor name ${t.name}`);
    names.add(t.name);
    const want = numelOf(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== want) {
      throw new Error(`writeSafetensors: ${t.name} has ${t.data.byteLength} bytes, ${t.dtype} [${t.shape.join(', ')}] needs ${want}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + want] };
    offset += want;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hb = enc.encode(json);
  const padded = Math.ceil(hb.byteLength / 8) * 8;
  json += ' '.repeat(padded - hb.byteLength);
  hb = enc.encode(json);
  const out = new Uint8Array(8 + hb.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.byteLength), true);
  out.set(hb, 8);
  let p = 8 + hb.byteLength;
  for (const t of sorted) {
    out.set(t.data, p);
    p += t.data.byteLength;
  }
  return out;
}

/** f32 values as safetensors bytes in the given float dtype. */
export function fromF32(values: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint8Array(values.length * 2);
  const dv = new DataView(out.buffer);
  const u = new Uint32Array(Float32Array.from(values).buffer);
  for (let i = 0; i < values.length; i++) {
    if (dtype === 'F16') dv.setUint16(i * 2, f32ToF16(values[i]), true);
    else {
      // round-to-nearest-even to the top 16 bits
      const x = u[i];
      const isNaN = (x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0;
      const r = isNaN ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
      dv.setUint16(i * 2, r & 0xffff, true);
    }
  }
  return out;
}
