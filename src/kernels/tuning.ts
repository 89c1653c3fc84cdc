// Per-adapter variant selection. A kernel with several implementations (tile sizes, with or without
// workgroup memory, with or without subgroups) lists them in a table; the tuner measures every
// variant the adapter supports once, on a representative problem, and remembers the fastest per
// adapter (GpuContext.adapterKey) in memory, plus through an optional store (e.g. IndexedDB or a JSON
// file) so the next session skips the measurement. Before it is timed, each variant's result is
// checked on a small problem; a variant that fails to compile or computes a wrong answer is never
// chosen. Until a kernel is tuned, `choice` returns the first supported variant in table order.

import { KernelArgumentError, KernelCompileError, type GpuContext } from '../gpu';

export interface Variant {
  readonly name: string;
  /** Optional device features the variant's shader needs (e.g. 'subgroups'). */
  readonly features: readonly string[];
}

/** One timed workload for one variant. */
export interface Trial {
  /** Record and submit one run (the tuner awaits ctx.onDone() around it). */
  run(): Promise<void>;
  /** Release the trial's tensors. */
  dispose(): void;
}

export interface TuningRecord {
  kernel: string;
  adapterKey: string;
  /** The chosen variant. */
  variant: string;
  /** What was timed (for the log). */
  workload: string;
  /** Best (lowest) seconds per run for each measured variant. */
  seconds: Record<string, number>;
  /** Variants left out, with the reason (unsupported feature, compile error, wrong result). */
  rejected: Record<string, string>;
  /** ISO time of the measurement. */
  measuredAt: string;
}

/** Where tuning records persist between sessions (optional). */
export interface TuningStore {
  load(kernel: string, adapterKey: string): Promise<TuningRecord | undefined>;
  save(record: TuningRecord): Promise<void>;
}

export interface TuneOptions {
  store?: TuningStore;
  /** Measure again even if a record exists (in memory or in the store). */
  force?: boolean;
  /** Timed rounds (each runs every variant once, after one warm-up each); default 3. */
  reps?: number;
}

export interface TunerConfig<V extends Variant> {
  kernel: string;
  variants: readonly V[];
  /** Description of the timed workload, stored in the record. */
  workload: string;
  /** Run the variant on a small problem and return what is wrong with its result, or null. */
  check(ctx: GpuContext, variant: V): Promise<string | null>;
  /** Allocate and prepare the timed workload for a variant. */
  trial(ctx: GpuContext, variant: V): Trial;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Time `run` (awaiting the GPU each time): one warm-up, then the median of `reps` runs, in seconds. */
export async function timeRuns(ctx: GpuContext, run: () => Promise<void>, reps: number, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) {
    await run();
    await ctx.onDone();
  }
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await run();
    await ctx.onDone();
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

export class VariantTuner<V extends Variant> {
  private readonly records = new Map<string, TuningRecord>();
  private readonly pending = new Map<string, Promise<TuningRecord>>();

  constructor(private readonly config: TunerConfig<V>) {}

  get variants(): readonly V[] {
    return this.config.variants;
  }

  supported(ctx: GpuContext): V[] {
    return this.config.variants.filter((v) => v.features.every((f) => ctx.features.has(f)));
  }

  byName(name: string): V {
    const v = this.config.variants.find((x) => x.name === name);
    if (!v) {
      const names = this.config.variants.map((x) => x.name).join(', ');
      throw new KernelArgumentError(this.config.kernel, `no variant named '${name}' (have: ${names})`);
    }
    return v;
  }

  /** The tuning record for this adapter, if measured (or loaded) in this session. */
  record(ctx: GpuContext): TuningRecord | undefined {
    return this.records.get(ctx.adapterKey);
  }

  /** The variant to use now: the measured choice, else the first supported one in table order. */
  choice(ctx: GpuContext): V {
    const rec = this.records.get(ctx.adapterKey);
    if (rec) return this.byName(rec.variant);
    const first = this.supported(ctx)[0];
    if (!first) {
      throw new KernelCompileError(this.config.kernel, `no variant runs on this adapter (features: ${[...ctx.features].join(', ')})`);
    }
    return first;
  }

  /** Measure (once per adapter; concurrent callers share the measurement) and remember the fastest. */
  tune(ctx: GpuContext, options: TuneOptions = {}): Promise<TuningRecord> {
    const key = ctx.adapterKey;
    if (!options.force) {
      const hit = this.records.get(key);
      if (hit) return Promise.resolve(hit);
      const inFlight = this.pending.get(key);
      if (inFlight) return inFlight;
    }
    const p = this.measureOrLoad(ctx, options).finally(() => this.pending.delete(key));
    this.pending.set(key, p);
    return p;
  }

  private async measureOrLoad(ctx: GpuContext, options: TuneOptions): Promise<TuningRecord> {
    const { kernel } = this.config;
    if (options.store && !options.force) {
      const stored = await options.store.load(kernel, ctx.adapterKey);
      if (stored && this.config.variants.some((v) => v.name === stored.variant)) {
        this.records.set(ctx.adapterKey, stored);
        return stored;
      }
    }
    const seconds: Record<string, number> = {};
    const rejected: Record<string, string> = {};
    const trials = new Map<string, Trial>();
    const fail = (v: V, e: unknown): void => {
      if (ctx.isLost) throw e;
      rejected[v.name] = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    };
    try {
      for (const v of this.config.variants) {
        const missing = v.features.filter((f) => !ctx.features.has(f));
        if (missing.length) {
          rejected[v.name] = `adapter lacks ${missing.join(', ')}`;
          continue;
        }
        try {
          const problem = await this.config.check(ctx, v);
          if (problem) {
            rejected[v.name] = `wrong result: ${problem}`;
            continue;
          }
          const trial = this.config.trial(ctx, v);
          trials.set(v.name, trial);
          await trial.run(); // warm-up (compiles the pipeline)
          await ctx.onDone();
        } catch (e) {
          fail(v, e);
        }
      }
      // Rounds over all variants, each variant scored by its best time: other work sharing the
      // machine (a CPU adapter, a busy GPU) only ever adds time, and interleaving spreads it out.
      for (let round = 0; round < (options.reps ?? 3); round++) {
        for (const v of this.config.variants) {
          const trial = trials.get(v.name);
          if (!trial || rejected[v.name]) continue;
          try {
            const t0 = performance.now();
            await trial.run();
            await ctx.onDone();
            const t = (performance.now() - t0) / 1000;
            seconds[v.name] = Math.min(seconds[v.name] ?? Infinity, t);
          } catch (e) {
            fail(v, e);
            delete seconds[v.name];
          }
        }
      }
    } finally {
      for (const t of trials.values()) t.dispose();
    }
    const ranked = Object.entries(seconds).sort((x, y) => x[1] - y[1]);
    if (!ranked.length) {
      throw new KernelCompileError(kernel, `every variant failed on this adapter: ${JSON.stringify(rejected)}`);
    }
    const record: TuningRecord = {
      kernel,
      adapterKey: ctx.adapterKey,
      variant: ranked[0][0],
      workload: this.config.workload,
      seconds,
      rejected,
      measuredAt: new Date().toISOString(),
    };
    this.records.set(ctx.adapterKey, record);
    if (options.store) await options.store.save(record);
    return record;
  }
}
