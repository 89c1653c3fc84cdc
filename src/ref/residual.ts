// float64 reference: residual add. y = a + b; dy/da = dy/db = identity.
export function residualForward(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** Gradients of y = a + b: both inputs receive dy unchanged. */
export function residualBackward(dy: Float64Array): { da: Float64Array; db: Float64Array } {
  return { da: Float64Array.from(dy), db: Float64Array.from(dy) };
}
