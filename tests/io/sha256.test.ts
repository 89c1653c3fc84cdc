// The incremental SHA-256 against the FIPS 180-4 / NIST example vectors and against crypto.subtle on
// random inputs cut into pieces at every kind of boundary (inside a block, at 55/56/64 bytes, …).
import { describe, expect, it } from 'vitest';
import { Sha256, sha256Hex, toHex } from '../../src/io/sha256';

const enc = new TextEncoder();
const subtleHex = async (b: Uint8Array): Promise<string> => toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', b as Uint8Array<ArrayBuffer>)));

/** Deterministic bytes (an LCG). */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

describe('Sha256', () => {
  it('matches the known vectors', () => {
    expect(sha256Hex(new Uint8Array(0))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sha256Hex(enc.encode('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256Hex(enc.encode('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
    expect(sha256Hex(enc.encode('abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu'))).toBe(
      'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
    );
    // One million 'a', fed in uneven pieces.
    const h = new Sha256();
    const piece = enc.encode('a'.repeat(999));
    let left = 1_000_000;
    while (left > 0) {
      const n = Math.min(left, piece.byteLength);
      h.update(piece.subarray(0, n));
      left -= n;
    }
    expect(h.hex()).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('equals crypto.subtle for lengths around the padding boundaries', async () => {
    for (const n of [1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) {
      const b = bytes(n, n);
      expect(sha256Hex(b), `length ${n}`).toBe(await subtleHex(b));
    }
  });

  it('gives the same digest however the input is cut', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const b = bytes(5000 + seed * 777, seed);
      const want = await subtleHex(b);
      // Random cuts, single bytes, and pieces of 63/64/65 bytes.
      let s = seed;
      const h = new Sha256();
      for (let o = 0; o < b.byteLength; ) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        const n = Math.min(b.byteLength - o, s % 300);
        h.update(b.subarray(o, o + n));
        o += n;
      }
      expect(h.hex(), `random cuts, seed ${seed}`).toBe(want);
      for (const step of [1, 63, 64, 65, 4096]) {
        const g = new Sha256();
        for (let o = 0; o < b.byteLength; o += step) g.update(b.subarray(o, o + step));
        expect(g.hex(), `pieces of ${step}`).toBe(want);
      }
    }
  });

  it('refuses to be used after its digest', () => {
    const h = new Sha256().update(enc.encode('x'));
    h.digest();
    expect(() => h.update(enc.encode('y'))).toThrow(/after digest/);
    expect(() => h.digest()).toThrow(/twice/);
  });
});
