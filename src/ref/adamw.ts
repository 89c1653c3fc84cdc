// float64 reference: torch.optim.AdamW (peft-spec §7.1), one step t (1-based, already incremented):
//   g = grad · clipCoef
//   θ ← θ·(1 − lr·λ)                                   decoupled weight decay, applied first
//   m ← β1·m + (1−β1)·g
//   v ← β2·v + (1−β2)·g²
//   θ ← θ − (lr/(1−β1^t)) · m / (√v/√(1−β2^t) + ε)     ε added after the bias correction of √v

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

export interface AdamWState {
  param: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** One AdamW step; returns the new state (inputs are not modified). */
export function adamwStep(s: AdamWState, grad: Float64Array, h: AdamWHyper, clipCoef = 1): AdamWState {
  const n = s.param.length;
  const param = new Float64Array(n);
  const m = new Float64Array(n);
  const v = new Float64Array(n);
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < n; i++) {
    const g = grad[i] * clipCoef;
    const theta = s.param[i] * (1 - h.lr * h.weightDecay);
    m[i] = h.beta1 * s.m[i] + (1 - h.beta1) * g;
    v[i] = h.beta2 * s.v[i] + (1 - h.beta2) * g * g;
    const mHat = m[i] / bc1;
    const denom = Math.sqrt(v[i]) / Math.sqrt(bc2) + h.eps;
    param[i] = theta - h.lr * (mHat / denom);
  }
  return { param, m, v };
}
