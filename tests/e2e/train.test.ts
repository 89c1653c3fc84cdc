// The training half of the app, as a person uses it, in headless Chromium on SwiftShader WebGPU
// against the built site: demo model → demo dataset (preview with trained tokens marked) → LoRA
// settings and the memory estimate → train (the chart gets points, the loss falls, pause holds and
// resume continues) → "Stop and save" downloads a PEFT adapter whose files are checked → the
// Playground answers with the base model and with the adapter side by side → "Download ONNX" gives a
// model.onnx that onnxruntime-web decodes to the adapter's same answer → "Download merged model" as
// float16 gives F16 safetensors → a second run lists what
// changed → the configuration link round-trips → a malformed JSONL file shows its bad lines → the
// page warns before leaving with unsaved steps. No page errors throughout.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Download, Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { greedyOnnxText } from '../helpers/onnx';
import { root, useBuiltSite } from './harness';

const SHOTS = process.env.WEBTUNE_SCREENSHOTS ?? join(root, '.test-results', 'screenshots');

async function openApp(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await expect.poll(() => page.getByTestId('gpu-status').textContent(), { timeout: 60_000 }).toMatch(/WebGPU ready/);
  return { page, errors };
}

const shot = (page: Page, name: string): Promise<Buffer> => page.screenshot({ path: join(SHOTS, name), fullPage: true });

/** "training loss: 9 points, first 6.2383, last 5.9012" from the chart's text summary. */
async function chartLosses(page: Page): Promise<{ points: number; first: number; last: number }> {
  const text = (await page.getByTestId('loss-chart').locator('figcaption').textContent()) ?? '';
  const m = /training loss: (\d+) points?, first ([\d.]+), last ([\d.]+)/.exec(text);
  return m ? { points: Number(m[1]), first: Number(m[2]), last: Number(m[3]) } : { points: 0, first: NaN, last: NaN };
}

const currentStep = async (page: Page): Promise<number> => Number(/^(\d+)/.exec((await page.getByTestId('train-step').textContent()) ?? '')?.[1] ?? 0);

/** The JSON header of a safetensors file: u64 little-endian length, then that many bytes of JSON. */
function safetensorsHeader(bytes: Buffer): Record<string, { dtype: string; shape: number[] }> {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
  delete header.__metadata__;
  return header;
}



