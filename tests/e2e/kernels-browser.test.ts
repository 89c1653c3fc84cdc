// The same WGSL files run in the browser host (navigator.gpu in headless Chromium) and match the
// float64 references: proves src/gpu/browser.ts and the Vite-bundled shaders.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchBrowser, serveDev } from './harness';

describe('kernels in headless Chromium (navigator.gpu)', () => {
  let browser: Browser;
  let site: { url: string; close: () => Promise<void> };
  beforeAll(async () => {
    site = await serveDev();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  it('residual_forward (and the other page checks) match the references', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(new URL('tests/e2e/pages/kernels.html', site.url).href);
    await page.waitForFunction(() => (window as unknown as { __kernelResults?: unknown }).__kernelResults, null, {
      timeout: 120_000,
    });
    const { adapter, results } = (await page.evaluate(
      () => (window as unknown as { __kernelResults: unknown }).__kernelResults,
    )) as { adapter: string; results: { kernel: string; ok: boolean; report: string }[] };
    expect(adapter).toMatch(/swiftshader/);
    expect(errors).toEqual([]);
    for (const r of results) expect(r.ok, `${r.kernel}: ${r.report}`).toBe(true);
    expect(results.map((r) => r.kernel)).toEqual(['residual_forward', 'rmsnorm_forward', 'attention_forward']);
  });
});
