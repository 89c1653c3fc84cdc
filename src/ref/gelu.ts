// float64 reference: GELU, tanh approximation (GPT-2's gelu_new, HF `NewGELUActivation`).
//   y = 0.5·x·(1 + tanh(k·(x + a·x³))),  k = √(2/π), a = 0.044715
//   dy/dx = 0.5·(1 + tanh t) + 0.5·x·(1 − tanh² t)·k·(1 + 3a·x²),  t = k·(x + a·x³)
// Math.tanh saturates to ±1 for large |t| (no overflow) in float64.
const K = Math.sqrt(2 / Math.PI);
const A = 0.044715;

export function geluForward(x: Float64Array): Float64Array {
  return x.map((v) => 0.5 * v * (1 + Math.tanh(K * (v + A * v ** 3))));
}

/** dx = dy · gelu'(x). */
export function geluBackward(dy: Float64Array, x: Float64Array): Float64Array {
  return x.map((v, i) => {
    const t = Math.tanh(K * (v + A * v ** 3));
    return dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * K * (1 + 3 * A * v * v));
  });
}
