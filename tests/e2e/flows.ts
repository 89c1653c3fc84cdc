// Steps the persistence tests share: open the app in a browser context (so several pages share one
// origin's IndexedDB and Web Locks, as tabs do), load the demo model and dataset, set up a small LoRA
// run, and read what the page shows and records (phase, step, a stored run's loss history).
import type { BrowserContext, Page } from 'playwright-core';
import { expect } from 'vitest';

export interface AppPage {
  page: Page;
  /** Uncaught errors of the page (must stay empty). */
  errors: string[];
}

/** Open the app and wait for WebGPU. Leaving with unsaved steps asks first: the tests say yes. */
export async function openApp(context: BrowserContext, url: string): Promise<AppPage> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => void d.accept());
  await page.goto(url);
  await waitReady(page);
  return { page, errors };
}

export async function waitReady(page: Page): Promise<void> {
  await expect.poll(() => page.getByTestId('gpu-status').textContent(), { timeout: 60_000 }).toMatch(/WebGPU ready/);
}

export async function loadDemo(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Load demo model' }).click();
  await expect.poll(() => page.getByTestId('model-architecture').textContent(), { timeout: 120_000 }).toBe('LlamaForCausalLM');
}

/** The demo dataset and a small LoRA run: `steps` steps, a checkpoint every `every` steps. */
export async function setUpRun(page: Page, o: { steps: number; every: number }): Promise<void> {
  await page.getByRole('button', { name: 'Use demo dataset' }).click();
  await page.getByTestId('data-report').waitFor({ timeout: 60_000 });
  await page.getByLabel('Target modules').fill('all-linear');
  await page.getByLabel('Target modules').press('Tab');
  await page.getByLabel('Learning rate').fill('0.01');
  await page.getByLabel('Batch size').fill('4');
  await page.getByLabel('Sequence length').fill('32');
  await page.getByLabel('Steps (0 = by epochs)').fill(String(o.steps));
  await page.getByLabel('Evaluate every (steps)').fill('0');
  await page.getByLabel('Checkpoint every (steps)').fill(String(o.every));
  await expect.poll(() => page.getByTestId('data-report').textContent(), { timeout: 30_000 }).toMatch(/sequence length 32\)/);
}

export const phase = async (page: Page): Promise<string> => (await page.getByTestId('train-phase').textContent()) ?? '';

export const currentStep = async (page: Page): Promise<number> =>
  Number(/^(\d+)/.exec((await page.getByTestId('train-step').textContent().catch(() => '')) ?? '')?.[1] ?? 0);

/** Step of the last checkpoint the Train panel reported (0: none yet). */
export const checkpointStep = async (page: Page): Promise<number> => {
  const el = page.getByTestId('train-checkpoint');
  return (await el.count()) ? Number(await el.getAttribute('data-step')) : 0;
};

export async function waitDone(page: Page, steps: number): Promise<void> {
  await expect.poll(() => phase(page), { timeout: 150_000 }).toBe(`Done: ${steps} steps.`);
}

export const runRow = (page: Page, name: string) => page.locator(`[data-testid="run-row"][data-run-name="${name}"]`);

/** A stored run's training losses by step, at full precision, as the Runs panel records them. */
export async function runLosses(page: Page, name: string): Promise<{ steps: number[]; losses: number[] }> {
  const row = runRow(page, name);
  const split = (s: string | null): number[] => (s ? s.split(',').map(Number) : []);
  return { steps: split(await row.getAttribute('data-steps')), losses: split(await row.getAttribute('data-losses')) };
}

/** Reload the page (a person pressing F5 mid-run) and wait for WebGPU again. */
export async function reload(page: Page): Promise<void> {
  await page.reload();
  await waitReady(page);
}

/** The checkpoint line's numbers: size in bytes and the two phases of the save. */
export async function checkpointNumbers(page: Page): Promise<{ step: number; bytes: number; readMs: number; writeMs: number }> {
  const el = page.getByTestId('train-checkpoint');
  const n = async (a: string) => Number(await el.getAttribute(a));
  return { step: await n('data-step'), bytes: await n('data-bytes'), readMs: await n('data-read-ms'), writeMs: await n('data-write-ms') };
}
