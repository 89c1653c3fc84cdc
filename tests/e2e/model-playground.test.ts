// A person's first flows in the built app, in headless Chromium on SwiftShader WebGPU: load the demo
// model with one click and generate; load a checkpoint from a local Hub-shaped server (progress bar,
// then offline from IndexedDB after a reload); a folder with an unsupported architecture explains
// itself; the page stays responsive while generating and Stop stops.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';
import { root, useBuiltSite } from './harness';
import { serveHub } from './hub-server';

const SHOTS = process.env.WEBTUNE_SCREENSHOTS ?? join(root, '.test-results', 'screenshots');

/** Open the app and wait for WebGPU; collect page errors. */
async function openApp(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await expect.poll(() => page.getByTestId('gpu-status').textContent(), { timeout: 60_000 }).toMatch(/WebGPU ready/);
  return { page, errors };
}

async function setSampling(page: Page, s: { maxNewTokens: number; temperature?: number }): Promise<void> {
  await page.getByLabel('Max new tokens').fill(String(s.maxNewTokens));
  await page.getByLabel('Temperature').fill(String(s.temperature ?? 0));
}

const statsTokens = async (page: Page): Promise<number> => {
  const m = /(\d+) tokens ·/.exec((await page.getByTestId('gen-stats').textContent()) ?? '');
  return m ? Number(m[1]) : -1;
};

