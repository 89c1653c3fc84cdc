// Uniform parameter packing. Every kernel's `Params` struct in WGSL holds only 4-byte scalars
// (u32 / i32 / f32), so its layout is the fields in declaration order with no padding; the
// uniform binding is rounded up to 16 bytes. Write the fields in the same order as the struct.

export class ParamWriter {
  private readonly words: number[] = [];
  private readonly kinds: ('u32' | 'i32' | 'f32')[] = [];

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`u32 param out of range: ${v}`);
    this.words.push(v);
    this.kinds.push('u32');
    return this;
  }

  i32(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`i32 param out of range: ${v}`);
    this.words.push(v);
    this.kinds.push('i32');
    return this;
  }

  f32(v: number): this {
    this.words.push(v);
    this.kinds.push('f32');
    return this;
  }

  /** Bytes, padded to a multiple of 16 (uniform buffer binding size rule). */
  bytes(): Uint8Array {
    const n = Math.max(4, Math.ceil(this.words.length / 4) * 4);
    const buf = new ArrayBuffer(n * 4);
    const dv = new DataView(buf);
    this.words.forEach((w, i) => {
      const k = this.kinds[i];
      if (k === 'f32') dv.setFloat32(i * 4, w, true);
      else if (k === 'i32') dv.setInt32(i * 4, w, true);
      else dv.setUint32(i * 4, w, true);
    });
    return new Uint8Array(buf);
  }
}

/** Shorthand: `params().u32(n).f32(eps)`. */
export function params(): ParamWriter {
  return new ParamWriter();
}
