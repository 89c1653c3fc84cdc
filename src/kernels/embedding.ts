// Host side of shaders/embedding.wgsl: token (+ learned position) embedding lookup and its backward.
//   N tokens = B sequences · T tokens, C channels, V vocabulary rows, P position rows.
import { grid1d, KernelArgumentError, numel, params, type CommandBatch, type GpuContext, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel } from './check';

const WG = 256;
export const EMBEDDING_FORWARD: KernelSpec = {
  shader: 'embedding',
  entry: 'embedding_forward',
  bindings: ['rw', 'read', 'read', 'read'],
  constants: { WG },
};
export const EMBEDDING_BACKWARD: KernelSpec = {
  shader: 'embedding',
  entry: 'embedding_backward',
  bindings: ['rw', 'read', 'read', 'read', 'read'],
  constants: { WG },
};
export const EMBEDDING_POSITIONS_BACKWARD: KernelSpec = {
  shader: 'embedding',
  entry: 'embedding_positions_backward',
  bindings: ['rw', 'read'],
  constants: { WG },
};

/** Learned absolute positions (GPT-2 `wpe`): token n of a (B, T) batch has position start + (n mod T). */
export interface PositionArgs {
  /** wpe: (P, C) */
  table: GpuTensor;
  /** T, tokens per sequence (N must be a multiple of T) */
  seqLen: number;
  /** position of each sequence's first token: 0 in training, the number of cached tokens when decoding */
  start?: number;
}

interface Sizes {
  nTokens: number;
  channels: number;
  vocab: number;
  seqLen: number;
  posStart: number;
  nPos: number;
  usePos: boolean;
  nTouched: number;
}

function packParams(s: Sizes): Uint8Array {
  return params()
    .u32(s.nTokens)
    .u32(s.channels)
    .u32(s.vocab)
    .u32(s.seqLen)
    .u32(s.posStart)
    .u32(s.nPos)
    .u32(s.usePos ? 1 : 0)
    .u32(s.nTouched)
    .bytes();
}

function tableShape(kernel: string, name: string, t: GpuTensor): [number, number] {
  if (t.shape.length !== 2) throw new KernelArgumentError(kernel, `${name} must be 2-D (rows, C), got [${t.shape.join(', ')}]`);
  return [t.shape[0], t.shape[1]];
}

/** Throws a KernelArgumentError naming the first token id outside [0, vocab). */
export function checkTokenIds(kernel: string, ids: ArrayLike<number>, vocab: number): void {
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new KernelArgumentError(
        kernel,
        `token id ${id} at position ${n} is outside the vocabulary [0, ${vocab}); check the tokenizer matches the model`,
      );
    }
  }
}

function checkPositions(kernel: string, nTokens: number, channels: number, pos: PositionArgs): { nPos: number; start: number } {
  const [nPos, c] = tableShape(kernel, 'wpe', pos.table);
  if (c !== channels) throw new KernelArgumentError(kernel, `wpe has ${c} channels, expected ${channels}`);
  const start = pos.start ?? 0;
  if (!Number.isInteger(pos.seqLen) || pos.seqLen < 1 || nTokens % pos.seqLen !== 0) {
    throw new KernelArgumentError(kernel, `seqLen ${pos.seqLen} does not divide the ${nTokens} tokens`);
  }
  if (!Number.isInteger(start) || start < 0 || start + pos.seqLen > nPos) {
    throw new KernelArgumentError(
      kernel,
      `positions ${start}…${start + pos.seqLen - 1} exceed the ${nPos} rows of wpe (the model's maximum context)`,
    );
  }
  return { nPos, start };
}

/**
 * out = wte[ids] (+ wpe[start + t]).
 * out: (N, C), ids: (N) u32, wte: (V, C). Pass `hostIds` (the same ids, on the host) to validate them:
 * the GPU writes a zero token row for an out-of-range id instead of reading out of bounds.
 */
export function embeddingForward(
  batch: CommandBatch,
  out: GpuTensor,
  ids: GpuTensor,
  wte: GpuTensor,
  opts: { positions?: PositionArgs; hostIds?: ArrayLike<number> } = {},
): void {
  const k = 'embedding_forward';
  const [vocab, channels] = tableShape(k, 'wte', wte);
  if (ids.dtype !== 'u32') throw new KernelArgumentError(k, `ids must be u32, got ${ids.dtype}`);
  const nTokens = numel(ids.shape);
  expectNumel(k, 'out', out, nTokens * channels, `N=${nTokens} × C=${channels}`);
  if (opts.hostIds) {
    if (opts.hostIds.length !== nTokens) throw new KernelArgumentError(k, `hostIds has ${opts.hostIds.length} ids, ids has ${nTokens}`);
    checkTokenIds(k, opts.hostIds, vocab);
  }
  let pos = { nPos: 0, start: 0 };
  if (opts.positions) pos = checkPositions(k, nTokens, channels, opts.positions);
  const p = packParams({
    nTokens,
    channels,
    vocab,
    seqLen: opts.positions?.seqLen ?? 1,
    posStart: pos.start,
    nPos: pos.nPos,
    usePos: Boolean(opts.positions),
    nTouched: 0,
  });
  // Without positions wte is bound in the wpe slot too (read-only aliasing is allowed; it is not read).
  const wpe = opts.positions?.table ?? wte;
  batch.dispatch(EMBEDDING_FORWARD, { params: p, tensors: [out, ids, wte, wpe], grid: grid1d(nTokens * channels, WG) });
}

