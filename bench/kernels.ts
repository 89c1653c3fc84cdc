// npm run bench:kernels — our matmul against TensorFlow.js's WebGPU tf.matMul and against an FMA-bound
// ceiling kernel (bench/fma_ceiling.wgsl), all on the same adapter in one process. Prints a table with
// the ratios ours/tfjs and ours/ceiling and writes bench-results/kernels.json.
//
// Timing: one warm-up run, then the median of --reps runs. Ours and the ceiling: each run is one queue
// submission awaited with ctx.onDone(). tfjs: each run is tf.matMul awaited with result.data() (so it
// also reads C back, which is small next to the multiply at these sizes). GFLOP/s = 2·M·N·K / seconds.
// Each row measures the ceiling, ours and tfjs back to back, and its ceiling is the higher of the
// measurements before and after it (so ours/ceiling is the conservative ratio).
//
// On a CPU adapter (SwiftShader) other processes compete for the same cores and wall-clock figures
// swing by 3× within seconds. The GPU work then runs on this process's own threads, so a second table
// uses process CPU time ÷ the cores available ("as if the machine were idle"), which is what the
// ratios should be read from when the machine is busy. Both tables are in the JSON.
//
//   npm run bench:kernels -- [--reps 5] [--tfjs-reps 3] [--layouts NN,NT] [--all-variants] [--quick] [--no-tfjs]

import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GpuContext, GpuTensor } from '../src/gpu';
import { fmaCeiling } from './ceiling';
import { acquireNodeContext } from '../src/gpu/node';
import { matmul, supportedMatmulVariants, tuneMatmul, type MatmulVariantName } from '../src/kernels/matmul';
import { median } from '../src/kernels/tuning';

const HERE = dirname(fileURLToPath(import.meta.url));
const CORES = availableParallelism();

interface Shape {
  m: number;
  k: number;
  n: number;
}
interface Layout {
  name: string;
  transA: boolean;
  transB: boolean;
}

const SHAPES: Shape[] = [
  { m: 64, k: 576, n: 1536 },
  { m: 512, k: 576, n: 1536 },
  { m: 512, k: 768, n: 2304 },
];
const LAYOUTS: Record<string, Layout> = {
  NN: { name: 'NN', transA: false, transB: false },
  NT: { name: 'NT', transA: false, transB: true },
  TN: { name: 'TN', transA: true, transB: false },
};

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);

const REPS = Number(arg('reps') ?? 5);
const TFJS_REPS = Number(arg('tfjs-reps') ?? 3);
const layouts = (arg('layouts') ?? 'NN,NT').split(',').map((l) => {
  const x = LAYOUTS[l.trim().toUpperCase()];
  if (!x) throw new Error(`unknown layout ${l} (NN, NT, TN)`);
  return x;
});
const shapes = flag('quick') ? SHAPES.slice(0, 1) : SHAPES;

const key = (s: Shape, l: Layout): string => `${s.m}x${s.k}x${s.n} ${l.name}`;

/** Median seconds of a run: wall clock, and process CPU time ÷ cores (meaningful on a CPU adapter). */
interface Timing {
  wall: number;
  cpu: number;
}

/** One warm-up, then the medians of `reps` runs; `run` must resolve when the work is finished. */
async function measure(run: () => Promise<void>, reps: number, warmup = 1): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await run();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await run();
    wall.push((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6 / CORES);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

function randomData(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x / 2 ** 31 - 1;
  }
  return out;
}

// ------------------------------------------------------------------ FMA ceiling

interface Rate {
  wall: number;
  cpu: number;
}
const rate = (flop: number, t: Timing): Rate => ({ wall: flop / t.wall / 1e9, cpu: flop / t.cpu / 1e9 });
const matmulFlop = (s: Shape): number => 2 * s.m * s.n * s.k;

/** GFLOP/s of fma_ceiling (16-deep loop body) or fma_ceiling_shallow (4-deep, for context). */
async function measureCeiling(ctx: GpuContext, entryPoint: 'fma_ceiling' | 'fma_ceiling_shallow' = 'fma_ceiling'): Promise<Rate> {
  const ceiling = await fmaCeiling(ctx.device, entryPoint);
  // Grow the loop count until one run takes ≥ 0.2 s (SwiftShader: ~200 trips; a GPU: far more).
  let iters = 16;
  for (;;) {
    const t = await measure(() => ceiling.dispatch(iters), 1, 1);
    if (t.wall >= 0.2 || iters >= 1 << 24) break;
    iters = Math.min(1 << 24, Math.ceil(iters * Math.max(2, Math.min(16, 0.3 / Math.max(t.wall, 1e-4)))));
  }
  const t = await measure(() => ceiling.dispatch(iters), REPS);
  ceiling.destroy();
  return rate(ceiling.flop(iters), t);
}

// ------------------------------------------------------------------ ours