describe('training in headless Chromium (built site)', () => {
  const env = useBuiltSite();

  beforeAll(() => {
    mkdirSync(SHOTS, { recursive: true });
  });

  it('trains LoRA on the demo dataset, saves the adapter, compares it with the base, and shares the configuration', { timeout: 240_000 }, async () => {
    const { page, errors } = await openApp(env.browser, env.url);
    const t0 = Date.now();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));

    // ── model and data
    await page.getByRole('button', { name: 'Load demo model' }).click();
    await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
    await page.getByRole('button', { name: 'Use demo dataset' }).click();
    const report = page.getByTestId('data-report');
    await report.waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('data-format').textContent()).toBe('jsonl · prompt / completion');
    expect(await page.getByTestId('data-train').textContent()).toMatch(/^54 examples/);
    const preview = page.getByTestId('data-preview');
    expect(await preview.locator('.tok.trained').first().textContent()).toBe(' Mia has a dog.<|endoftext|>');
    expect(await preview.locator('.tok.prompt').first().textContent()).toBe('Which pet does Mia have?');
    expect(await page.getByTestId('length-histogram').locator('rect').count()).toBeGreaterThan(0);

    // ── method: LoRA on every linear layer, a learning rate that moves the tiny random model quickly
    await page.getByLabel('Target modules').fill('all-linear');
    await page.getByLabel('Target modules').press('Tab');
    await page.getByLabel('Learning rate').fill('0.01');
    await page.getByLabel('Batch size').fill('4');
    await page.getByLabel('Sequence length').fill('32');
    await page.getByLabel('Steps (0 = by epochs)').fill('40');
    await page.getByLabel('Evaluate every (steps)').fill('4');
    const memory = page.getByTestId('train-memory');
    await expect.poll(() => memory.textContent(), { timeout: 30_000 }).toMatch(/Full fine-tuning.*LoRA \(this run\).*QLoRA/);
    // The estimate follows the settings: all-linear LoRA r=8 on the demo model has 32.8 K parameters.
    await expect.poll(() => memory.textContent(), { timeout: 30_000 }).toMatch(/Trainable parameters180\.8 K32\.8 K32\.8 K/);
    await expect.poll(() => page.getByTestId('data-report').textContent(), { timeout: 30_000 }).toMatch(/sequence length 32\)/);
    expect(await memory.textContent()).toMatch(/Activations/);
    expect(await page.getByTestId('memory-warning').count()).toBe(0);
    await shot(page, 'train-configured.png');

    // ── train: points arrive, the loss falls; pause holds, resume continues
    const afterLoad = requests.length;
    await page.getByRole('button', { name: 'Start training' }).click();
    await expect.poll(async () => (await chartLosses(page)).points, { timeout: 120_000 }).toBeGreaterThanOrEqual(3);
    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => page.getByTestId('train-phase').textContent(), { timeout: 60_000 }).toMatch(/Paused after step \d+/);
    const pausedAt = await currentStep(page);
    await page.waitForTimeout(1500);
    expect(await currentStep(page)).toBe(pausedAt);
    await shot(page, 'train-paused.png');
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => currentStep(page), { timeout: 60_000 }).toBeGreaterThanOrEqual(Math.max(8, pausedAt + 2));
    await expect.poll(async () => page.getByTestId('train-samples').locator('li').count(), { timeout: 60_000 }).toBeGreaterThan(0);
    const losses = await chartLosses(page);
    // Down by more than batch-to-batch noise (random demo weights start near ln 512 = 6.24 and lose ~5 % in 8 steps).
    expect(losses.last).toBeLessThan(losses.first * 0.97);
    expect(await page.getByTestId('eval-loss').textContent()).toMatch(/^\d+\.\d{4}$/);
    expect(await page.getByTestId('reference-loss').textContent()).toMatch(/^\d+\.\d{4}$/);
    expect(await page.getByTestId('train-speed').textContent()).toMatch(/^\d+$/);
    expect(await page.getByTestId('unsaved').textContent()).toMatch(/not saved yet/);
    await shot(page, 'train-running.png');

    // ── stop and save: two downloads, a PEFT adapter
    const downloads: Download[] = [];
    page.on('download', (d) => downloads.push(d));
    await page.getByRole('button', { name: 'Stop and save' }).click();
    await expect.poll(() => downloads.length, { timeout: 60_000 }).toBe(2);
    await expect.poll(() => page.getByTestId('train-phase').textContent(), { timeout: 60_000 }).toMatch(/Stopped after step \d+ of 40/);
    const stoppedAt = await currentStep(page);
    expect(stoppedAt).toBeLessThan(40);
    const files = new Map<string, Buffer>();
    for (const d of downloads) files.set(d.suggestedFilename(), readFileSync((await d.path())!));
    expect([...files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const cfg = JSON.parse(files.get('adapter_config.json')!.toString('utf8'));
    expect(cfg.peft_type).toBe('LORA');
    expect(cfg.task_type).toBe('CAUSAL_LM');
    expect(cfg.r).toBe(8);
    expect(cfg.lora_alpha).toBe(16);
    expect(cfg.base_model_name_or_path).toBe('demo');
    expect([...cfg.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    const header = safetensorsHeader(files.get('adapter_model.safetensors')!);
    expect(Object.keys(header)).toHaveLength(4 * 7 * 2);
    expect(header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']).toMatchObject({ dtype: 'F32', shape: [8, 64] });
    expect(header['base_model.model.model.layers.3.mlp.down_proj.lora_B.weight']).toMatchObject({ dtype: 'F32', shape: [64, 8] });
    expect(await page.getByTestId('saved').textContent()).toContain(`Saved after step ${stoppedAt}`);
    expect(await page.getByTestId('export-files').locator('a').count()).toBe(2);

    // ── the playground: base and adapter side by side
    await page.getByLabel('Prompt').fill('Which pet does Mia have?');
    await page.getByLabel('Max new tokens').fill('6');
    await page.getByLabel('Temperature').fill('0');
    // This run's adapter is what the Playground compares with the base, without being asked.
    const adapterChoice = page.getByLabel('Adapter', { exact: true });
    expect(await adapterChoice.inputValue()).toBe('live');
    expect(await adapterChoice.locator('option:checked').textContent()).toMatch(/^run 1, step \d+$/);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('gen-stats-adapter').textContent(), { timeout: 120_000 }).toMatch(/\d+ tokens/);
    const base = await page.getByTestId('generated').textContent();
    const tuned = await page.getByTestId('generated-adapter').textContent();
    expect(tuned).not.toBe(base);
    await shot(page, 'train-playground.png');

    // ── the run as ONNX (adapter merged in): onnxruntime-web, greedy, answers what the Playground did
    downloads.length = 0;
    await page.getByRole('button', { name: 'Download ONNX' }).click();
    await expect.poll(() => downloads.length, { timeout: 60_000 }).toBe(1);
    expect(downloads[0].suggestedFilename()).toBe('model.onnx');
    expect(await greedyOnnxText(readFileSync((await downloads[0].path())!), join(root, 'public', 'demo'), 'Which pet does Mia have?', 6)).toBe(tuned);

    // ── merged into the base, as float16: every tensor F16, config.json says so
    downloads.length = 0;
    await page.getByLabel('Merged model dtype').selectOption('F16');
    await page.getByRole('button', { name: 'Download merged model' }).click();
    await expect.poll(() => downloads.map((d) => d.suggestedFilename()), { timeout: 60_000 }).toEqual(expect.arrayContaining(['config.json', 'model.safetensors']));
    const got = async (name: string): Promise<Buffer> => readFileSync((await downloads.find((d) => d.suggestedFilename() === name)!.path())!);
    const mergedHeader = safetensorsHeader(await got('model.safetensors'));
    expect(new Set(Object.values(mergedHeader).map((t) => t.dtype))).toEqual(new Set(['F16']));
    expect(mergedHeader['model.layers.0.self_attn.q_proj.weight'].shape).toEqual([64, 64]);
    expect(JSON.parse((await got('config.json')).toString('utf8')).torch_dtype).toBe('float16');

    // Training and generation used no network after the model and data were loaded.
    expect(requests.slice(afterLoad).filter((u) => !u.startsWith('blob:') && !u.startsWith('data:'))).toEqual([]);

    // ── a second run: the history says what changed
    await page.getByLabel('Learning rate').fill('0.005');
    await page.getByLabel('Steps (0 = by epochs)').fill('2');
    await page.getByRole('button', { name: 'Start training' }).click();
    await expect.poll(() => page.getByTestId('train-phase').textContent(), { timeout: 120_000 }).toMatch(/Done: 2 steps/);
    const changes = page.getByTestId('run-changes');
    expect(await changes.nth(0).textContent()).toBe('first run');
    expect(await changes.nth(1).textContent()).toBe('lr 0.01→0.005, steps 40→2');
    // Side by side for comparing methods: the forgetting (reference loss) and the speed of each run.
    expect(await page.getByTestId('run-reference').nth(0).textContent()).toMatch(/^\d+\.\d{4}$/);
    expect(Number(await page.getByTestId('run-speed').nth(0).textContent())).toBeGreaterThan(0);
    expect(Number(await page.getByTestId('run-speed').nth(1).textContent())).toBeGreaterThan(0);
    expect(await page.getByTestId('runs-chart').getAttribute('data-points')).not.toBe('0');
    await shot(page, 'train-runs.png');

    // ── the configuration as a link, opened in a new page
    await page.getByRole('button', { name: 'Copy link to this configuration' }).click();
    const link = await page.getByTestId('config-link').inputValue();
    expect(link).toMatch(/#cfg&method=lora&r=8&.*lr=0.005/);
    const other = await openApp(env.browser, link);
    expect(await other.page.getByLabel('Learning rate').inputValue()).toBe('0.005');
    expect(await other.page.getByLabel('Steps (0 = by epochs)').inputValue()).toBe('2');
    expect(await other.page.getByLabel('Sequence length').inputValue()).toBe('32');
    expect(await other.page.getByLabel('Target modules').inputValue()).toBe('all-linear');
    expect(await other.page.getByRole('radio', { name: /^LoRA/ }).isChecked()).toBe(true);
    expect(other.errors).toEqual([]);
    await other.page.close();

    // ── a malformed JSONL file: every bad row by its line number
    const bad = [
      '{"prompt": "What is the capital of Peru?", "completion": " Lima."}',
      '{"prompt": "What is the capital of Chile?", "completion": ',
      '{"prompt": "What is the capital of Japan?", "completion": " Tokyo."}',
      '{"prompt": 5, "completion": " Oslo."}',
      '',
    ].join('\n');
    await page.getByLabel('Data file').setInputFiles({ name: 'broken.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(bad) });
    const rejected = page.getByTestId('data-rejected');
    await rejected.waitFor({ timeout: 60_000 });
    expect(await rejected.textContent()).toMatch(/broken\.jsonl:2: /);
    const rows = page.getByTestId('data-problems').locator('tbody tr');
    expect(await rows.count()).toBe(2);
    expect(await rows.nth(0).locator('td').first().textContent()).toBe('2');
    expect(await rows.nth(1).locator('td').first().textContent()).toBe('4');
    expect(await rows.nth(1).textContent()).toMatch(/prompt/);
    await shot(page, 'train-bad-data.png');

    // ── a good file through the file input, as a person picks one
    await page.getByLabel('Data file').setInputFiles(join(root, 'public', 'demo', 'dataset.jsonl'));
    await expect.poll(() => page.getByTestId('data-train').textContent(), { timeout: 60_000 }).toMatch(/^54 examples/);
    expect(await page.getByTestId('data-format').textContent()).toBe('jsonl · prompt / completion');

    // ── leaving with unsaved steps asks first
    expect(await page.getByTestId('unsaved').count()).toBe(1);
    // (A synthetic beforeunload: the app's handler must cancel it, which is what makes the browser ask.)
    const cancelled = () => page.evaluate(() => {
      const e = new Event('beforeunload', { cancelable: true });
      window.dispatchEvent(e);
      return e.defaultPrevented;
    });
    expect(await cancelled()).toBe(true);
    // Saved: no question.
    await page.getByRole('button', { name: 'Download adapter' }).click();
    await expect.poll(() => page.getByTestId('unsaved').count(), { timeout: 30_000 }).toBe(0);
    expect(await cancelled()).toBe(false);
    expect(errors).toEqual([]);
    await page.close();
    console.log(`training flow took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
});
