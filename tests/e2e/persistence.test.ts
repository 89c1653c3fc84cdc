// Runs that survive what a browser tab goes through, in headless Chromium on SwiftShader WebGPU
// against the built site, with the browser's real IndexedDB:
//   - a page reload mid-run, then Resume from the Runs panel: the losses after the resume point are
//     exactly those of an uninterrupted run of the same configuration (both run here, same device);
//   - GPUDevice.destroy() mid-run (test hook): the worker gets a new device, reloads the model and the
//     last checkpoint, and the run ends with the uninterrupted run's losses;
//   - a full disk (test hook: the next checkpoint write fails with a QuotaExceededError DOMException):
//     the run pauses with a message, the previous checkpoint stays and is what a later resume loads,
//     and Resume after it continues.
// The test hooks exist only with ?test-hooks in the page's URL (src/ui/worker-client.ts).
// Also measured here: the demo run's checkpoint size and save time (read-back + one transaction).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkpointNumbers, checkpointStep, currentStep, loadDemo, openApp, phase, reload, runLosses, runRow, setUpRun, waitDone } from './flows';
import { root, useBuiltSite } from './harness';

const SHOTS = process.env.WEBTUNE_SCREENSHOTS ?? join(root, '.test-results', 'screenshots');
const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, name), fullPage: true });

/** Optimizer steps of every run here; a checkpoint every EVERY steps. */
const STEPS = 16;
const EVERY = 2;

const hooks = (page: Page, name: 'destroyDevice' | 'failNextSave') =>
  page.evaluate((n) => (window as unknown as { __webtuneTestHooks: Record<string, () => Promise<void>> }).__webtuneTestHooks[n](), name);

/** Pause once the run has done `steps` steps; resolves when it holds (its pause checkpoint saved). */
async function pauseAfter(page: Page, steps: number): Promise<void> {
  await expect.poll(() => currentStep(page), { timeout: 120_000 }).toBeGreaterThanOrEqual(steps);
  await page.getByRole('button', { name: 'Pause' }).click();
  await expect.poll(() => phase(page), { timeout: 60_000 }).toMatch(/^Paused after step \d+\./);
  await expect.poll(async () => (await checkpointStep(page)) === (await currentStep(page)), { timeout: 30_000 }).toBe(true);
}

