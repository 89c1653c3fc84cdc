// The `webtune` bin, run as a user runs it (a separate process through bin/webtune.mjs).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { directoryFiles } from '../../src/io/files-node';
import { openCheckpoint } from '../../src/model/checkpoint';
import { argmax } from '../../src/model/sampling';
import { referenceLogits } from '../../src/ref/model';
import { fixture, hasFixture } from '../helpers/fixtures';
import { tinyCheckpointFiles, tinyConfigJson, writeFilesToDir } from '../helpers/tiny-models';

const root = join(import.meta.dirname, '..', '..');

function webtune(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'webtune.mjs'), ...args], { encoding: 'utf8', timeout: 180_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('webtune CLI', () => {
  it('prints usage and exits 2 without a command or with bad arguments', () => {
    expect(webtune().code).toBe(2);
    const r = webtune('generate', '--prompt', 'x');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--model is required/);
  });

  it('info describes a tiny checkpoint', () => {
    const dir = writeFilesToDir(mkdtempSync(join(tmpdir(), 'webtune-cli-')), tinyCheckpointFiles(tinyConfigJson('gpt2')));
    const r = webtune('info', '--model', dir, '--json');
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.architecture).toBe('GPT2LMHeadModel');
    expect(info.parameters).toBe(info.parametersInFiles);
    expect(info.memoryPlan.f32.weightBytes).toBe(info.parameters * 4);
  });

  it('names an unsupported architecture and exits 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-cli-'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['BertForMaskedLM'] }));
    const r = webtune('info', '--model', dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/UnsupportedModelError: config\.json: architecture BertForMaskedLM is not supported/);
  });

  it.skipIf(!hasFixture('stories260k'))('generate --json on stories260k equals greedy decoding of the reference model', async () => {
    const r = webtune('generate', '--model', fixture('stories260k'), '--prompt', 'Once upon a time', '--max-new-tokens', '24', '--temperature', '0', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { prompt_ids: number[]; ids: number[]; text: string };
    expect(out.prompt_ids[0]).toBe(1);
    const ck = await openCheckpoint(directoryFiles(fixture('stories260k')));
    const w = new Map<string, Float64Array>();
    for (const name of ck.tensors.keys()) w.set(name, Float64Array.from(await ck.readF32(name)));
    const seq = [...out.prompt_ids];
    const V = ck.config.vocabSize;
    for (const id of out.ids) {
      const next = argmax(referenceLogits(ck.config, w, [seq]).subarray((seq.length - 1) * V));
      expect(id).toBe(next);
      seq.push(next);
      if (next === 2) break;
    }
    expect(out.text).toMatch(/there was a little/);
  });

  it.skipIf(!hasFixture('stories260k'))('generate --prompt-ids with sampling is reproducible for a seed', () => {
    const args = ['generate', '--model', fixture('stories260k'), '--prompt-ids', '1', '--max-new-tokens', '12', '--temperature', '0.8', '--top-k', '40', '--top-p', '0.95', '--seed', '5', '--json'];
    const a = webtune(...args);
    const b = webtune(...args);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout).ids).toEqual(JSON.parse(b.stdout).ids);
    expect(JSON.parse(a.stdout).ids.length).toBeGreaterThan(0);
  });
});
