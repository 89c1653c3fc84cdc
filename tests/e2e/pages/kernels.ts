// Runs real WGSL kernels through navigator.gpu (the browser host: src/gpu/browser.ts, shaders
// bundled by Vite) and compares them with the float64 references. tests/e2e/kernels-browser.test.ts
// reads `window.__kernelResults`.
import { acquireBrowserContext } from '../../../src/gpu/browser';
import type { GpuContext } from '../../../src/gpu';
import { residualForward } from '../../../src/kernels/residual';
import * as residualRef from '../../../src/ref/residual';
import { compare, TOL_ELEMENTWISE } from '../../helpers/compare';
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

async function main(): Promise<void> {
  const results: Result[] = [];
  let adapter = '';
  try {
    const c = await acquireBrowserContext();
    adapter = `${c.summary.vendor} ${c.summary.architecture}`;
    for (const check of [residual]) results.push(await check(c));
  } catch (e) {
    results.push({ kernel: 'setup', ok: false, report: `${(e as Error).name}: ${(e as Error).message}` });
  }
  (window as unknown as { __kernelResults: unknown }).__kernelResults = { adapter, results };
  document.getElementById('out')!.textContent = JSON.stringify({ adapter, results }, null, 2);
}

void main();
