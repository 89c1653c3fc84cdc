// Several LoRA adapters for one base model, side by side, in headless Chromium on SwiftShader WebGPU
// against the built site: two short runs on the demo model → both are in the Playground's adapter
// selector and each answers differently from the base → one run's adapter is downloaded from the run
// list as PEFT files (safetensors header checked) → those files are imported back as an adapter →
// it is listed and answers exactly as the run it came from (greedy), and downloads merged into the
// base from the run list (a model folder; ONNX that onnxruntime-web decodes to the same answer) →
// after a reload it is still
// there, and still answers the same. A PEFT file that is not LoRA is refused, naming the field. No
// network after the model and data are loaded; no page errors.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Download, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { loadDemo, openApp, reload, runRow, setUpRun, waitDone } from './flows';
import { root, useBuiltSite } from './harness';
import { greedyOnnxText } from '../helpers/onnx';

/** The JSON header of a safetensors file: u64 little-endian length, then that many bytes of JSON. */
function safetensorsHeader(bytes: Buffer): Record<string, { dtype: string; shape: number[] }> {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
  delete header.__metadata__;
  return header;
}

const selector = (page: Page) => page.getByLabel('Adapter', { exact: true });

/** The selector's options as shown ("Base model only", "run 1, step 6", …). */
const optionLabels = async (page: Page): Promise<string[]> => (await selector(page).locator('option').allTextContents()).map((t) => t.trim());

/** Generate greedily with the chosen adapter: the base model's text and the adapter's. */
async function compare(page: Page, choice: string): Promise<{ base: string; tuned: string }> {
  await selector(page).selectOption({ label: choice });
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect.poll(() => page.getByTestId('gen-stats-adapter').textContent(), { timeout: 60_000 }).toMatch(/\d+ tokens/);
  expect(await page.getByTestId('output-adapter-label').textContent()).toBe(`(${choice})`);
  const base = (await page.getByTestId('generated').textContent()) ?? '';
  const tuned = (await page.getByTestId('generated-adapter').textContent()) ?? '';
  return { base, tuned };
}

async function prompt(page: Page): Promise<void> {
  await page.getByLabel('Prompt').fill('Which pet does Mia have?');
  await page.getByLabel('Max new tokens').fill('8');
  await page.getByLabel('Temperature').fill('0');
}

