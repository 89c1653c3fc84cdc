// Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup.
// λ(s) multiplies the base rate; optimizer update k (1-based) uses λ(k − 1), so with warmup the
// first update has learning rate 0, exactly as the Trainer does.
export type ScheduleName = 'constant' | 'linear' | 'cosine';

export function lrLambda(name: ScheduleName, s: number, warmup: number, total: number): number {
  if (s < warmup) return s / Math.max(1, warmup);
  switch (name) {
    case 'constant':
      return 1;
    case 'linear':
      return Math.max(0, (total - s) / Math.max(1, total - warmup));
    case 'cosine': {
      const p = (s - warmup) / Math.max(1, total - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * p)));
    }
  }
}

/** Learning rate of optimizer update number `update` (1-based). */
export function learningRate(base: number, name: ScheduleName, update: number, warmup: number, total: number): number {
  return base * lrLambda(name, update - 1, warmup, total);
}