describe('runs survive reloads, lost GPUs and full disks (built site, headless Chromium)', () => {
  const env = useBuiltSite();
  /** The uninterrupted run's losses, step 1…STEPS. */
  let baseline: number[] = [];

  beforeAll(() => {
    mkdirSync(SHOTS, { recursive: true });
  });

  /** A new tab with the test hooks, training the demo run, held after EVERY steps (its pause checkpoint saved). */
  const heldRun = async () => {
    const context = await env.browser.newContext({ viewport: { width: 1280, height: 900 } });
    const app = await openApp(context, `${env.url}?test-hooks`);
    await loadDemo(app.page);
    await setUpRun(app.page, { steps: STEPS, every: EVERY });
    await app.page.getByRole('button', { name: 'Start training' }).click();
    await pauseAfter(app.page, EVERY);
    return { context, ...app };
  };

  it('reload mid-run → Resume: the losses after the resume point equal an uninterrupted run’s', { timeout: 180_000 }, async () => {
    const context = await env.browser.newContext({ viewport: { width: 1280, height: 900 } });
    const { page, errors } = await openApp(context, env.url);
    await loadDemo(page);
    await setUpRun(page, { steps: STEPS, every: EVERY });

    // The uninterrupted run.
    await page.getByRole('button', { name: 'Start training' }).click();
    await waitDone(page, STEPS);
    await expect.poll(async () => (await runLosses(page, 'run 1')).losses.length, { timeout: 30_000 }).toBe(STEPS);
    const first = await runLosses(page, 'run 1');
    expect(first.steps).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    baseline = first.losses;
    expect(baseline.every(Number.isFinite)).toBe(true);
    const ck = await checkpointNumbers(page);
    console.log(
      `demo LoRA checkpoint (all-linear r=8: trainable tensors + AdamW m, v): ${ck.bytes} bytes; ` +
        `last save: GPU read-back ${ck.readMs} ms + one IndexedDB transaction ${ck.writeMs} ms (step ${ck.step})`,
    );
    expect(ck.bytes).toBeGreaterThan(3 * 32_800 * 4); // 32.8 K parameters × (weights, m, v) × f32
    expect(ck.step).toBe(STEPS);

    // The same configuration again, interrupted by a reload once a checkpoint exists and steps went past it.
    await page.getByRole('button', { name: 'Start training' }).click();
    await expect.poll(() => checkpointStep(page), { timeout: 120_000 }).toBeGreaterThanOrEqual(EVERY);
    await expect.poll(async () => (await currentStep(page)) > (await checkpointStep(page)), { timeout: 60_000 }).toBe(true);
    const reloadedAt = await currentStep(page);
    expect(reloadedAt).toBeLessThan(STEPS);
    await reload(page);

    // The run list offers to resume the interrupted run; Resume loads the demo model by itself.
    const row = runRow(page, 'run 2');
    await expect.poll(() => row.getByTestId('run-status').textContent(), { timeout: 30_000 }).toBe('interrupted');
    expect(await page.getByTestId('runs-interrupted').textContent()).toMatch(/Run “run 2” was interrupted/);
    await shot(page, 'persist-interrupted.png');
    const savedStep = Number(/checkpoint at step (\d+)/.exec((await row.getByTestId('run-checkpoint').textContent()) ?? '')?.[1]);
    expect(savedStep).toBeGreaterThanOrEqual(EVERY);
    expect(savedStep).toBeLessThan(STEPS); // (a save may have landed as the page went away)
    await page.getByRole('button', { name: 'Resume run 2' }).click();
    await expect.poll(() => page.getByTestId('train-resumed').textContent(), { timeout: 120_000 }).toBe(`Resumed from the checkpoint of step ${savedStep}.`);
    await waitDone(page, STEPS);
    await expect.poll(async () => (await runLosses(page, 'run 2')).losses.length, { timeout: 30_000 }).toBe(STEPS);
    const resumed = await runLosses(page, 'run 2');
    // Steps after the resume point were computed after the reload, from the stored checkpoint and data.
    expect(resumed.losses.slice(savedStep)).toEqual(baseline.slice(savedStep));
    expect(resumed.losses).toEqual(baseline);
    await shot(page, 'persist-resumed.png');
    expect(await page.getByTestId('train-notices').count()).toBe(0);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('GPUDevice.destroy() mid-run: a new device, the last checkpoint, and the same losses', { timeout: 180_000 }, async () => {
    expect(baseline).toHaveLength(STEPS);
    // Held at a known point (pausing saves a checkpoint), then the device goes during the next step.
    const { context, page, errors } = await heldRun();
    const lostAt = await currentStep(page);
    expect(await checkpointStep(page)).toBe(lostAt);
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await hooks(page, 'destroyDevice');

    const notices = page.getByTestId('train-notice');
    await expect.poll(() => notices.first().textContent(), { timeout: 60_000 }).toMatch(/The GPU device was lost.*destroyed/);
    await expect.poll(() => page.locator('[data-testid="train-notice"][data-name="DeviceRecovered"]').count(), { timeout: 120_000 }).toBe(1);
    const recovered = (await page.locator('[data-testid="train-notice"][data-name="DeviceRecovered"]').textContent()) ?? '';
    const from = Number(/the checkpoint of step (\d+)/.exec(recovered)?.[1]);
    expect(from).toBeGreaterThanOrEqual(lostAt);
    await waitDone(page, STEPS);
    await expect.poll(async () => (await runLosses(page, 'run 1')).losses.length, { timeout: 30_000 }).toBe(STEPS);
    expect((await runLosses(page, 'run 1')).losses).toEqual(baseline);
    await shot(page, 'persist-device-recovered.png');

    // The model works on the new device too.
    await page.getByLabel('Prompt').fill('What is the capital of France?');
    await page.getByLabel('Max new tokens').fill('4');
    await page.getByLabel('Temperature').fill('0');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('gen-stats').textContent(), { timeout: 60_000 }).toMatch(/\d+ tokens/);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('a full disk pauses the run with a message, keeps the previous checkpoint, and Resume continues', { timeout: 180_000 }, async () => {
    expect(baseline).toHaveLength(STEPS);
    const { context, page, errors } = await heldRun();

    // The next checkpoint write fails: the run pauses and says why; nothing was lost.
    await hooks(page, 'failNextSave');
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    const quota = page.locator('[data-testid="train-notice"][data-name="StorageQuotaError"]');
    await quota.waitFor({ timeout: 60_000 });
    const message = (await quota.textContent()) ?? '';
    console.log(`the quota message: ${message}`);
    expect(message).toMatch(/The browser’s storage is full: the run is paused/);
    expect(message).toMatch(/Not enough storage for the checkpoint of run "run 1" at step \d+/);
    const kept = Number(/Nothing was lost: the previous checkpoint \(step (\d+)\) is intact/.exec(message)?.[1]);
    expect(kept).toBeGreaterThanOrEqual(EVERY);
    expect(await quota.getAttribute('role')).toBe('alert');
    await expect.poll(() => phase(page), { timeout: 30_000 }).toMatch(/^Paused after step \d+\./);
    const pausedAt = await currentStep(page);
    expect(pausedAt).toBeGreaterThan(kept);
    expect(await checkpointStep(page)).toBe(kept);
    // The store holds exactly the previous checkpoint; the Storage panel lists what could be freed.
    const items = page.getByTestId('freeable-item');
    await expect.poll(() => page.getByTestId('storage-freeable').textContent(), { timeout: 30_000 }).toContain(`checkpoint of run "run 1" at step ${kept}`);
    expect(await items.filter({ hasText: 'checkpoint of run' }).count()).toBe(1);
    expect(await page.getByTestId('storage-usage').textContent()).toMatch(/Using .* of the .* this browser allows this site/);
    await page.waitForTimeout(1000);
    expect(await currentStep(page)).toBe(pausedAt);
    await shot(page, 'persist-quota-paused.png');

    // Space freed (the hook fails one write only): Resume writes the owed checkpoint and continues.
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await expect.poll(() => checkpointStep(page), { timeout: 60_000 }).toBe(pausedAt);

    // Again (this time the save of a pause fails), then a reload: the resume loads the last good checkpoint.
    // Pause as soon as the run is going again (the button shows once it is), so it holds well before the
    // end however fast the steps are on this machine.
    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => phase(page), { timeout: 60_000 }).toMatch(/^Paused after step \d+\./);
    const good = await checkpointStep(page);
    expect(good).toBe(await currentStep(page)); // pausing saves
    expect(good).toBeGreaterThanOrEqual(pausedAt);
    expect(good).toBeLessThan(STEPS - 1);
    await hooks(page, 'failNextSave');
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await expect.poll(() => currentStep(page), { timeout: 60_000 }).toBeGreaterThan(good);
    // (An autosave may fail first and pause the run by itself: then there is no Pause button to press.)
    await page.getByRole('button', { name: 'Pause' }).click({ timeout: 5000 }).catch(() => {});
    await expect.poll(() => quota.count(), { timeout: 60_000 }).toBe(2);
    expect(await quota.last().textContent()).toContain(`the previous checkpoint (step ${good}) is intact`);
    await expect.poll(() => phase(page), { timeout: 30_000 }).toMatch(/^Paused after step \d+\./);
    expect(await currentStep(page)).toBeGreaterThan(good);

    await reload(page);
    const row = runRow(page, 'run 1');
    await expect.poll(() => row.getByTestId('run-checkpoint').textContent(), { timeout: 30_000 }).toMatch(new RegExp(`checkpoint at step ${good} `));
    await page.getByRole('button', { name: 'Resume run 1' }).click();
    await expect.poll(() => page.getByTestId('train-resumed').textContent(), { timeout: 120_000 }).toBe(`Resumed from the checkpoint of step ${good}.`);
    await waitDone(page, STEPS);
    await expect.poll(async () => (await runLosses(page, 'run 1')).losses.length, { timeout: 30_000 }).toBe(STEPS);
    expect((await runLosses(page, 'run 1')).losses).toEqual(baseline);
    expect(errors).toEqual([]);
    await context.close();
  });
});