describe('adapters side by side (built site, headless Chromium)', () => {
  const env = useBuiltSite();

  it('two runs → two adapters to compare; one exported as PEFT files, imported back, kept after a reload', { timeout: 240_000 }, async () => {
    const t0 = Date.now();
    const context = await env.browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    const { page, errors } = await openApp(context, env.url);
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await loadDemo(page);
    await setUpRun(page, { steps: 6, every: 6 });
    const afterLoad = requests.length;

    // ── two short LoRA runs with different learning rates
    await page.getByLabel('Learning rate').fill('0.02');
    await page.getByRole('button', { name: 'Start training' }).click();
    await waitDone(page, 6);
    await page.getByLabel('Target modules').fill('q_proj, v_proj');
    await page.getByLabel('Target modules').press('Tab');
    await page.getByLabel('Learning rate').fill('0.05');
    await page.getByLabel('Steps (0 = by epochs)').fill('4');
    await page.getByRole('button', { name: 'Start training' }).click();
    await waitDone(page, 4);

    // Both are offered; this page's last run is chosen by itself.
    await expect.poll(() => optionLabels(page), { timeout: 30_000 }).toEqual(['Base model only', 'run 1, step 6', 'run 2, step 4']);
    expect(await selector(page).inputValue()).toBe('live');

    await prompt(page);
    const two = await compare(page, 'run 2, step 4');
    const one = await compare(page, 'run 1, step 6');
    console.log(`greedy answers: base ${JSON.stringify(one.base)}, run 1 ${JSON.stringify(one.tuned)}, run 2 ${JSON.stringify(two.tuned)}`);
    expect(two.base).toBe(one.base);
    expect(one.tuned).not.toBe(one.base);
    expect(two.tuned).not.toBe(two.base);
    expect(one.tuned).not.toBe(two.tuned);

    // "Base model only": one column.
    await selector(page).selectOption({ label: 'Base model only' });
    expect(await page.getByTestId('output-adapter').count()).toBe(0);

    // ── run 1's adapter from the run list, as PEFT files
    const downloads: Download[] = [];
    page.on('download', (d) => downloads.push(d));
    await page.getByRole('button', { name: 'Download the adapter of run 1 as PEFT files' }).click();
    await expect.poll(() => downloads.length, { timeout: 30_000 }).toBe(2);
    const files = new Map<string, Buffer>();
    for (const d of downloads) files.set(d.suggestedFilename(), readFileSync((await d.path())!));
    expect([...files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const cfg = JSON.parse(files.get('adapter_config.json')!.toString('utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 16, base_model_name_or_path: 'demo', fan_in_fan_out: false });
    expect([...cfg.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    const header = safetensorsHeader(files.get('adapter_model.safetensors')!);
    expect(Object.keys(header)).toHaveLength(4 * 7 * 2);
    expect(header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']).toMatchObject({ dtype: 'F32', shape: [8, 64] });
    expect(header['base_model.model.model.layers.3.mlp.down_proj.lora_B.weight']).toMatchObject({ dtype: 'F32', shape: [64, 8] });
    expect(header['base_model.model.model.layers.2.mlp.up_proj.lora_B.weight'].shape[1]).toBe(8);

    // ── a file that is not a LoRA adapter is refused, naming the file and field
    const importInput = page.getByTestId('adapter-import');
    const asFile = (name: string, buffer: Buffer) => ({ name, mimeType: 'application/octet-stream', buffer });
    await importInput.setInputFiles([
      asFile('adapter_config.json', Buffer.from(JSON.stringify({ ...cfg, peft_type: 'IA3' }))),
      asFile('adapter_model.safetensors', files.get('adapter_model.safetensors')!),
    ]);
    await expect.poll(() => page.getByTestId('adapter-import-error').textContent(), { timeout: 30_000 }).toMatch(/adapter_config\.json: field "peft_type" is "IA3"/);

    // ── imported back: listed, chosen, and it answers exactly as run 1
    await importInput.setInputFiles([asFile('adapter_config.json', files.get('adapter_config.json')!), asFile('adapter_model.safetensors', files.get('adapter_model.safetensors')!)]);
    await expect.poll(() => optionLabels(page), { timeout: 30_000 }).toContain('imported adapter 1 (imported)');
    expect(await page.getByTestId('adapter-import-error').count()).toBe(0);
    expect(await selector(page).locator('option:checked').textContent()).toBe('imported adapter 1 (imported)');
    const imported = await compare(page, 'imported adapter 1 (imported)');
    expect(imported.tuned).toBe(one.tuned);
    // It is a run in the list too (rename, delete and archive export work on it as on any run).
    const row = runRow(page, 'imported adapter 1');
    await expect.poll(() => row.getByTestId('run-status').textContent(), { timeout: 30_000 }).toBe('imported adapter');
    expect(await row.getByRole('button', { name: /^Resume/ }).count()).toBe(0);

    // ── the imported adapter merged into the loaded base, from the run list: a plain model folder
    downloads.length = 0;
    await page.getByRole('button', { name: 'Download imported adapter 1 merged into its base model', exact: true }).click();
    await expect.poll(() => downloads.map((d) => d.suggestedFilename()).sort(), { timeout: 30_000 }).toEqual(
      expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']),
    );
    const merged = safetensorsHeader(readFileSync((await downloads.find((d) => d.suggestedFilename() === 'model.safetensors')!.path())!));
    expect(Object.keys(merged).some((k) => k.includes('lora'))).toBe(false);
    expect(merged['model.layers.3.mlp.down_proj.weight']).toMatchObject({ dtype: 'F32', shape: [64, 128] });
    // … and as ONNX: onnxruntime-web decodes it to the answer the Playground gave with the adapter.
    downloads.length = 0;
    await page.getByRole('button', { name: 'Download imported adapter 1 merged into its base model as ONNX' }).click();
    await expect.poll(() => downloads.map((d) => d.suggestedFilename()), { timeout: 60_000 }).toEqual(['model.onnx']);
    expect(await greedyOnnxText(readFileSync((await downloads[0].path())!), join(root, 'public', 'demo'), 'Which pet does Mia have?', 8)).toBe(imported.tuned);

    // Generating with stored adapters used no network.
    expect(requests.slice(afterLoad).filter((u) => !u.startsWith('blob:') && !u.startsWith('data:'))).toEqual([]);

    // ── after a reload: still there, still the same answer
    await reload(page);
    await loadDemo(page);
    await expect.poll(() => optionLabels(page), { timeout: 30_000 }).toEqual(['Base model only', 'run 1, step 6', 'run 2, step 4', 'imported adapter 1 (imported)']);
    expect(await selector(page).inputValue()).toBe('');
    await prompt(page);
    const reloaded = await compare(page, 'imported adapter 1 (imported)');
    expect(reloaded.tuned).toBe(one.tuned);
    expect(reloaded.base).toBe(one.base);
    expect(errors).toEqual([]);
    await context.close();
    console.log(`adapters flow took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
});
