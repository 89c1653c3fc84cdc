// float64 reference: inverted dropout driven by the counter-based Philox stream of src/util/rng.ts.
//
//   u_i    = uniform24(randomU32(seed, offset + i))        top 24 bits of the stream word, in [0, 1)
//   keep_i = u_i < 1 − p                                   P(keep) = 1 − p
//   y_i    = keep_i · x_i / (1 − p)                        (p = 0: y = x; p = 1: y = 0)
//   dx_i   = keep_i · dy_i / (1 − p)                       the mask is regenerated from (seed, offset)
//
// Dropped elements are exactly 0, even where x is NaN or ±Inf (the mask selects, it does not multiply).
import { randomU32, uniform24 } from '../util/rng';

export { philox4x32, randomU32, uniform24 } from '../util/rng';

export interface DropoutArgs {
  /** Probability of dropping an element, in [0, 1]. */
  p: number;
  /** Key of the random stream: an integer in [0, 2^53). */
  seed: number;
  /** First stream position used by this call (advance it by n between calls that share a seed). */
  offset: number;
}

/** The keep mask (1 = kept) of n elements. */
export function dropoutMask(n: number, args: DropoutArgs): Uint8Array {
  const words = randomU32(args.seed, args.offset, n);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = uniform24(words[i]) < 1 - args.p ? 1 : 0;
  return mask;
}

function applyMask(x: Float64Array, mask: Uint8Array, p: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = mask[i] ? x[i] / (1 - p) : 0;
  return out;
}

export function dropoutForward(x: Float64Array, args: DropoutArgs): Float64Array {
  return applyMask(x, dropoutMask(x.length, args), args.p);
}

/** dx = dy·keep/(1 − p): the same mask as the forward with the same (seed, offset). */
export function dropoutBackward(dy: Float64Array, args: DropoutArgs): Float64Array {
  return applyMask(dy, dropoutMask(dy.length, args), args.p);
}
