// `webtune train` / `eval` end to end as a user runs them (separate processes).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, hasFixture } from '../helpers/fixtures';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'webtune.mjs');

function webtune(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A small task the pretrained TinyStories model does not know: a fixed reply pattern. */
function writeTask(dir: string): { train: string; val: string } {
  const names = ['Lily', 'Tom', 'Sue', 'Max', 'Ben', 'Anna', 'Tim', 'Mia'];
  const things = ['ball', 'cat', 'dog', 'tree', 'cake', 'bird', 'car', 'hat'];
  const rows = (k: number, off: number) =>
    Array.from({ length: k }, (_, i) => {
      const n = names[(i + off) % names.length];
      const t = things[(i * 3 + off) % things.length];
      return JSON.stringify({ prompt: `${n} saw a ${t}.`, completion: ` ${n} said: I love the ${t}!` });
    }).join('\n');
  const train = join(dir, 'train.jsonl');
  const val = join(dir, 'val.jsonl');
  writeFileSync(train, rows(48, 0));
  writeFileSync(val, rows(8, 5));
  return { train, val };
}

describe.skipIf(!hasFixture('stories260k'))('webtune train on the stories260k fixture', () => {
  it('LoRA lowers validation loss; the JSON log has the documented fields; eval agrees', () => {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-train-'));
    const { train, val } = writeTask(dir);
    const model = fixture('stories260k');
    const before = webtune('eval', '--model', model, '--data', val, '--json');
    expect(before.code, before.stderr).toBe(0);
    const out = join(dir, 'out');
    const log = join(dir, 'log.jsonl');
    const r = webtune('train', '--model', model, '--data', train, '--eval-data', val, '--method', 'lora', '--r', '8', '--alpha', '16',
      '--lr', '5e-3', '--steps', '12', '--batch-size', '8', '--eval-every', '6', '--seed', '3', '--out', out, '--json-log', log);
    expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBe(12);
    for (const l of lines) for (const k of ['step', 'loss', 'lr', 'grad_norm', 'tokens', 'tokens_per_s']) expect(l, k).toHaveProperty(k);
    expect(lines[5]).toHaveProperty('eval_loss');
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'train_state', 'state.json'))).toBe(true);
    const after = webtune('eval', '--model', model, '--adapter', out, '--data', val, '--json');
    const lb = JSON.parse(before.stdout).loss;
    const la = JSON.parse(after.stdout).loss;
    expect(la).toBeLessThan(lb * 0.5);
    expect(Math.abs(lines[11].eval_loss - la)).toBeLessThan(1e-3);
  });

  it('Ctrl-C saves a resumable state; --resume finishes the run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-sigint-'));
    const { train } = writeTask(dir);
    const out = join(dir, 'out');
    const log = join(dir, 'log.jsonl');
    const args = [bin, 'train', '--model', fixture('stories260k'), '--data', train, '--method', 'lora', '--steps', '40', '--batch-size', '4', '--out', out, '--json-log', log];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // Wait for the first few steps, then interrupt.
    const t0 = Date.now();
    while (!(existsSync(log) && readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).length >= 3)) {
      if (Date.now() - t0 > 120_000) throw new Error(`no progress: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGINT');
    const code = await new Promise<number>((res) => child.on('exit', (c) => res(c ?? -1)));
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/stopped at step \d+; saved to .* \(resume with --resume/);
    const state = JSON.parse(readFileSync(join(out, 'train_state', 'state.json'), 'utf8'));
    expect(state.step).toBeGreaterThanOrEqual(3);
    expect(state.step).toBeLessThan(40);
    const r = webtune(...args.slice(1), '--resume', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`resumed at step ${state.step} of 40`));
    expect(r.stderr).toMatch(/done: 40 steps/);
  });

  it('refuses malformed data naming the file and line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-bad-'));
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"prompt": "a", "completion": "b"}\n{"prompt": "a" "completion": "b"}\n');
    const r = webtune('train', '--model', fixture('stories260k'), '--data', bad, '--out', join(dir, 'o'), '--steps', '1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/bad\.jsonl:2: /);
  });
});
