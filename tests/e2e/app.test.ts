import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchBrowser, serveBuild } from './harness';

describe('app shell in headless Chromium (built site)', () => {
  let browser: Browser;
  let site: { url: string; close: () => Promise<void> };

  beforeAll(async () => {
    site = await serveBuild();
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  it('reports the WebGPU adapter, its features and limits', async () => {
    browser = await launchBrowser();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(site.url);
    await expect.poll(() => page.getByTestId('gpu-status').textContent(), { timeout: 60_000 }).toMatch(/WebGPU ready/);
    const status = await page.getByTestId('gpu-status').textContent();
    expect(status).toMatch(/swiftshader/i);
    expect(status).toMatch(/software \(CPU\) fallback/);
    const limits = await page.getByTestId('gpu-limits').textContent();
    expect(limits).toContain('maxStorageBufferBindingSize');
    expect(limits).toContain('maxComputeInvocationsPerWorkgroup');
    expect(await page.getByTestId('gpu-features').textContent()).toContain('subgroups');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('explains how to get WebGPU when the browser has none', async () => {
    const plain = await launchBrowser({ webgpu: false });
    try {
      const page = await plain.newPage();
      await page.goto(site.url);
      const status = page.getByTestId('gpu-status');
      await expect.poll(() => status.textContent(), { timeout: 60_000 }).toMatch(/No WebGPU here/);
      expect(await status.textContent()).toMatch(/Chrome or Edge 113\+/);
      expect(await page.getByRole('alert').count()).toBe(1);
    } finally {
      await plain.close();
    }
  });
});
