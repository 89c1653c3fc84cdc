// Runs real WGSL kernels through navigator.gpu (the browser host: src/gpu/browser.ts, shaders
// bundled by Vite) and compares them with the float64 references. tests/e2e/kernels-browser.test.ts
// reads `window.__kernelResults`.
import { acquireBrowserContext } from '../../../src/gpu/browser';
import type { GpuContext } from '../../../src/gpu';
import { residualForward } from '../../../src/kernels/residual';
import * as residualRef from '../../../src/ref/residual';
import { attentionForward } from '../../../src/kernels/attention';
import { rmsnormForward } from '../../../src/kernels/rmsnorm';
import * as attentionRef from '../../../src/ref/attention';
import * as rmsnormRef from '../../../src/ref/rmsnorm';
import { compare, TOL_ELEMENTWISE, TOL_REDUCTION } from '../../helpers/compare';
import { uniform } from '../../helpers/random';

interface Result {
  kernel: string;
  ok: boolean;
  report: string;
}

async function residual(c: GpuContext): Promise<Result> {
  const n = 1000;
  const a = uniform(n, 11);
  const b = uniform(n, 12);
  const out = c.tensor([n]);
  await c.run((batch) =>
    residualForward(batch, out, c.tensor([n], { data: Float32Array.from(a) }), c.tensor([n], { data: Float32Array.from(b) })),
  );
  const r = compare(await c.readF32(out), residualRef.residualForward(a, b), TOL_ELEMENTWISE);
  return { kernel: 'residual_forward', ok: r.ok, report: r.report };
}

const up = (c: GpuContext, x: Float64Array, shape: number[]) => c.tensor(shape, { data: Float32Array.from(x) });

async function rmsnorm(c: GpuContext): Promise<Result> {
  const [N, C] = [5, 67];
  const x = uniform(N * C, 21);
  const w = uniform(C, 22);
  const out = c.tensor([N, C]);
  const rstd = c.tensor([N]);
  await c.run((batch) => rmsnormForward(batch, out, rstd, up(c, x, [N, C]), up(c, w, [C]), N, C, 1e-5));
  const want = rmsnormRef.rmsnormForward(x, w, N, C, 1e-5);
  const r = compare(await c.readF32(out), want.out, TOL_REDUCTION);
  return { kernel: 'rmsnorm_forward', ok: r.ok, report: r.report };
}

async function attention(c: GpuContext): Promise<Result> {
  const shape = { batch: 2, seqLen: 9, heads: 4, kvHeads: 2, headDim: 6 };
  const q = uniform(2 * 9 * 4 * 6, 31);
  const k = uniform(2 * 9 * 2 * 6, 32);
  const v = uniform(2 * 9 * 2 * 6, 33);
  const out = c.tensor([2, 9, 4, 6]);
  const lse = c.tensor([2, 9, 4]);
  await c.run((batch) =>
    attentionForward(batch, out, lse, up(c, q, [2, 9, 4, 6]), up(c, k, [2, 9, 2, 6]), up(c, v, [2, 9, 2, 6]), shape),
  );
  const want = attentionRef.attentionForward(q, k, v, shape);
  const r = compare(await c.readF32(out), want.out, TOL_REDUCTION);
  return { kernel: 'attention_forward', ok: r.ok, report: r.report };
}

async function main(): Promise<void> {
  const results: Result[] = [];
  let adapter = '';
  try {
    const c = await acquireBrowserContext();
    adapter = `${c.summary.vendor} ${c.summary.architecture}`;
    for (const check of [residual, rmsnorm, attention]) results.push(await check(c));
  } catch (e) {
    results.push({ kernel: 'setup', ok: false, report: `${(e as Error).name}: ${(e as Error).message}` });
  }
  (window as unknown as { __kernelResults: unknown }).__kernelResults = { adapter, results };
  document.getElementById('out')!.textContent = JSON.stringify({ adapter, results }, null, 2);
}

void main();
