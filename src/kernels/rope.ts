// Host side of shaders/rope.wgsl: rotary position embedding, in place on [B, T, NH, D] (B batch,
// T tokens, NH heads, D head dim), Hugging Face half-split (`rotate_half`) convention.
//
// The frequency table inv_freq [D/2] is computed here on the host (float64, rounded once to f32) and
// uploaded once per model: `ropeInvFreq(D, θ)` for plain RoPE, with `scaling` for llama3 rope scaling.
import {
  KernelArgumentError,
  grid1d,
  params,
  type CommandBatch,
  type GpuContext,
  type GpuTensor,
  type KernelSpec,
} from '../gpu';
import { expectNumel } from './check';

const WG = 256;
export const ROPE_FORWARD: KernelSpec = {
  shader: 'rope',
  entry: 'rope_forward',
  bindings: ['rw', 'read'],
  constants: { WG },
};
export const ROPE_BACKWARD: KernelSpec = {
  shader: 'rope',
  entry: 'rope_backward',
  bindings: ['rw', 'read'],
  constants: { WG },
};

/** HF `rope_scaling` with `rope_type: "llama3"` (field names as in config.json). */
export interface Llama3RopeScaling {
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}

/**
 * inv_freq[i] = 1/θ^(2i/D) for i < D/2, optionally llama3-scaled (HF `_compute_llama3_parameters`):
 * with wavelength wl = 2π/f, low-frequency entries (wl > old_ctx/low_freq_factor) are divided by
 * `factor`, high-frequency ones (wl < old_ctx/high_freq_factor) are kept, and the band between is
 * blended: (1 − sm)·f/factor + sm·f with sm = (old_ctx/wl − low_freq_factor)/(high_freq_factor − low_freq_factor).
 * Computed in float64 and rounded once to f32.
 */
export function ropeInvFreq(headDim: number, theta: number, scaling?: Llama3RopeScaling): Float32Array {
  if (headDim % 2 !== 0 || headDim < 2) throw new RangeError(`RoPE needs an even head dim, got ${headDim}`);
  const half = headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    let f = 1 / Math.pow(theta, (2 * i) / headDim);
    if (scaling) {
      const { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: ctx } = scaling;
      const wl = (2 * Math.PI) / f;
      if (wl > ctx / low) f = f / factor;
      else if (wl >= ctx / high) {
        const sm = (ctx / wl - low) / (high - low);
        f = (1 - sm) * (f / factor) + sm * f;
      }
    }
    out[i] = f;
  }
  return out;
}

/** Upload an inv_freq table as a [D/2] tensor (once per model; shared by every layer's q and k). */
export function ropeInvFreqTensor(ctx: GpuContext, invFreq: Float32Array, label = 'rope.inv_freq'): GpuTensor {
  return ctx.tensor([invFreq.length], { role: 'weights', label, data: invFreq });
}

export interface RopeSizes {
  /** B, T, NH, D of x ([B, T, NH, D]). */
  batch: number;
  seqLen: number;
  heads: number;
  headDim: number;
  /** Position of token t = 0 (the KV-cache length when decoding); default 0. */
  posOffset?: number;
}

function dispatchRope(spec: KernelSpec, batch: CommandBatch, x: GpuTensor, invFreq: GpuTensor, s: RopeSizes, xName: string): void {
  const kernel = spec.entry;
  const { batch: B, seqLen: T, heads: NH, headDim: D } = s;
  const posOffset = s.posOffset ?? 0;
  if (D % 2 !== 0 || D < 2) throw new KernelArgumentError(kernel, `head dim ${D} must be even`);
  if (!Number.isInteger(posOffset) || posOffset < 0) throw new KernelArgumentError(kernel, `posOffset ${posOffset} must be a non-negative integer`);
  if (posOffset + T > 1 << 24) throw new KernelArgumentError(kernel, `positions up to ${posOffset + T} are not exact in f32`);
  expectNumel(kernel, xName, x, B * T * NH * D, `[B=${B}, T=${T}, NH=${NH}, D=${D}]`);
  expectNumel(kernel, 'invFreq', invFreq, D / 2, 'D/2');
  const n = B * T * NH * (D / 2);
  if (n === 0) return;
  const p = params().u32(n).u32(T).u32(NH).u32(D / 2).u32(posOffset).bytes();
  batch.dispatch(spec, { params: p, tensors: [x, invFreq], grid: grid1d(n, WG) });
}

/** x ← RoPE(x), in place. x: [B, T, NH, D]; invFreq: [D/2]. */
export function ropeForward(batch: CommandBatch, x: GpuTensor, invFreq: GpuTensor, sizes: RopeSizes): void {
  dispatchRope(ROPE_FORWARD, batch, x, invFreq, sizes, 'x');
}

/** d ← RoPEᵀ(d), in place: holds dy (gradient of the rotated tensor) on entry, dx on exit (=). */
export function ropeBackward(batch: CommandBatch, d: GpuTensor, invFreq: GpuTensor, sizes: RopeSizes): void {
  dispatchRope(ROPE_BACKWARD, batch, d, invFreq, sizes, 'd');
}

