// One comparison for every kernel test: |a − b| ≤ atol + rtol·|b| elementwise, with a report of the
// worst element and the first mismatches when it fails.
//
// Stated tolerances (f32 on the GPU vs float64 reference):
//   elementwise ops:            rtol 1e-5, atol 1e-6
//   reductions, matmul, norms:  rtol 1e-4, atol 1e-5 (scaled by the magnitude of the inputs where noted)
export const TOL_ELEMENTWISE = { rtol: 1e-5, atol: 1e-6 };
export const TOL_REDUCTION = { rtol: 1e-4, atol: 1e-5 };

export interface Tolerance {
  rtol: number;
  atol: number;
}

export function compare(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
): { ok: boolean; report: string; maxAbs: number; maxRel: number } {
  if (actual.length !== expected.length) {
    return { ok: false, report: `length ${actual.length} != expected ${expected.length}`, maxAbs: Infinity, maxRel: Infinity };
  }
  let maxAbs = 0;
  let maxRel = 0;
  let worst = -1;
  let worstExcess = -Infinity;
  const bad: string[] = [];
  let nBad = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const b = expected[i];
    const d = Math.abs(a - b);
    const lim = tol.atol + tol.rtol * Math.abs(b);
    if (!(d <= lim)) {
      nBad++;
      if (bad.length < 8) bad.push(`  [${i}] got ${a}, want ${b} (|diff| ${d.toExponential(3)} > ${lim.toExponential(3)})`);
    }
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? NaN : d;
    const rel = d / Math.max(Math.abs(b), 1e-30);
    if (Math.abs(b) > tol.atol && rel > maxRel) maxRel = rel;
    if (d - lim > worstExcess || Number.isNaN(d)) {
      worstExcess = Number.isNaN(d) ? Infinity : d - lim;
      worst = i;
    }
  }
  const head = `max |diff| ${maxAbs.toExponential(3)}, max rel ${maxRel.toExponential(3)} (rtol ${tol.rtol}, atol ${tol.atol}), worst at [${worst}]`;
  return {
    ok: nBad === 0,
    report: nBad === 0 ? head : `${nBad}/${actual.length} elements out of tolerance; ${head}\n${bad.join('\n')}`,
    maxAbs,
    maxRel,
  };
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, label = ''): void {
  const r = compare(actual, expected, tol);
  if (!r.ok) throw new Error(`${label ? `${label}: ` : ''}${r.report}`);
}
