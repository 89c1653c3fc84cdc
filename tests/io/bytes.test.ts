// Chunked byte sources and the chunker the download caches store with.
import { describe, expect, it } from 'vitest';
import { Chunker, bytesSource, chunkedSource, concatBytes } from '../../src/io/bytes';

describe('chunkedSource', () => {
  it('reads any range across pieces of any size, empty ones included, and refuses reads outside', async () => {
    const whole = new Uint8Array(100).map((_, i) => i);
    const cuts = [0, 0, 7, 7, 30, 64, 99, 100];
    const pieces = cuts.slice(1).map((end, i) => bytesSource('p', whole.subarray(cuts[i], end)));
    const src = chunkedSource('f', pieces);
    expect(src.size).toBe(100);
    for (let a = 0; a <= 100; a += 3) {
      for (const n of [0, 1, 6, 25, 100 - a]) {
        if (a + n > 100) continue;
        expect(Array.from(await src.read(a, n)), `[${a}, ${a + n})`).toEqual(Array.from(whole.subarray(a, a + n)));
      }
    }
    await expect(src.read(95, 6)).rejects.toThrow(/f: read \[95, 101\) outside 100 bytes/);
    expect(chunkedSource('empty', []).size).toBe(0);
  });
});

describe('Chunker', () => {
  it('cuts appended pieces into chunks of exactly its size, copying them', () => {
    const c = new Chunker(10);
    const src = new Uint8Array(27).map((_, i) => i);
    const chunks = [...c.push(src.subarray(0, 4)), ...c.push(src.subarray(4, 25)), ...c.push(src.subarray(25))];
    expect(chunks.map((g) => concatBytes(g).byteLength)).toEqual([10, 10]);
    expect(c.buffered).toBe(7);
    const rest = c.rest()!;
    expect(Array.from(concatBytes([...chunks.map(concatBytes), concatBytes(rest)]))).toEqual(Array.from(src));
    src[0] = 99; // the chunker holds copies
    expect(concatBytes(chunks[0])[0]).toBe(0);
    expect(c.rest()).toBeNull();
  });
});