async function timeOurs(ctx: GpuContext, s: Shape, l: Layout, variant?: MatmulVariantName): Promise<Timing> {
  const a = ctx.tensor(l.transA ? [s.k, s.m] : [s.m, s.k], { label: 'a', data: randomData(s.m * s.k, 1) });
  const b = ctx.tensor(l.transB ? [s.n, s.k] : [s.k, s.n], { label: 'b', data: randomData(s.k * s.n, 2) });
  const c: GpuTensor = ctx.tensor([s.m, s.n], { label: 'c' });
  try {
    return await measure(async () => {
      await ctx.run((batch) => matmul(batch, c, a, b, { ...s, transA: l.transA, transB: l.transB, variant }));
      await ctx.onDone();
    }, REPS);
  } finally {
    for (const t of [a, b, c]) ctx.release(t);
  }
}

// ------------------------------------------------------------------ TensorFlow.js

// The webgpu package's GPU object must stay referenced while in use (Dawn's instance is freed with it).
let tfjsGpu: unknown = null;

type TimeTfjs = (s: Shape, l: Layout) => Promise<Timing>;

/** Start TensorFlow.js on its own WebGPU device (same adapter); returns a timer for one matmul case. */
async function setupTfjs(): Promise<TimeTfjs> {
  const { create } = (await import('webgpu')) as unknown as { create: (o: string[]) => GPU };
  tfjsGpu = create([]);
  // tfjs registers its WebGPU backend at import time only if navigator.gpu exists.
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: tfjsGpu }, configurable: true, writable: true });
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialise');
  await tf.ready();
  return async (s, l) => {
    const a = tf.tensor(randomData(s.m * s.k, 1), l.transA ? [s.k, s.m] : [s.m, s.k]);
    const b = tf.tensor(randomData(s.k * s.n, 2), l.transB ? [s.n, s.k] : [s.k, s.n]);
    try {
      return await measure(async () => {
        const r = tf.matMul(a, b, l.transA, l.transB);
        await r.data();
        r.dispose();
      }, TFJS_REPS);
    } finally {
      a.dispose();
      b.dispose();
    }
  };
}

// ------------------------------------------------------------------ main

function fmt(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits);
}

interface Row {
  shape: Shape;
  layout: string;
  ours: Rate;
  tfjs?: Rate;
  ceiling: Rate;
  perVariant: Record<string, Rate>;
}