/**
 * Token positions grouped by id, built on the host from the host-side ids (sorted by id, then position):
 * the touched vocabulary row rows[u] owns positions order[offsets[u] .. offsets[u+1]), ascending.
 */
export interface EmbeddingIndex {
  vocab: number;
  /** (U) distinct ids, ascending */
  rows: Uint32Array;
  /** (U + 1) */
  offsets: Uint32Array;
  /** (N) */
  order: Uint32Array;
}

/** Build the backward index of `ids` (validated: an id outside [0, vocab) throws naming it). O(N log N). */
export function buildEmbeddingIndex(ids: ArrayLike<number>, vocab: number): EmbeddingIndex {
  checkTokenIds('embedding_backward', ids, vocab);
  const n = ids.length;
  // Sort positions by (id, position): O(N log N), independent of V (no V-sized count array).
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => ids[a] - ids[b] || a - b);
  const rows: number[] = [];
  const offsets: number[] = [];
  for (let k = 0; k < n; k++) {
    if (k === 0 || ids[order[k]] !== ids[order[k - 1]]) {
      rows.push(ids[order[k]]);
      offsets.push(k);
    }
  }
  offsets.push(n);
  return { vocab, rows: Uint32Array.from(rows), offsets: Uint32Array.from(offsets), order };
}

/** The index on the GPU (three small u32 tensors; upload once per step, reuse for every micro-step). */
export interface GpuEmbeddingIndex {
  vocab: number;
  nTokens: number;
  nTouched: number;
  rows: GpuTensor;
  offsets: GpuTensor;
  order: GpuTensor;
}

export function uploadEmbeddingIndex(ctx: GpuContext, index: EmbeddingIndex): GpuEmbeddingIndex {
  const t = (data: Uint32Array, label: string): GpuTensor =>
    ctx.tensor([data.length], { dtype: 'u32', label: `embedding index ${label}`, role: 'scratch', data });
  return {
    vocab: index.vocab,
    nTokens: index.order.length,
    nTouched: index.rows.length,
    rows: t(index.rows, 'rows'),
    offsets: t(index.offsets, 'offsets'),
    order: t(index.order, 'order'),
  };
}

/** dWte[v] += Σ_{n: ids[n] = v} dOut[n] in a fixed order (no atomics). dWte: (V, C), dOut: (N, C). */
export function embeddingBackward(batch: CommandBatch, dWte: GpuTensor, dOut: GpuTensor, index: GpuEmbeddingIndex): void {
  const k = 'embedding_backward';
  const [vocab, channels] = tableShape(k, 'dWte', dWte);
  if (vocab !== index.vocab) throw new KernelArgumentError(k, `index was built for V=${index.vocab}, dWte has ${vocab} rows`);
  expectNumel(k, 'dOut', dOut, index.nTokens * channels, `N=${index.nTokens} × C=${channels}`);
  if (index.nTouched === 0 || channels === 0) return;
  const p = packParams({ nTokens: index.nTokens, channels, vocab, seqLen: 1, posStart: 0, nPos: 0, usePos: false, nTouched: index.nTouched });
  batch.dispatch(EMBEDDING_BACKWARD, {
    params: p,
    tensors: [dWte, dOut, index.rows, index.offsets, index.order],
    grid: grid1d(index.nTouched * channels, WG),
  });
}

/** dWpe[start + t] += Σ_b dOut[b·T + t]. dWpe: (P, C), dOut: (N, C) with N = B·T. */
export function embeddingPositionsBackward(
  batch: CommandBatch,
  dWpe: GpuTensor,
  dOut: GpuTensor,
  opts: { seqLen: number; start?: number },
): void {
  const k = 'embedding_positions_backward';
  const [, channels] = tableShape(k, 'dWpe', dWpe);
  const nTokens = numel(dOut.shape) / Math.max(channels, 1);
  if (!Number.isInteger(nTokens)) throw new KernelArgumentError(k, `dOut has ${numel(dOut.shape)} elements, not a multiple of C=${channels}`);
  const pos = checkPositions(k, nTokens, channels, { table: dWpe, seqLen: opts.seqLen, start: opts.start });
  const p = packParams({ nTokens, channels, vocab: 0, seqLen: opts.seqLen, posStart: pos.start, nPos: pos.nPos, usePos: true, nTouched: 0 });
  batch.dispatch(EMBEDDING_POSITIONS_BACKWARD, { params: p, tensors: [dWpe, dOut], grid: grid1d(opts.seqLen * channels, WG) });
}
