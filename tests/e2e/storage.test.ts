// The browser's storage as a person meets it, in headless Chromium against the built site (real
// IndexedDB, Web Locks):
//   - a model downloaded once from a (local, Hub-shaped) server is stored in IndexedDB chunk by chunk
//     (small chunks through a test hook), loads again with the network blocked,
//     is listed in the Storage panel, and deleting it there makes the next load need the network;
//   - two tabs of one origin: the second cannot resume or delete the run the first one trains (it is
//     told which tab holds it); once the first stops, the second resumes it, and then the first is
//     refused; a run is renamed, exported as one file, imported back as a new run, and deleted.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';
import { currentStep, loadDemo, openApp, phase, runRow, setUpRun } from './flows';
import { root, useBuiltSite } from './harness';
import { serveHub } from './hub-server';

describe('storage, cached models and two tabs (built site, headless Chromium)', () => {
  const env = useBuiltSite();

  it('a model loaded once loads again with the network blocked; deleting it from the Storage panel frees it', { timeout: 150_000 }, async () => {
    const demo = join(root, 'public', 'demo');
    const hub = await serveHub({
      'test-org/tiny-llama': {
        ...tinyCheckpointFiles(tinyConfigJson('llama', { vocab_size: 512, max_position_embeddings: 128 }), { seed: 5 }),
        'tokenizer.json': readFileSync(join(demo, 'tokenizer.json'), 'utf8'),
        'tokenizer_config.json': readFileSync(join(demo, 'tokenizer_config.json'), 'utf8'),
      },
    });
    const context = await env.browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const { page, errors } = await openApp(context, `${env.url}?test-hooks&hub=${encodeURIComponent(hub.endpoint)}`);
      // Small chunks, so the weights are stored (and read back offline) as many IndexedDB Blobs.
      await page.evaluate(() => (window as unknown as { __webtuneTestHooks: { downloadChunkBytes(n: number): Promise<void> } }).__webtuneTestHooks.downloadChunkBytes(4096));
      const loadHub = async () => {
        await page.getByLabel('Hub id or URL').fill('test-org/tiny-llama');
        await page.getByRole('button', { name: 'Download and load' }).click();
      };
      await loadHub();
      await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
      expect(hub.requests.some((r) => r.startsWith('GET /test-org/tiny-llama/resolve/main/model.safetensors'))).toBe(true);
      // The weights went to IndexedDB chunk by chunk as they arrived, never as one buffer.
      const chunks = await page.evaluate(async () => {
        const db = await new Promise<IDBDatabase>((ok, fail) => {
          const r = indexedDB.open('webtune');
          r.onsuccess = () => ok(r.result);
          r.onerror = () => fail(r.error);
        });
        const keys = await new Promise<IDBValidKey[]>((ok, fail) => {
          const r = db.transaction('modelChunks').objectStore('modelChunks').getAllKeys();
          r.onsuccess = () => ok(r.result);
          r.onerror = () => fail(r.error);
        });
        db.close();
        return (keys as [string, number][]).filter(([k]) => k.endsWith('/model.safetensors')).map(([, i]) => i);
      });
      expect(chunks.length).toBeGreaterThan(10);
      expect(chunks).toEqual([...chunks.keys()]);
      // The cached files count in the Storage panel.
      const freeable = page.getByTestId('storage-freeable');
      await expect.poll(() => freeable.textContent(), { timeout: 30_000 }).toContain('cached model file model.safetensors');
      expect(await page.getByTestId('storage-usage').textContent()).toMatch(/Using \d.* of the .* this browser allows this site/);

      // No network beyond the app itself: requests elsewhere fail, and the server is gone too.
      const blocked: string[] = [];
      await context.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith(env.url)) return route.continue();
        blocked.push(url);
        return route.abort('internetdisconnected');
      });
      await hub.close();
      const asked = hub.requests.length;
      await page.reload();
      await expect.poll(() => page.getByTestId('gpu-status').textContent(), { timeout: 60_000 }).toMatch(/WebGPU ready/);
      await loadHub();
      await expect.poll(() => page.getByTestId('model-info').textContent(), { timeout: 120_000 }).toMatch(/from this browser’s cache \(offline\)/);
      await page.getByLabel('Prompt').fill('The capital of France is');
      await page.getByLabel('Max new tokens').fill('4');
      await page.getByLabel('Temperature').fill('0');
      await page.getByRole('button', { name: 'Generate' }).click();
      await expect.poll(() => page.getByTestId('gen-stats').textContent(), { timeout: 60_000 }).toMatch(/\d+ tokens/);
      expect(hub.requests.length).toBe(asked);
      expect(blocked).toEqual([]);

      // Deleting the cached weights frees their space; the next load needs the network (and says so).
      const weights = page.getByTestId('freeable-item').filter({ hasText: 'cached model file model.safetensors' });
      await expect.poll(() => weights.count(), { timeout: 30_000 }).toBe(1);
      await weights.getByRole('button', { name: /^Delete / }).click();
      await expect.poll(() => weights.count(), { timeout: 30_000 }).toBe(0);
      expect(await freeable.textContent()).toContain('cached model file config.json');
      await loadHub();
      await expect.poll(() => page.getByTestId('load-error').textContent(), { timeout: 60_000 }).toMatch(/Could not reach the server/);
      expect(hub.requests.length).toBe(asked);
      expect(errors).toEqual([]);
    } finally {
      await hub.close();
      await context.close();
    }
  });

  it('a second tab cannot take over a running run; it can once the first stops; runs are renamed, exported, imported, deleted', { timeout: 180_000 }, async () => {
    const context = await env.browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const a = await openApp(context, env.url);
      await loadDemo(a.page);
      await setUpRun(a.page, { steps: 400, every: 2 });
      await a.page.getByRole('button', { name: 'Start training' }).click();
      await expect.poll(() => currentStep(a.page), { timeout: 120_000 }).toBeGreaterThanOrEqual(3);

      // Tab B sees the run as another tab's, and is refused with the holder named.
      const b = await openApp(context, env.url);
      const rowB = runRow(b.page, 'run 1');
      await expect.poll(() => rowB.getByTestId('run-status').textContent(), { timeout: 30_000 }).toMatch(/^training in another tab \(the tab opened at .+\)$/);
      await b.page.getByRole('button', { name: 'Resume run 1' }).click();
      const errorB = b.page.getByTestId('runs-error');
      await expect.poll(() => errorB.textContent(), { timeout: 30_000 }).toMatch(/run "run 1" is being trained in another tab \(the tab opened at [^)]+\)/);
      expect(await phase(b.page)).toBe('Not started.');
      expect(await b.page.getByTestId('model-architecture').count()).toBe(0); // refused before loading anything
      await b.page.getByRole('button', { name: 'Delete run 1' }).click();
      await b.page.getByRole('button', { name: 'Really delete run 1' }).click();
      await expect.poll(() => errorB.textContent(), { timeout: 30_000 }).toMatch(/being trained in another tab/);
      expect(await rowB.count()).toBe(1);
      await b.page.screenshot({ path: join(root, '.test-results', 'screenshots', 'storage-second-tab.png'), fullPage: true });
      // A is undisturbed.
      const stepA = await currentStep(a.page);
      await expect.poll(() => currentStep(a.page), { timeout: 60_000 }).toBeGreaterThan(stepA);
      expect(await a.page.getByTestId('train-notices').count()).toBe(0);

      // A stops (saving a checkpoint); B sees it free, resumes it from there; now A is refused.
      await a.page.getByRole('region', { name: 'Train', exact: true }).getByRole('button', { name: 'Stop', exact: true }).click();
      await expect.poll(() => phase(a.page), { timeout: 60_000 }).toMatch(/^Stopped after step \d+ of 400\./);
      const stoppedAt = await currentStep(a.page);
      await expect.poll(() => rowB.getByTestId('run-status').textContent(), { timeout: 30_000 }).toBe('stopped');
      await b.page.getByRole('button', { name: 'Resume run 1' }).click();
      await expect.poll(() => b.page.getByTestId('train-resumed').textContent(), { timeout: 120_000 }).toBe(`Resumed from the checkpoint of step ${stoppedAt}.`);
      await expect.poll(() => currentStep(b.page), { timeout: 120_000 }).toBeGreaterThan(stoppedAt);
      await a.page.getByRole('button', { name: 'Refresh list' }).click();
      const rowA = runRow(a.page, 'run 1');
      await expect.poll(() => rowA.getByTestId('run-status').textContent(), { timeout: 30_000 }).toMatch(/^training in another tab/);
      await a.page.getByRole('button', { name: 'Resume run 1' }).click();
      await expect.poll(() => a.page.getByTestId('runs-error').textContent(), { timeout: 30_000 }).toMatch(/being trained in another tab/);
      await b.page.getByRole('region', { name: 'Train', exact: true }).getByRole('button', { name: 'Stop', exact: true }).click();
      await expect.poll(() => phase(b.page), { timeout: 60_000 }).toMatch(/^Stopped after step \d+ of 400\./);
      const stoppedB = await currentStep(b.page);
      expect(b.errors).toEqual([]);
      await b.page.close();

      // Rename, export, import (a new run with the same name), delete the copy.
      await a.page.getByRole('button', { name: 'Refresh list' }).click();
      await expect.poll(() => rowA.getByTestId('run-status').textContent(), { timeout: 30_000 }).toBe('stopped');
      await a.page.getByRole('button', { name: 'Rename run 1' }).click();
      await a.page.getByLabel('New name for run 1').fill('story tuning');
      await a.page.getByLabel('New name for run 1').press('Enter');
      const named = runRow(a.page, 'story tuning');
      await expect.poll(() => named.count(), { timeout: 30_000 }).toBe(1);
      const [download] = await Promise.all([a.page.waitForEvent('download'), a.page.getByRole('button', { name: 'Export story tuning as an archive' }).click()]);
      expect(download.suggestedFilename()).toBe(`story-tuning-step${stoppedB}.webtune`);
      const archive = readFileSync((await download.path())!);
      expect(archive.byteLength).toBeGreaterThan(400_000); // the checkpoint's tensors are in it
      await a.page.getByLabel('Import run archive').setInputFiles({ name: download.suggestedFilename(), mimeType: 'application/octet-stream', buffer: archive });
      await expect.poll(() => named.count(), { timeout: 30_000 }).toBe(2);
      const copy = named.nth(1);
      expect(await copy.getByTestId('run-status').textContent()).toBe('paused');
      expect(await copy.getByTestId('run-checkpoint').textContent()).toMatch(new RegExp(`^checkpoint at step ${stoppedB} `));
      const copyId = await copy.getAttribute('data-run-id');
      expect(copyId).not.toBe(await named.nth(0).getAttribute('data-run-id'));
      await copy.getByRole('button', { name: 'Delete story tuning' }).click();
      await copy.getByRole('button', { name: 'Really delete story tuning' }).click();
      await expect.poll(() => named.count(), { timeout: 30_000 }).toBe(1);
      expect(await named.getAttribute('data-run-id')).not.toBe(copyId);
      expect(a.errors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
