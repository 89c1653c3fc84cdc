// float64 reference: a bias added to every row, y[r, c] = x[r, c] + b[c] (x, y: [R, C], b: [C]).
// Gradients: dx = dy; db[c] = Σ_r dy[r, c].

export function biasForward(x: ArrayLike<number>, b: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c] + b[c];
  return y;
}

export function biasBackward(dy: ArrayLike<number>, rows: number, cols: number): { dx: Float64Array; db: Float64Array } {
  const db = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) db[c] += dy[r * cols + c];
  return { dx: Float64Array.from(dy), db };
}
