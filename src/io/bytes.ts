// Where model bytes come from. A ByteSource reads ranges on demand, so a model larger than one
// ArrayBuffer never has to sit in JS memory whole: the browser slices a File/Blob, Node reads a file
// handle, a download reads from the cache.

export interface ByteSource {
  /** Name shown in errors (file name or URL). */
  readonly name: string;
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A read of [offset, offset + length) must lie inside a source of `size` bytes. */
export function checkRange(name: string, size: number, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > size) throw new RangeError(`${name}: read [${offset}, ${offset + length}) outside ${size} bytes`);
}

export function bytesSource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    async read(offset, length) {
      checkRange(name, bytes.byteLength, offset, length);
      return bytes.subarray(offset, offset + length);
    },
  };
}

export function blobSource(name: string, blob: Blob): ByteSource {
  return {
    name,
    size: blob.size,
    async read(offset, length) {
      checkRange(name, blob.size, offset, length);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/**
 * Several pieces read as one (a file a cache stored in chunks). A read inside one piece is that piece's
 * read; a read across pieces is assembled into one buffer of the length asked for, never more.
 */
export function chunkedSource(name: string, pieces: readonly ByteSource[]): ByteSource {
  const starts: number[] = [];
  let size = 0;
  for (const p of pieces) {
    starts.push(size);
    size += p.size;
  }
  // The last piece starting at or before `offset` (pieces of size 0 are skipped by the read loop).
  const pieceAt = (offset: number): number => {
    let lo = 0;
    let hi = pieces.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  return {
    name,
    size,
    async read(offset, length) {
      checkRange(name, size, offset, length);
      if (length === 0) return new Uint8Array(0);
      let i = pieceAt(offset);
      while (offset - starts[i] >= pieces[i].size) i++; // past empty pieces
      if (offset + length <= starts[i] + pieces[i].size) return pieces[i].read(offset - starts[i], length);
      const out = new Uint8Array(length);
      for (let done = 0; done < length; i++) {
        const from = offset + done - starts[i];
        const n = Math.min(pieces[i].size - from, length - done);
        if (n <= 0) continue;
        out.set(await pieces[i].read(from, n), done);
        done += n;
      }
      return out;
    },
  };
}

/**
 * Cuts a stream of appended pieces into chunks of exactly `size` bytes (the last one may be shorter),
 * each returned as the list of pieces that make it up, so a cache can store it as one Blob without
 * first copying it into one buffer. Pieces are copied on the way in: the caller may reuse its buffer.
 */
export class Chunker {
  private pending: Uint8Array<ArrayBuffer>[] = [];
  private pendingBytes = 0;

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new RangeError(`chunk size must be at least 1 byte, got ${size}`);
  }

  /** Bytes waiting for their chunk to fill. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** Add bytes; returns the chunks that filled up (often none). */
  push(bytes: Uint8Array): Uint8Array<ArrayBuffer>[][] {
    const full: Uint8Array<ArrayBuffer>[][] = [];
    for (let o = 0; o < bytes.byteLength; ) {
      const take = Math.min(this.size - this.pendingBytes, bytes.byteLength - o);
      this.pending.push(bytes.slice(o, o + take));
      this.pendingBytes += take;
      o += take;
      if (this.pendingBytes === this.size) full.push(this.take());
    }
    return full;
  }

  /** The last, partly filled chunk, or null when nothing is waiting. */
  rest(): Uint8Array<ArrayBuffer>[] | null {
    return this.pendingBytes > 0 ? this.take() : null;
  }

  private take(): Uint8Array<ArrayBuffer>[] {
    const out = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    return out;
  }
}

/** One buffer holding the pieces in order. */
export function concatBytes(pieces: readonly Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0];
  let n = 0;
  for (const p of pieces) n += p.byteLength;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of pieces) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
