// QLoRA in the page, in headless Chromium on SwiftShader WebGPU against the built site: the demo
// model → QLoRA chosen (the memory table marks it) → the worker quantizes the base to NF4 (a notice
// says how much the frozen weights shrank) → the loss falls and the validation loss ends within 10 %
// of a LoRA run's with the same settings and seed → the Playground answers with the 4-bit base plus
// the adapter → "Download adapter" gives PEFT files → "Download merged model" gives a plain model folder
// (the adapter merged into the dequantized 4-bit base). Then a LoRA run puts the f32 weights back, and
// the merged folder, loaded through the file input, answers exactly what the 4-bit base + adapter did.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Download, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { useBuiltSite } from './harness';
import { loadDemo, openApp, phase } from './flows';

const STEPS = 12;

/** Train with the given method radio; resolves with the final validation loss the Train panel shows. */
async function train(page: Page, method: RegExp): Promise<number> {
  await page.getByRole('radio', { name: method }).check();
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect.poll(() => phase(page), { timeout: 150_000 }).toBe(`Done: ${STEPS} steps.`);
  return Number(await page.getByTestId('eval-loss').textContent());
}

const notice = (page: Page, name: string) => page.locator(`[data-testid="train-notice"][data-name="${name}"]`);

describe('QLoRA in headless Chromium (built site)', () => {
  const env = useBuiltSite();

  it('trains QLoRA on a 4-bit base, close to LoRA, and exports a PEFT adapter', { timeout: 360_000 }, async () => {
    const context = await env.browser.newContext({ acceptDownloads: true });
    const { page, errors } = await openApp(context, env.url);
    await loadDemo(page);
    await page.getByRole('button', { name: 'Use demo dataset' }).click();
    await page.getByTestId('data-report').waitFor({ timeout: 60_000 });
    await page.getByLabel('Learning rate').fill('0.003');
    await page.getByLabel('Batch size').fill('4');
    await page.getByLabel('Sequence length').fill('32');
    await page.getByLabel('Steps (0 = by epochs)').fill(String(STEPS));
    await page.getByLabel('Evaluate every (steps)').fill(String(STEPS));
    await page.getByLabel('Checkpoint every (steps)').fill('0');
    // The dataset is tokenized again for the new sequence length; the page settles before Start is pressed.
    await expect.poll(() => page.getByTestId('data-report').textContent(), { timeout: 30_000 }).toMatch(/sequence length 32\)/);

    // ── the memory table marks QLoRA as this run's method, with the LoRA settings shown
    await page.getByRole('radio', { name: /^QLoRA/ }).check();
    const memory = page.getByTestId('train-memory');
    await expect.poll(() => memory.textContent(), { timeout: 30_000 }).toMatch(/QLoRA \(this run\)/);
    expect(await page.getByLabel('Rank r').inputValue()).toBe('8');

    // ── QLoRA: the base goes to NF4, the loss falls
    const qlora = await train(page, /^QLoRA/);
    const shrink = (await notice(page, 'WeightResidency').textContent()) ?? '';
    const m = /the frozen weights take ([\d.]+) MiB of GPU memory instead of ([\d.]+) MiB/.exec(shrink);
    expect(m, shrink).not.toBeNull();
    // Linear weights at ~4.13 bits instead of 32; embeddings, norms and lm_head stay f32.
    expect(Number(m![1])).toBeLessThan(Number(m![2]) * 0.6);
    expect(Number.isFinite(qlora)).toBe(true);

    // ── the Playground runs the 4-bit base with the adapter
    await page.getByLabel('Prompt').fill('Which pet does Mia have?');
    await page.getByLabel('Max new tokens').fill('6');
    await page.getByLabel('Temperature').fill('0');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('gen-stats-adapter').textContent(), { timeout: 120_000 }).toMatch(/\d+ tokens/);
    const tuned = await page.getByTestId('generated-adapter').textContent();
    expect(tuned?.trim()).toBeTruthy();

    // ── the adapter downloads as PEFT files
    const downloads: Download[] = [];
    page.on('download', (d) => downloads.push(d));
    await page.getByRole('button', { name: 'Download adapter' }).click();
    await expect.poll(() => downloads.length, { timeout: 60_000 }).toBe(2);
    const files = new Map<string, Buffer>();
    for (const d of downloads) files.set(d.suggestedFilename(), readFileSync((await d.path())!));
    const cfg = JSON.parse(files.get('adapter_config.json')!.toString('utf8'));
    expect(cfg.peft_type).toBe('LORA');
    expect(cfg.r).toBe(8);

    // ── the merged model downloads as a plain Hugging Face folder, names and shapes as the base's
    downloads.length = 0;
    await page.getByRole('button', { name: 'Download merged model' }).click();
    await expect.poll(() => downloads.map((d) => d.suggestedFilename()).sort(), { timeout: 60_000 }).toEqual(
      expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']),
    );
    await expect.poll(() => page.getByTestId('export-files').textContent(), { timeout: 60_000 }).toMatch(/model\.safetensors/);
    const merged = join(mkdtempSync(join(tmpdir(), 'webtune-merged-')), 'demo-merged');
    mkdirSync(merged);
    for (const d of downloads) writeFileSync(join(merged, d.suggestedFilename()), readFileSync((await d.path())!));
    const mergedConfig = JSON.parse(readFileSync(join(merged, 'config.json'), 'utf8'));
    expect(mergedConfig.quantization_config).toBeUndefined();
    const st = readFileSync(join(merged, 'model.safetensors'));
    const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(names.some((n) => n.includes('lora'))).toBe(false);
    expect(names).toContain('model.layers.0.self_attn.q_proj.weight');
    expect(new Set(names.map((n) => header[n].dtype))).toEqual(new Set(['F32']));

    // ── LoRA with the same settings and seed: the f32 base comes back; QLoRA ends within 10 %
    const lora = await train(page, /^LoRA/);
    expect(await notice(page, 'WeightResidency').textContent()).toMatch(/held in f32 again for lora/);
    console.log(`demo model, ${STEPS} steps: validation loss QLoRA ${qlora.toFixed(4)}, LoRA ${lora.toFixed(4)}; ${shrink}`);
    expect(Math.abs(qlora - lora)).toBeLessThanOrEqual(0.1 * lora);

    // ── the merged folder as a model of its own: it answers what the 4-bit base + adapter answered
    await page.getByLabel('Model folder').setInputFiles(merged);
    await expect.poll(() => page.getByTestId('model-info').textContent(), { timeout: 120_000 }).toMatch(/demo-merged/);
    await page.getByLabel('Prompt').fill('Which pet does Mia have?');
    await page.getByLabel('Max new tokens').fill('6');
    await page.getByLabel('Temperature').fill('0');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('gen-stats').textContent(), { timeout: 120_000 }).toMatch(/\d+ tokens/);
    expect(await page.getByTestId('generated').textContent()).toBe(tuned);
    expect(errors).toEqual([]);
    await context.close();
  });
});
