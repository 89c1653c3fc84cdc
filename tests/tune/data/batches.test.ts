// Seeded epoch orders, padding, and the resumable data cursor.
import { describe, expect, it } from 'vitest';
import { BatchIterator, collate, DataCursorError, epochOrder, evalBatches, permutation, type Batch, type Example } from '../../../src/tune/data';

const ex = (n: number, first: number, masked = 0): Example => {
  const ids = Array.from({ length: n }, (_, t) => first + t);
  return { inputIds: Uint32Array.from(ids), labels: Int32Array.from(ids.map((id, t) => (t < masked ? -100 : id))), file: 'f', line: first };
};
const examples = Array.from({ length: 11 }, (_, i) => ex(2 + (i % 4), 100 * (i + 1), i % 2));

describe('seeded permutations', () => {
  it('are permutations, reproducible, and differ by seed and epoch', () => {
    const p = permutation(50, 3, 0);
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(permutation(50, 3, 0))).toEqual(Array.from(p));
    expect(Array.from(permutation(50, 4, 0))).not.toEqual(Array.from(p));
    expect(Array.from(epochOrder(50, 3, 1))).not.toEqual(Array.from(epochOrder(50, 3, 0)));
    expect(Array.from(epochOrder(50, 3, 0))).toEqual(Array.from(p));
    expect(Array.from(permutation(1, 3, 0))).toEqual([0]);
  });

  it('spreads: each element lands in each half about equally often over many seeds', () => {
    let firstHalf = 0;
    for (let s = 0; s < 400; s++) if (permutation(10, s, 0).indexOf(0) < 5) firstHalf++;
    expect(firstHalf).toBeGreaterThan(150);
    expect(firstHalf).toBeLessThan(250);
  });
});

describe('collate', () => {
  it('pads right to the longest with padId and −100 labels; counts tokens and loss targets', () => {
    const b = collate([ex(3, 10), ex(5, 20, 2)], 'longest', 0);
    expect([b.B, b.T]).toEqual([2, 5]);
    expect(Array.from(b.inputIds)).toEqual([10, 11, 12, 0, 0, 20, 21, 22, 23, 24]);
    expect(Array.from(b.labels)).toEqual([10, 11, 12, -100, -100, -100, -100, 22, 23, 24]);
    expect(b.tokens).toBe(8);
    // Targets are positions t ≥ 1 with a label: 2 + 3.
    expect(b.targets).toBe(5);
    expect(b.inputIds).toBeInstanceOf(Uint32Array);
    expect(b.labels).toBeInstanceOf(Int32Array);
  });

  it('pads to a fixed length, and refuses an example longer than it', () => {
    const b = collate([ex(3, 10)], 6, 7);
    expect(Array.from(b.inputIds)).toEqual([10, 11, 12, 7, 7, 7]);
    expect(() => collate([ex(3, 10)], 2)).toThrow(/3 tokens, more than padTo = 2/);
  });
});

describe('BatchIterator', () => {
  const key = (b: Batch): string => `${b.epoch}:${b.index}:${Array.from(b.inputIds).join(',')}|${Array.from(b.labels).join(',')}`;

  it('covers every example once per epoch, in a seeded order; the last batch may be smaller', () => {
    const it = new BatchIterator(examples, { batchSize: 4, seed: 1 });
    expect(it.batchesPerEpoch).toBe(3);
    const seen: number[] = [];
    const sizes: number[] = [];
    for (let k = 0; k < 3; k++) {
      const b = it.next();
      seen.push(...b.rows);
      sizes.push(b.B);
    }
    expect(sizes).toEqual([4, 4, 3]);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 11 }, (_, i) => i));
    expect(seen).not.toEqual(Array.from({ length: 11 }, (_, i) => i));
    expect(it.cursor).toMatchObject({ epoch: 1, index: 0 });
    const again = new BatchIterator(examples, { batchSize: 4, seed: 1 });
    expect(Array.from(again.next().rows)).toEqual(seen.slice(0, 4));
  });

  it('resumes exactly: 3 batches, cursor through JSON, the next batches equal the uninterrupted run', () => {
    const options = { batchSize: 3, seed: 42 };
    const straight = new BatchIterator(examples, options);
    const expected = Array.from({ length: 12 }, () => key(straight.next()));

    const first = new BatchIterator(examples, options);
    const got = [key(first.next()), key(first.next()), key(first.next())];
    const saved = JSON.stringify(first.cursor);
    expect(JSON.parse(saved)).toMatchObject({ version: 1, epoch: 0, index: 9, size: 11, seed: 42 });

    const resumed = new BatchIterator(examples, options, saved);
    for (let k = 3; k < 12; k++) got.push(key(resumed.next()));
    expect(got).toEqual(expected);
    // Across the epoch boundary too (the 4th batch of epoch 0 has 2 examples, then epoch 1).
    expect(expected[3].startsWith('0:9:')).toBe(true);
    expect(expected[4].startsWith('1:0:')).toBe(true);
  });

  it('dropLast skips the short batch; shuffle false keeps the file order', () => {
    const it = new BatchIterator(examples, { batchSize: 4, dropLast: true, shuffle: false });
    expect(it.batchesPerEpoch).toBe(2);
    expect(Array.from(it.next().rows)).toEqual([0, 1, 2, 3]);
    expect(Array.from(it.next().rows)).toEqual([4, 5, 6, 7]);
    expect(Array.from(it.next().rows)).toEqual([0, 1, 2, 3]);
  });

  it('refuses a cursor from another dataset, seed or order, saying why', () => {
    const cursor = new BatchIterator(examples, { batchSize: 2, seed: 1 }).cursor;
    expect(() => new BatchIterator(examples.slice(1), { batchSize: 2, seed: 1 }, cursor)).toThrow(DataCursorError);
    expect(() => new BatchIterator(examples, { batchSize: 2, seed: 2 }, cursor)).toThrow(/seed 1 then, 2 now/);
    const changed = examples.map((e, i) => (i === 5 ? ex(3, 7) : e));
    expect(() => new BatchIterator(changed, { batchSize: 2, seed: 1 }, cursor)).toThrow(/the examples differ/);
    expect(() => new BatchIterator(examples, { batchSize: 2, seed: 1 }, '{oops')).toThrow(/not valid JSON/);
    // A different batch size resumes at the same example.
    expect(new BatchIterator(examples, { batchSize: 5, seed: 1 }, cursor).cursor).toMatchObject({ epoch: 0, index: 0 });
  });

  it('evalBatches: one pass in file order', () => {
    const bs = [...evalBatches(examples, 4)];
    expect(bs.map((b) => b.B)).toEqual([4, 4, 3]);
    expect(bs.flatMap((b) => Array.from(b.rows))).toEqual(Array.from({ length: 11 }, (_, i) => i));
  });
});
