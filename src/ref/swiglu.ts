// float64 reference: SwiGLU, out = silu(g)·u with silu(g) = g·σ(g) = g / (1 + e^{−g}).
//   ∂out/∂u = silu(g),  ∂out/∂g = u·(σ(g) + g·σ(g)·(1 − σ(g)))   (since σ' = σ·(1 − σ))
// In float64, e^{−g} for g ≪ 0 is at worst inf, and 1/(1 + inf) = 0: no NaN for finite g.
const sigmoid = (g: number): number => 1 / (1 + Math.exp(-g));

export function swigluForward(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => g * sigmoid(g) * up[i]);
}

export function swigluBackward(
  dOut: Float64Array,
  gate: Float64Array,
  up: Float64Array,
): { dGate: Float64Array; dUp: Float64Array } {
  const dGate = new Float64Array(gate.length);
  const dUp = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    const s = sigmoid(g);
    dUp[i] = dOut[i] * g * s;
    dGate[i] = dOut[i] * up[i] * (s + g * s * (1 - s));
  }
  return { dGate, dUp };
}