describe('model panel and playground in headless Chromium (built site)', () => {
  const env = useBuiltSite();

  it('loads the demo model with one click and generates text', async () => {
    const { page, errors } = await openApp(env.browser, env.url);
    await page.getByRole('button', { name: 'Load demo model' }).click();
    await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
    const info = (await page.getByTestId('model-info').textContent()) ?? '';
    expect(info).toContain('180,800');
    expect(info).toContain('chat template');
    expect(await page.getByTestId('memory-plan').textContent()).toMatch(/Weights.*KiB/);

    await page.getByLabel('Prompt').fill('Once upon a time');
    await setSampling(page, { maxNewTokens: 12 });
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => statsTokens(page), { timeout: 120_000 }).toBeGreaterThan(0);
    const n = await statsTokens(page);
    expect(n).toBeLessThanOrEqual(12);
    expect(await page.getByTestId('gen-stats').textContent()).toMatch(/tokens\/s/);
    const first = await page.getByTestId('generated').textContent();
    expect(first?.length).toBeGreaterThan(0);
    expect(await page.getByTestId('output').textContent()).toBe(`Once upon a time${first}`);

    // Greedy decoding is deterministic: the same prompt gives the same text.
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByRole('button', { name: 'Generate' }).isEnabled(), { timeout: 120_000 }).toBe(true);
    await expect.poll(() => statsTokens(page), { timeout: 60_000 }).toBe(n);
    expect(await page.getByTestId('generated').textContent()).toBe(first);

    // Chat through the template; user text is shown as text, never as HTML.
    await page.getByRole('checkbox', { name: /Chat/ }).check();
    await page.getByLabel('Prompt').fill('<img src=x onerror="window.__pwned=1"> What is the capital of Peru?');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByRole('button', { name: 'Generate' }).isEnabled(), { timeout: 120_000 }).toBe(true);
    await expect.poll(() => statsTokens(page), { timeout: 60_000 }).toBeGreaterThan(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('img').count()).toBe(0);
    await page.screenshot({ path: join(SHOTS, 'demo-generated.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('loads a checkpoint from files served by the page and generates, then again offline from the cache', async () => {
    const demo = join(root, 'public', 'demo');
    const files = {
      ...tinyCheckpointFiles(tinyConfigJson('llama', { vocab_size: 512, max_position_embeddings: 128 }), { seed: 3 }),
      'tokenizer.json': readFileSync(join(demo, 'tokenizer.json'), 'utf8'),
      'tokenizer_config.json': readFileSync(join(demo, 'tokenizer_config.json'), 'utf8'),
    };
    const hub = await serveHub({ 'test-org/tiny-llama': files }, { trickle: true });
    const { page, errors } = await openApp(env.browser, `${env.url}?hub=${encodeURIComponent(hub.endpoint)}`);
    try {
      await page.getByLabel('Hub id or URL').fill('test-org/tiny-llama');
      await page.getByRole('button', { name: 'Download and load' }).click();
      const bar = page.getByRole('progressbar', { name: 'Download progress' });
      await bar.waitFor({ state: 'visible', timeout: 30_000 });
      await expect.poll(() => page.getByTestId('download-status').textContent(), { timeout: 30_000 }).toMatch(/\d+(\.\d+)? (kB|MB) of \d+(\.\d+)? (kB|MB) · .*\/s · .* left/);
      await page.screenshot({ path: join(SHOTS, 'hub-downloading.png'), fullPage: true });
      await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
      expect(await page.getByTestId('model-info').textContent()).toContain('test-org/tiny-llama');
      expect(hub.requests.some((r) => r.startsWith('GET /test-org/tiny-llama/resolve/main/model.safetensors'))).toBe(true);

      await page.getByLabel('Prompt').fill('The capital of France is');
      await setSampling(page, { maxNewTokens: 6 });
      await page.getByRole('button', { name: 'Generate' }).click();
      await expect.poll(() => statsTokens(page), { timeout: 120_000 }).toBeGreaterThan(0);
      const online = await page.getByTestId('gen-stats').textContent();

      // The server goes away; after a reload the same id loads from IndexedDB.
      await hub.close();
      const before = hub.requests.length;
      await page.reload();
      await expect.poll(() => page.getByTestId('gpu-status').textContent(), { timeout: 60_000 }).toMatch(/WebGPU ready/);
      await page.getByLabel('Hub id or URL').fill('test-org/tiny-llama');
      await page.getByRole('button', { name: 'Download and load' }).click();
      await expect.poll(() => page.getByTestId('model-info').textContent(), { timeout: 120_000 }).toMatch(/from this browser’s cache \(offline\)/);
      expect(hub.requests.length).toBe(before);
      await page.getByLabel('Prompt').fill('The capital of France is');
      await setSampling(page, { maxNewTokens: 6 });
      await page.getByRole('button', { name: 'Generate' }).click();
      await expect.poll(() => statsTokens(page), { timeout: 120_000 }).toBeGreaterThan(0);
      // Same weights, same greedy tokens.
      expect((await page.getByTestId('gen-stats').textContent())?.split(' · ')[0]).toBe(online?.split(' · ')[0]);
      expect(await page.getByTestId('load-error').count()).toBe(0);
      expect(errors).toEqual([]);
    } finally {
      await hub.close().catch(() => {});
      await page.close();
    }
  });

  it('a folder with an unsupported architecture shows an error naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-bad-'));
    const folder = join(dir, 'mamba-130m');
    try {
      mkdirSync(folder);
      writeFileSync(join(folder, 'config.json'), JSON.stringify({ architectures: ['MambaForCausalLM'], model_type: 'mamba', hidden_size: 768 }));
      writeFileSync(join(folder, 'model.safetensors'), new Uint8Array(16));
      const { page, errors } = await openApp(env.browser, env.url);
      await page.getByLabel('Model folder').setInputFiles(folder);
      const alert = page.getByTestId('load-error');
      await alert.waitFor({ timeout: 60_000 });
      const text = (await alert.textContent()) ?? '';
      expect(text).toContain('This model is not supported');
      expect(text).toContain('MambaForCausalLM');
      expect(text).toContain('UnsupportedModelError');
      expect(await page.getByRole('alert').count()).toBe(1);
      await page.screenshot({ path: join(SHOTS, 'unsupported-folder.png'), fullPage: true });

      // The same through the plain file input.
      await page.getByLabel('Model files').setInputFiles([
        { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ architectures: ['FalconForCausalLM'] })) },
      ]);
      await expect.poll(() => alert.textContent(), { timeout: 60_000 }).toContain('FalconForCausalLM');

      // And dropped on the drop zone.
      const dt = await page.evaluateHandle(() => {
        const d = new DataTransfer();
        d.items.add(new File([JSON.stringify({ architectures: ['RwkvForCausalLM'] })], 'config.json', { type: 'application/json' }));
        return d;
      });
      await page.getByRole('region', { name: /Model from this computer/ }).dispatchEvent('drop', { dataTransfer: dt });
      await expect.poll(() => alert.textContent(), { timeout: 60_000 }).toContain('RwkvForCausalLM');
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stays responsive while generating, and Stop stops', async () => {
    const { page, errors } = await openApp(env.browser, env.url);
    await page.getByRole('button', { name: 'Load demo model' }).click();
    await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
    await page.getByLabel('Prompt').fill('Once upon a time');
    await setSampling(page, { maxNewTokens: 240 });
    // A button of the page's own whose click handler records that it ran.
    await page.evaluate(() => {
      const b = document.createElement('button');
      b.textContent = 'Ping';
      b.onclick = () => (b.dataset.clicked = String(Number(b.dataset.clicked ?? 0) + 1));
      document.body.append(b);
    });
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(async () => Number(/(\d+) tokens/.exec((await page.getByTestId('generating').textContent()) ?? '')?.[1] ?? 0), { timeout: 120_000 }).toBeGreaterThan(2);

    // The main thread answers at once while the worker generates.
    const lagMs = await page.evaluate(() => new Promise<number>((r) => {
      const t = performance.now();
      setTimeout(() => r(performance.now() - t), 0);
    }));
    expect(lagMs).toBeLessThan(250);
    const t0 = Date.now();
    await page.getByRole('button', { name: 'Ping' }).click();
    await expect.poll(() => page.getByRole('button', { name: 'Ping' }).getAttribute('data-clicked'), { timeout: 2000 }).toBe('1');
    expect(Date.now() - t0).toBeLessThan(2000);
    await page.getByRole('checkbox', { name: /Chat/ }).check();
    expect(await page.getByRole('checkbox', { name: /Chat/ }).isChecked()).toBe(true);
    expect(await page.getByRole('button', { name: 'Generate' }).isDisabled()).toBe(true);
    await page.screenshot({ path: join(SHOTS, 'generating.png'), fullPage: true });

    await page.getByRole('button', { name: 'Stop' }).click();
    await expect.poll(() => page.getByTestId('gen-stats').textContent(), { timeout: 60_000 }).toMatch(/stopped/);
    expect(await statsTokens(page)).toBeLessThan(240);
    expect(await page.getByRole('button', { name: 'Generate' }).isEnabled()).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });
});
