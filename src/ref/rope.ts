// float64 reference: rotary position embedding, Hugging Face half-split convention (peft-spec §6.1).
//   inv_freq[i] = 1/θ^(2i/D), i < D/2;  angle_i = pos·inv_freq[i];  emb = cat(angle, angle)
//   y = x·cos(emb) + rotate_half(x)·sin(emb),  rotate_half(x) = cat(−x[D/2:], x[:D/2])
// x is [B, T, NH, D] (B batch, T tokens, NH heads, D head dim); token t has position posOffset + t.
// y = R(pos)·x with R orthogonal, so dx = R(pos)ᵀ·dy = R(−pos)·dy.

export interface RopeShape {
  batch: number;
  seqLen: number;
  heads: number;
  headDim: number;
  posOffset?: number;
}

/** HF llama3 `rope_scaling` fields. */
export interface Llama3Scaling {
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}

export function ropeInvFreq(headDim: number, theta: number): Float64Array {
  const out = new Float64Array(headDim / 2);
  for (let i = 0; i < out.length; i++) out[i] = Math.pow(theta, -(2 * i) / headDim);
  return out;
}

/**
 * llama3 rope scaling (HF `_compute_llama3_parameters`), from the wavelength wl = 2π/f of each
 * frequency: long wavelengths (wl > old_ctx/low_freq_factor) are slowed by `factor`, short ones
 * (wl < old_ctx/high_freq_factor) are untouched, and in between f is interpolated linearly in
 * old_ctx/wl between f/factor and f.
 */
export function llama3InvFreq(invFreq: Float64Array, s: Llama3Scaling): Float64Array {
  const oldCtx = s.original_max_position_embeddings;
  const lowWavelen = oldCtx / s.low_freq_factor;
  const highWavelen = oldCtx / s.high_freq_factor;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (oldCtx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

function rotate(x: Float64Array, invFreq: ArrayLike<number>, shape: RopeShape, sign: 1 | -1): Float64Array {
  const { batch, seqLen, heads, headDim } = shape;
  const half = headDim / 2;
  const y = new Float64Array(x.length);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seqLen; t++) {
      const pos = (shape.posOffset ?? 0) + t;
      for (let h = 0; h < heads; h++) {
        const base = ((b * seqLen + t) * heads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const angle = sign * pos * invFreq[i];
          const c = Math.cos(angle);
          const s = Math.sin(angle);
          // y = x·cos + rotate_half(x)·sin, elementwise over the two halves.
          y[base + i] = x[base + i] * c - x[base + half + i] * s;
          y[base + half + i] = x[base + half + i] * c + x[base + i] * s;
        }
      }
    }
  }
  return y;
}

export function ropeForward(x: Float64Array, invFreq: ArrayLike<number>, shape: RopeShape): Float64Array {
  return rotate(x, invFreq, shape, 1);
}

/** dx = R(pos)ᵀ·dy: the rotation by −angle. */
export function ropeBackward(dy: Float64Array, invFreq: ArrayLike<number>, shape: RopeShape): Float64Array {
  return rotate(dy, invFreq, shape, -1);
}
