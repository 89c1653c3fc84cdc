import { describe, expect, it } from 'vitest';
import {
  buildEmbeddingIndex,
  embeddingBackward as gpuBackward,
  embeddingForward as gpuForward,
  embeddingPositionsBackward as gpuPositionsBackward,
  uploadEmbeddingIndex,
} from '../../src/kernels/embedding';
import * as ref from '../../src/ref/embedding';
import { TOL_ELEMENTWISE, TOL_REDUCTION, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload, uploadInts } from '../helpers/gpu';
import { rng, uniform } from '../helpers/random';

// Tolerances: the forward is a copy (+ one add with positions): TOL_ELEMENTWISE. The backward sums
// up to N rows per table row in f32: TOL_REDUCTION.

/** n ids in [0, vocab), with repeats (a few hot ids, as in real text). */
function tokenIds(n: number, vocab: number, seed: number): Uint32Array {
  const r = rng(seed);
  const hot = Math.min(vocab, 3);
  return Uint32Array.from({ length: n }, () => Math.floor(r() < 0.3 ? r() * hot : r() * vocab));
}

describe('embedding reference', () => {
  it('backward (tokens and positions) matches finite differences', () => {
    const [V, C, T, P] = [6, 3, 4, 7];
    const ids = [2, 5, 2, 0, 1, 2, 2, 5];
    const start = 2;
    checkGradients({
      inputs: [uniform(V * C, 1), uniform(P * C, 2)],
      forward: ([wte, wpe]) => ref.embeddingForward(ids, wte, V, C, { table: wpe, nPos: P, seqLen: T, start }),
      backward: (_x, dy) => [ref.embeddingBackward(ids, dy, V, C), ref.embeddingPositionsBackward(dy, ids.length, C, P, T, start)],
    });
  });
});

