// float64 reference: token embedding lookup (and GPT-2's learned positions) and its backward.
//
//   N tokens (N = B·T: B sequences of T tokens), C channels, V vocabulary rows, P position rows.
//   out[n, :]     = wte[ids[n], :]  (+ wpe[start + n mod T, :] when positions are given)
//   dWte[v, :]    = Σ_{n : ids[n] = v} dOut[n, :]
//   dWpe[start + t, :] = Σ_b dOut[b·T + t, :]
// Ids outside [0, V) select nothing: their output row is 0 (only the position term) and they add no gradient.

export interface Positions {
  /** wpe: (P, C) */
  table: Float64Array;
  /** rows in the position table */
  nPos: number;
  /** T: tokens per sequence; token n has position start + (n mod T) */
  seqLen: number;
  /** position of the first token of each sequence (the KV-cache length when decoding; 0 in training) */
  start: number;
}

/** out: (N, C) */
export function embeddingForward(
  ids: ArrayLike<number>,
  table: Float64Array,
  vocab: number,
  channels: number,
  positions?: Positions,
): Float64Array {
  const n = ids.length;
  const out = new Float64Array(n * channels);
  for (let i = 0; i < n; i++) {
    const id = ids[i];
    for (let c = 0; c < channels; c++) {
      let v = id >= 0 && id < vocab ? table[id * channels + c] : 0;
      if (positions) v += positions.table[(positions.start + (i % positions.seqLen)) * channels + c];
      out[i * channels + c] = v;
    }
  }
  return out;
}

/** dWte: (V, C), the gradient of the token table alone (callers accumulate it into theirs). */
export function embeddingBackward(ids: ArrayLike<number>, dOut: Float64Array, vocab: number, channels: number): Float64Array {
  const d = new Float64Array(vocab * channels);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= vocab) continue;
    for (let c = 0; c < channels; c++) d[id * channels + c] += dOut[i * channels + c];
  }
  return d;
}

/** dWpe: (P, C) for dOut: (N, C) with N = B·T. */
export function embeddingPositionsBackward(
  dOut: Float64Array,
  tokens: number,
  channels: number,
  nPos: number,
  seqLen: number,
  start: number,
): Float64Array {
  const d = new Float64Array(nPos * channels);
  for (let i = 0; i < tokens; i++) {
    const p = start + (i % seqLen);
    for (let c = 0; c < channels; c++) d[p * channels + c] += dOut[i * channels + c];
  }
  return d;
}
