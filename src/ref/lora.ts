// float64 reference: the LoRA branch of a linear layer (peft-spec §1.2).
//   u = x_d · Aᵀ            x_d [N, IN], A [R, IN]  → u [N, R]
//   y_lora = s · u · Bᵀ     B [OUT, R]              → [N, OUT]   (the layer output is base + y_lora)
// Backward, with g = ∂L/∂y:
//   ∂L/∂B = s · gᵀ u        ∂L/∂u = s · g B        ∂L/∂A = (∂L/∂u)ᵀ x_d        ∂L/∂x_d = (∂L/∂u) A
// (With dropout, ∂L/∂x = mask/(1−p) ⊙ ∂L/∂x_d.)

export interface LoraShape {
  n: number;
  inFeatures: number;
  outFeatures: number;
  rank: number;
}

/** C[M, P] = Σ_q L(m, q) · R(q, p) with element accessors. */
function matmul(m: number, p: number, q: number, l: (i: number, k: number) => number, r: (k: number, j: number) => number): Float64Array {
  const out = new Float64Array(m * p);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let k = 0; k < q; k++) s += l(i, k) * r(k, j);
      out[i * p + j] = s;
    }
  }
  return out;
}

/** The LoRA branch output (without the base layer) and the saved u. */
export function loraForward(
  xd: Float64Array,
  a: Float64Array,
  b: Float64Array,
  d: LoraShape,
  scale: number,
): { y: Float64Array; u: Float64Array } {
  const { n, inFeatures: IN, outFeatures: OUT, rank: R } = d;
  const u = matmul(n, R, IN, (i, k) => xd[i * IN + k], (k, j) => a[j * IN + k]);
  const y = matmul(n, OUT, R, (i, k) => u[i * R + k], (k, j) => b[j * R + k]).map((v) => scale * v);
  return { y, u };
}

export function loraBackward(
  dy: Float64Array,
  xd: Float64Array,
  a: Float64Array,
  b: Float64Array,
  u: Float64Array,
  d: LoraShape,
  scale: number,
): { du: Float64Array; dA: Float64Array; dB: Float64Array; dx: Float64Array } {
  const { n, inFeatures: IN, outFeatures: OUT, rank: R } = d;
  const dB = matmul(OUT, R, n, (o, t) => dy[t * OUT + o], (t, j) => u[t * R + j]).map((v) => scale * v);
  const du = matmul(n, R, OUT, (t, o) => dy[t * OUT + o], (o, j) => b[o * R + j]).map((v) => scale * v);
  const dA = matmul(R, IN, n, (j, t) => du[t * R + j], (t, k) => xd[t * IN + k]);
  const dx = matmul(n, IN, R, (t, j) => du[t * R + j], (j, k) => a[j * IN + k]);
  return { du, dA, dB, dx };
}