describe('embedding.wgsl', () => {
  // N = 1, 5, 33 tokens; C = 1, 7, 64, 130 (not multiples of the 256 workgroup); V = 1, 11, 300.
  const cases: [number, number, number][] = [
    [1, 1, 1],
    [5, 7, 11],
    [33, 64, 300],
    [33, 130, 11],
  ];
  for (const [N, C, V] of cases) {
    it(`embedding_forward matches the reference, N=${N} C=${C} V=${V}`, async () => {
      const c = await gpu();
      const ids = tokenIds(N, V, N + C);
      const wte = uniform(V * C, 1);
      const out = c.tensor([N, C]);
      await c.run((b) => gpuForward(b, out, uploadInts(c, ids, [N], 'ids'), upload(c, wte, [V, C]), { hostIds: ids }));
      expectClose(await download(c, out), ref.embeddingForward(ids, wte, V, C), TOL_ELEMENTWISE, 'embedding_forward');
    });

    it(`embedding_backward accumulates deterministically, N=${N} C=${C} V=${V}`, async () => {
      const c = await gpu();
      const ids = tokenIds(N, V, N * C);
      const dy = uniform(N * C, 2);
      const acc = uniform(V * C, 3);
      const index = uploadEmbeddingIndex(c, buildEmbeddingIndex(ids, V));
      const dWte = upload(c, acc, [V, C]);
      const dOut = upload(c, dy, [N, C]);
      await c.run((b) => gpuBackward(b, dWte, dOut, index));
      const got = await download(c, dWte);
      const want = ref.embeddingBackward(ids, dy, V, C).map((g, i) => g + acc[i]);
      expectClose(got, want, TOL_REDUCTION, 'embedding_backward');
      // Same inputs → the same bits (fixed summation order, no atomics).
      const again = upload(c, acc, [V, C]);
      await c.run((b) => gpuBackward(b, again, dOut, index));
      expect(await download(c, again)).toEqual(got);
    });
  }

  // GPT-2: x = wte[ids] + wpe[start + t] for B sequences of T tokens, and dWpe = Σ_b dOut[b, t].
  for (const [B, T, C, start] of [
    [1, 1, 1, 0],
    [3, 5, 7, 0],
    [2, 17, 33, 4],
  ]) {
    it(`embedding_forward with positions and embedding_positions_backward, B=${B} T=${T} C=${C} start=${start}`, async () => {
      const c = await gpu();
      const [V, P] = [50, T + start + 3];
      const N = B * T;
      const ids = tokenIds(N, V, 7);
      const wte = uniform(V * C, 4);
      const wpe = uniform(P * C, 5);
      const out = c.tensor([N, C]);
      const wpeT = upload(c, wpe, [P, C]);
      await c.run((b) =>
        gpuForward(b, out, uploadInts(c, ids, [N], 'ids'), upload(c, wte, [V, C]), { positions: { table: wpeT, seqLen: T, start } }),
      );
      const positions = { table: wpe, nPos: P, seqLen: T, start };
      expectClose(await download(c, out), ref.embeddingForward(ids, wte, V, C, positions), TOL_ELEMENTWISE, 'embedding_forward');

      const dy = uniform(N * C, 6);
      const acc = uniform(P * C, 8);
      const dWpe = upload(c, acc, [P, C]);
      await c.run((b) => gpuPositionsBackward(b, dWpe, upload(c, dy, [N, C]), { seqLen: T, start }));
      const want = ref.embeddingPositionsBackward(dy, N, C, P, T, start).map((g, i) => g + acc[i]);
      expectClose(await download(c, dWpe), want, TOL_REDUCTION, 'embedding_positions_backward');
    });
  }

  it('embedding_backward touches only the rows in the batch, V=150_000', async () => {
    // Work is (distinct ids)·C, not V·N: a 150k vocabulary with 300 tokens is cheap.
    const c = await gpu();
    const [N, C, V] = [300, 8, 150_000];
    const ids = tokenIds(N, V, 11);
    ids[0] = V - 1; // the last row
    ids[1] = V - 1;
    const dy = uniform(N * C, 12);
    const acc = uniform(V * C, 13);
    const dWte = upload(c, acc, [V, C]);
    await c.run((b) => gpuBackward(b, dWte, upload(c, dy, [N, C]), uploadEmbeddingIndex(c, buildEmbeddingIndex(ids, V))));
    const want = ref.embeddingBackward(ids, dy, V, C).map((g, i) => g + acc[i]);
    expectClose(await download(c, dWte), want, TOL_REDUCTION, 'embedding_backward');
  });

  it('out-of-range ids: the host throws naming the id; the GPU reads nothing for them', async () => {
    const c = await gpu();
    const [N, C, V] = [4, 5, 10];
    const ids = Uint32Array.of(3, 10, 9, 4_000_000_000);
    const idsT = uploadInts(c, ids, [N], 'ids');
    const wte = uniform(V * C, 14);
    const wteT = upload(c, wte, [V, C]);
    const out = c.tensor([N, C]);
    expect(() => gpuForward(c.batch(), out, idsT, wteT, { hostIds: ids })).toThrow(/embedding_forward: token id 10 at position 1/);
    expect(() => buildEmbeddingIndex([1, 2, -1], V)).toThrow(/embedding_backward: token id -1 at position 2/);
    // Unvalidated: rows with out-of-range ids come out as zeros, in-range rows are still right.
    await c.run((b) => gpuForward(b, out, idsT, wteT));
    expectClose(await download(c, out), ref.embeddingForward(ids, wte, V, C), TOL_ELEMENTWISE, 'embedding_forward');
  });

  it('rejects wrong shapes naming the kernel and tensor', async () => {
    const c = await gpu();
    const ids = uploadInts(c, [1, 2], [2], 'ids');
    const wte = c.tensor([4, 3]);
    expect(() => gpuForward(c.batch(), c.tensor([2, 4]), ids, wte)).toThrow(/embedding_forward: out has 8 elements/);
    expect(() =>
      gpuForward(c.batch(), c.tensor([2, 3]), ids, wte, { positions: { table: c.tensor([1, 3]), seqLen: 2 } }),
    ).toThrow(/embedding_forward: positions 0…1 exceed the 1 rows of wpe/);
  });
});