function printTable(rows: Row[], clock: 'wall' | 'cpu', variant: string): void {
  const header = ['shape MxKxN', 'layout', `ours (${variant})`, 'tf.matMul', 'FMA ceiling', 'ours/tfjs', 'ours/ceiling'];
  const table = [
    header,
    ...rows.map((r) => [
      `${r.shape.m}x${r.shape.k}x${r.shape.n}`,
      r.layout,
      `${fmt(r.ours[clock])} GFLOP/s`,
      r.tfjs ? `${fmt(r.tfjs[clock], 3)} GFLOP/s` : '—',
      `${fmt(r.ceiling[clock])} GFLOP/s`,
      r.tfjs ? `${fmt(r.ours[clock] / r.tfjs[clock], 1)}×` : '—',
      `${fmt((100 * r.ours[clock]) / r.ceiling[clock], 0)}%`,
    ]),
  ];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const [i, row] of table.entries()) {
    console.log(row.map((cell, j) => cell.padEnd(widths[j])).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

async function main(): Promise<void> {
  const ctx = await acquireNodeContext({ label: 'bench' });
  const s = ctx.summary;
  const cpuAdapter = s.isFallbackAdapter || Boolean(process.env.WEBTUNE_WEBGPU_FALLBACK);
  const adapter = `${s.vendor} ${s.architecture} ${s.description}`.trim() + (s.isFallbackAdapter ? ' (fallback adapter)' : '');
  console.log(`adapter: ${adapter}; features: ${s.features.join(', ')}`);
  if (process.env.WEBTUNE_WEBGPU_FALLBACK) console.log(`(no GPU: running on the ${process.env.WEBTUNE_WEBGPU_FALLBACK} CPU fallback, ${CORES} cores)`);

  const tuning = await tuneMatmul(ctx);
  const tuneFlop = matmulFlop({ m: 256, k: 256, n: 256 });
  console.log(`\nmatmul variants on the tuning workload (${tuning.workload}, best of 3):`);
  for (const [name, sec] of Object.entries(tuning.seconds)) {
    const g = (tuneFlop / sec / 1e9).toFixed(2).padStart(7);
    console.log(`  ${name.padEnd(14)} ${g} GFLOP/s${name === tuning.variant ? '   <- chosen' : ''}`);
  }
  for (const [name, why] of Object.entries(tuning.rejected)) console.log(`  ${name.padEnd(14)} not used: ${why}`);

  let timeTfjs: TimeTfjs | null = null;
  let tfjsError = '';
  if (!flag('no-tfjs')) {
    try {
      timeTfjs = await setupTfjs();
    } catch (e) {
      tfjsError = e instanceof Error ? e.message : String(e);
      console.log(`tfjs failed to start: ${tfjsError}`);
    }
  }

  // Each case measures the ceiling, ours and tfjs back to back, so a change in the machine's load
  // hits all three alike; the row's ceiling is the higher of the measurements before and after it.
  const cases = shapes.flatMap((sh) => layouts.map((l) => ({ s: sh, l })));
  const variants = flag('all-variants') ? supportedMatmulVariants(ctx).map((v) => v.name as MatmulVariantName) : [];
  const ceilings: Rate[] = [];
  const measured: Omit<Row, 'ceiling'>[] = [];
  console.log('\nGFLOP/s, wall clock (CPU time ÷ cores in brackets):');
  for (const { s: sh, l } of cases) {
    ceilings.push(await measureCeiling(ctx));
    const flop = matmulFlop(sh);
    const ours = rate(flop, await timeOurs(ctx, sh, l));
    const perVariant: Record<string, Rate> = {};
    for (const v of variants) perVariant[v] = rate(flop, await timeOurs(ctx, sh, l, v));
    let tfjs: Rate | undefined;
    if (timeTfjs) {
      try {
        tfjs = rate(flop, await timeTfjs(sh, l));
      } catch (e) {
        tfjsError = e instanceof Error ? e.message : String(e);
      }
    }
    measured.push({ shape: sh, layout: l.name, ours, tfjs, perVariant });
    const both = (r: Rate | undefined, d = 2): string => (r ? `${r.wall.toFixed(d)} (${r.cpu.toFixed(d)})` : '—');
    const extra = variants.length ? '  [' + variants.map((v) => `${v} ${both(perVariant[v])}`).join(', ') + ']' : '';
    console.log(`  ${key(sh, l)}: ceiling ${both(ceilings.at(-1))}, ours ${both(ours)}, tfjs ${both(tfjs, 3)}${extra}`);
  }
  ceilings.push(await measureCeiling(ctx));
  const shallow = await measureCeiling(ctx, 'fma_ceiling_shallow');
  const rows: Row[] = measured.map((r, i) => ({
    ...r,
    ceiling: {
      wall: Math.max(ceilings[i].wall, ceilings[i + 1].wall),
      cpu: Math.max(ceilings[i].cpu, ceilings[i + 1].cpu),
    },
  }));

  const range = (c: 'wall' | 'cpu'): string =>
    `${Math.min(...ceilings.map((x) => x[c])).toFixed(2)} … ${Math.max(...ceilings.map((x) => x[c])).toFixed(2)}`;
  console.log(`\nFMA ceiling over the run: ${range('wall')} GFLOP/s wall clock, ${range('cpu')} by CPU time`);
  console.log(`(for context: the same FMA chains with a 4-deep loop body: ${shallow.wall.toFixed(2)} wall, ${shallow.cpu.toFixed(2)} CPU time)`);
  console.log('\nwall clock:');
  printTable(rows, 'wall', tuning.variant);
  if (cpuAdapter) {
    console.log(`\nCPU time ÷ ${CORES} cores (the adapter runs on this process's threads; robust to other processes):`);
    printTable(rows, 'cpu', tuning.variant);
  }

  const outDir = join(HERE, '..', 'bench-results');
  mkdirSync(outDir, { recursive: true });
  const result = {
    date: new Date().toISOString(),
    adapter: { ...s, limits: undefined, fallbackEnv: process.env.WEBTUNE_WEBGPU_FALLBACK ?? null, cores: CORES },
    method: {
      reps: REPS,
      tfjsReps: TFJS_REPS,
      timing:
        'median of reps after one warm-up; ours/ceiling: submit + ctx.onDone(); tfjs: tf.matMul + await data(); ' +
        'per row: ceiling, ours, tfjs measured back to back; row ceiling = max of the measurements before and after',
      clocks: 'wall = wall clock; cpu = process CPU time ÷ cores (meaningful on a CPU adapter only)',
      gflops: '2·M·N·K / seconds; ceiling: 2·4·fmas / seconds',
    },
    tuning,
    ceiling: { measurements: ceilings, shallowLoopBody: shallow },
    rows: rows.map((r) => ({
      m: r.shape.m,
      k: r.shape.k,
      n: r.shape.n,
      layout: r.layout,
      oursVariant: tuning.variant,
      ours: r.ours,
      tfjs: r.tfjs ?? null,
      ceiling: r.ceiling,
      oursOverTfjs: r.tfjs ? { wall: r.ours.wall / r.tfjs.wall, cpu: r.ours.cpu / r.tfjs.cpu } : null,
      oursOverCeiling: { wall: r.ours.wall / r.ceiling.wall, cpu: r.ours.cpu / r.ceiling.cpu },
      perVariant: r.perVariant,
    })),
    tfjsError: tfjsError || null,
  };
  const file = join(outDir, 'kernels.json');
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${file}`);
  ctx.destroy();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
