// Seeded test data (mulberry32): every test is reproducible.
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values uniform in [lo, hi), rounded to f32 so GPU and reference see identical inputs. */
export function uniform(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + (hi - lo) * r());
  return out;
}

/** n standard-normal values (Box–Muller), rounded to f32. */
export function normal(n: number, seed: number, std = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    out[i] = Math.fround(std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  return out;
}

export const f32 = (x: Float64Array | number[]): Float32Array => Float32Array.from(x);
export const f64 = (x: Float32Array | number[]): Float64Array => Float64Array.from(x);
