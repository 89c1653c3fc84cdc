// Counter-based random numbers: Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
// as easy as 1, 2, 3", SC 2011; the generator behind cuRAND's and PyTorch's CUDA dropout).
//
// A counter-based generator is a pure function  bits = philox(counter, key):  no state to carry, so any
// element of a random stream can be computed independently, in any order, on any device, and always
// gives the same bits. Only 32-bit integer arithmetic is involved, so the GPU (shaders/dropout.wgsl)
// and this TypeScript produce identical bits.
//
// The webtune stream: a 53-bit `seed` is the key (lo word, hi word); element `position` (an integer
// < 2^53) of the stream is lane `position mod 4` of philox([block_lo, block_hi, 0, 0], key) with
// block = floor(position / 4). One Philox call yields four 32-bit words, i.e. four consecutive
// elements. Callers that draw several tensors from one seed give each draw its own range of
// positions (an `offset` advanced by the number of elements drawn), so draws never overlap.
//
// This file is shared by dropout (the reference and the host), weight init and sampling; it lives in
// src/util (not src/ref) because production code uses it.

const M0 = 0xd2511f53; // round multipliers
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9; // key schedule (Weyl sequence): golden ratio, sqrt(3) − 1
const W1 = 0xbb67ae85;
const TWO32 = 4294967296;

/** High 32 bits of the 64-bit product a·b of two u32 (exact: each partial product fits in 2^53). */
export function mulHi32(a: number, b: number): number {
  // a·b = (a_hi·b)·2^16 + a_lo·b with a = a_hi·2^16 + a_lo; both partial products are < 2^48.
  const t = (a & 0xffff) * b;
  const u = (a >>> 16) * b;
  return Math.floor((u + Math.floor(t / 65536)) / 65536) >>> 0;
}

/** Philox-4x32 with 10 rounds: four u32 counter words and two u32 key words → four u32 words. */
export function philox4x32(counter: ArrayLike<number>, key: ArrayLike<number>): Uint32Array {
  let c0 = counter[0] >>> 0;
  let c1 = counter[1] >>> 0;
  let c2 = counter[2] >>> 0;
  let c3 = counter[3] >>> 0;
  let k0 = key[0] >>> 0;
  let k1 = key[1] >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulHi32(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulHi32(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

/** Split a non-negative integer < 2^53 into [lo, hi] u32 words. */
export function splitU64(v: number, what = 'value'): [number, number] {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what} must be an integer in [0, 2^53), got ${v}`);
  return [v % TWO32, Math.floor(v / TWO32)];
}

/** `n` consecutive u32 words of the stream of `seed`, starting at element `offset`. */
export function randomU32(seed: number, offset: number, n: number): Uint32Array {
  const key = splitU64(seed, 'seed');
  splitU64(offset + Math.max(n, 1) - 1, 'offset + n − 1');
  const out = new Uint32Array(n);
  let block = -1;
  let words: Uint32Array = new Uint32Array(4);
  for (let i = 0; i < n; i++) {
    const pos = offset + i;
    const b = Math.floor(pos / 4);
    if (b !== block) {
      block = b;
      words = philox4x32([b % TWO32, Math.floor(b / TWO32), 0, 0], key);
    }
    out[i] = words[pos - 4 * b];
  }
  return out;
}

/** A uniform number in [0, 1) from the top 24 bits of a u32 word (exactly representable in f32). */
export function uniform24(word: number): number {
  return (word >>> 8) / 16777216;
}
