// float64 reference: softmax cross-entropy over a vocabulary, Hugging Face causal-LM semantics
// (transformers `ForCausalLMLoss`; docs/peft-spec.md §8).
//
//   N rows (tokens), V vocabulary; logits z: (N, V); targets: (N) integers, IGNORE_INDEX (−100) = no target.
//   lse_n  = log Σ_j exp(z_nj)                     computed as m + log Σ exp(z − m), m = max_j z_nj
//   loss_n = lse_n − z_n[target_n]                 0 for ignored rows
//   mean   = Σ_valid loss_n / N_valid               NaN when every row is ignored (report it, never train on it)
//   dz_nj  = (softmax(z_n)_j − [j = target_n]) · scale    0 for ignored rows; scale = 1/N_valid for the mean
//                                                 (1/N_total over all micro-batches under gradient accumulation)
// Targets are already shifted: target of position t is the label of position t + 1 (see shiftLabels).
// A target outside [0, V) that is not IGNORE_INDEX is an error: its loss is NaN, its gradient row 0.

export const IGNORE_INDEX = -100;

/** Causal-LM targets from labels (B, T): target[b, t] = labels[b, t + 1]; the last position gets IGNORE_INDEX. */
export function shiftLabels(labels: ArrayLike<number>, batch: number, seqLen: number): Int32Array {
  const out = new Int32Array(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seqLen; t++) out[b * seqLen + t] = t + 1 < seqLen ? labels[b * seqLen + t + 1] : IGNORE_INDEX;
  }
  return out;
}

export function logSumExp(z: ArrayLike<number>, start: number, length: number): number {
  let m = -Infinity;
  for (let j = 0; j < length; j++) m = Math.max(m, z[start + j]);
  let s = 0;
  for (let j = 0; j < length; j++) s += Math.exp(z[start + j] - m);
  return m + Math.log(s);
}

export interface CrossEntropyResult {
  /** (N) per-row loss, 0 for ignored rows */
  losses: Float64Array;
  /** (N) per-row logsumexp (every row) */
  lse: Float64Array;
  sum: number;
  count: number;
  /** sum / count; NaN when count = 0 */
  mean: number;
}

function validTarget(t: number, vocab: number): boolean {
  return Number.isInteger(t) && t >= 0 && t < vocab;
}

export function crossEntropyForward(
  logits: Float64Array,
  targets: ArrayLike<number>,
  rows: number,
  vocab: number,
  ignoreIndex = IGNORE_INDEX,
): CrossEntropyResult {
  const losses = new Float64Array(rows);
  const lse = new Float64Array(rows);
  let sum = 0;
  let count = 0;
  for (let n = 0; n < rows; n++) {
    lse[n] = logSumExp(logits, n * vocab, vocab);
    const t = targets[n];
    if (t === ignoreIndex) continue;
    losses[n] = validTarget(t, vocab) ? lse[n] - logits[n * vocab + t] : NaN;
    sum += losses[n];
    count++;
  }
  return { losses, lse, sum, count, mean: count > 0 ? sum / count : NaN };
}

/** dLogits: (N, V). */
export function crossEntropyBackward(
  logits: Float64Array,
  targets: ArrayLike<number>,
  rows: number,
  vocab: number,
  scale: number,
  ignoreIndex = IGNORE_INDEX,
): Float64Array {
  const d = new Float64Array(rows * vocab);
  for (let n = 0; n < rows; n++) {
    const t = targets[n];
    if (t === ignoreIndex || !validTarget(t, vocab)) continue;
    const lse = logSumExp(logits, n * vocab, vocab);
    for (let j = 0; j < vocab; j++) {
      d[n * vocab + j] = (Math.exp(logits[n * vocab + j] - lse) - (j === t ? 1 : 0)) * scale;
    }
  }
  return d;
}
