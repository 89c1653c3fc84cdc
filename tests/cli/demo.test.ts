// `webtune demo`: the built-in demo end to end, offline, as a user runs it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

describe('webtune demo', () => {
  it('fine-tunes the pretrained demo model with LoRA: loss falls and the answers change', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'webtune-demo-')), 'adapter');
    const r = spawnSync(process.execPath, [join(root, 'bin', 'webtune.mjs'), 'demo', '--steps', '40', '--out', out, '--json'], {
      encoding: 'utf8',
      timeout: 600_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/prompt: Which pet does Mia have\?/);
    expect(r.stdout).toMatch(/before: /);
    expect(r.stdout).toMatch(/after: /);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { before: string[]; after: string[]; losses: number[] };
    expect(summary.losses.length).toBe(40);
    expect(summary.losses[39]).toBeLessThan(summary.losses[0] * 0.5);
    expect(summary.after).not.toEqual(summary.before);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).peft_type).toBe('LORA');
  });
});
