// Seeded permutations (Fisher–Yates driven by the Philox stream of src/util/rng.ts), so every order
// is a pure function of (seed, what it is for) and can be recomputed on resume.
//
// Stream layout for one seed (each draw its own range of positions, so draws never overlap):
//   epoch e of a dataset of n examples:  positions [e·n, e·n + n − 1)
//   the train/validation split:          positions [SPLIT_OFFSET, SPLIT_OFFSET + n − 1)
import { randomU32 } from '../../util/rng';
import { DatasetError } from './errors';

/** 2^50: far above any e·n a run reaches (10^15 examples seen). */
export const SPLIT_OFFSET = 2 ** 50;

/** A permutation of 0..n−1 from n − 1 words of the stream of `seed` starting at `offset`. */
export function permutation(n: number, seed: number, offset: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  if (n < 2) return p;
  const u = randomU32(seed, offset, n - 1);
  for (let i = n - 1; i >= 1; i--) {
    // j uniform in [0, i] (multiply-shift; the bias is < (i+1)/2^32).
    const j = Math.min(i, Math.floor((u[i - 1] / 4294967296) * (i + 1)));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** The order of epoch `epoch` (0-based) over n examples. */
export function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  return permutation(n, seed, epoch * n);
}

/** Hold out a seeded random subset; both parts keep the file order. */
export function splitHoldout<T>(items: T[], spec: { fraction: number } | { count: number }, seed: number): { train: T[]; validation: T[] } {
  const n = items.length;
  let count: number;
  if ('fraction' in spec) {
    if (!(spec.fraction > 0 && spec.fraction < 1)) throw new DatasetError(`validation fraction must be in (0, 1), got ${spec.fraction}`);
    count = Math.max(1, Math.round(spec.fraction * n));
  } else {
    if (!Number.isInteger(spec.count) || spec.count < 1) throw new DatasetError(`validation count must be a positive integer, got ${spec.count}`);
    count = spec.count;
  }
  if (count >= n) {
    throw new DatasetError(`a validation set of ${count} example${count === 1 ? '' : 's'} leaves nothing to train on (${n} in all); hold out fewer, or give a separate validation file`);
  }
  const p = permutation(n, seed, SPLIT_OFFSET);
  const held = new Uint8Array(n);
  for (let k = 0; k < count; k++) held[p[k]] = 1;
  const train: T[] = [];
  const validation: T[] = [];
  items.forEach((x, i) => (held[i] ? validation : train).push(x));
  return { train, validation };
}
