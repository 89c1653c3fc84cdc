// The production build is a static site that works offline after the first load of its model
// (service worker, public/sw.js), under a strict Content-Security-Policy.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, useBuiltSite } from './harness';

describe('offline and CSP (built site, headless Chromium)', () => {
  const env = useBuiltSite();

  it('index.html has a strict CSP and no inline script', () => {
    const html = readFileSync(join(root, 'dist', 'index.html'), 'utf8');
    const csp = /http-equiv="Content-Security-Policy"\s+content="([^"]+)"/.exec(html)?.[1] ?? '';
    expect(csp).toMatch(/script-src 'self';/);
    expect(csp).toMatch(/connect-src 'self' https:\/\/huggingface\.co/);
    expect(csp).not.toMatch(/unsafe-eval/);
    for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
      expect(m[1]).toMatch(/src=/);
      expect(m[2].trim()).toBe('');
    }
  });

  it('after one online visit that loads the demo model, the page, the model and generation work offline', async () => {
    const context = await env.browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(env.url);
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await page.reload(); // now controlled by the service worker
    await page.getByRole('button', { name: 'Load demo model' }).click();
    await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
    await context.setOffline(true);
    await page.reload();
    await expect.poll(() => page.getByTestId('gpu-status').textContent(), { timeout: 60_000 }).toMatch(/WebGPU ready/);
    await page.getByRole('button', { name: 'Load demo model' }).click();
    await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
    await page.getByLabel('Prompt').fill('Once upon a time');
    await page.getByLabel('Max new tokens').fill('6');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('gen-stats').textContent(), { timeout: 60_000 }).toMatch(/tokens\/s/);
    expect((await page.getByTestId('generated').textContent())?.length).toBeGreaterThan(0);
    await page.screenshot({ path: join(root, '.test-results', 'offline.png') }).catch(() => undefined);
    expect(errors).toEqual([]);
    await context.close();
  });
});
