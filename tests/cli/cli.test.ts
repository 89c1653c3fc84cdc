// The `webtune` bin, run as a user runs it (a separate process through bin/webtune.mjs).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { directoryFiles } from '../../src/io/files-node';
import { openCheckpoint } from '../../src/model/checkpoint';
import { argmax } from '../../src/model/sampling';
import { referenceLogits } from '../../src/ref/model';
import { writePeftAdapter } from '../../src/tune/adapter-io';
import { linears, modelLayout } from '../../src/model/layout';
import { parseConfig } from '../../src/model/config';
import type { PeftAdapter } from '../../src/io/peft';
import { fixture, hasFixture } from '../helpers/fixtures';
import { greedyOnnx } from '../helpers/onnx';
import { normal } from '../helpers/random';
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

  it('merge writes a plain checkpoint that generates what base + adapter generates; onnx exports it', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'webtune-cli-merge-'));
    const cfgJson = tinyConfigJson('llama');
    const model = writeFilesToDir(join(tmp, 'base'), tinyCheckpointFiles(cfgJson, { seed: 2 }));
    const c = parseConfig(cfgJson);
    const tensors: PeftAdapter['tensors'] = new Map();
    let seed = 40;
    for (const d of modelLayout(c).blocks.flatMap((b) => linears(b)).filter((d) => d.short === 'q_proj' || d.short === 'down_proj')) {
      tensors.set(d.module, { A: Float32Array.from(normal(4 * d.in, seed++, 0.3)), B: Float32Array.from(normal(d.out * 4, seed++, 0.3)), r: 4, inF: d.in, outF: d.out });
    }
    const adapter = writeFilesToDir(join(tmp, 'adapter'), writePeftAdapter(c, { lora: { r: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'down_proj'], rslora: false }, tensors }, 'tiny'));
    const out = join(tmp, 'merged');
    const r = webtune('merge', '--model', model, '--adapter', adapter, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/merged 4 layers into the base weights .* wrote 2 files .*F32/);
    const gen = ['--prompt-ids', '1,5,9', '--max-new-tokens', '12', '--temperature', '0', '--json'];
    const merged = webtune('generate', '--model', out, ...gen);
    const withAdapter = webtune('generate', '--model', model, '--adapter', adapter, ...gen);
    const plain = webtune('generate', '--model', model, ...gen);
    expect(merged.code, merged.stderr).toBe(0);
    expect(JSON.parse(merged.stdout).ids).toEqual(JSON.parse(withAdapter.stdout).ids);
    expect(JSON.parse(merged.stdout).ids).not.toEqual(JSON.parse(plain.stdout).ids);

    // The same through ONNX: `webtune onnx` with the adapter, run greedily by onnxruntime-web.
    const onnxFile = join(tmp, 'onnx', 'model.onnx');
    const o = webtune('onnx', '--model', model, '--adapter', adapter, '--out', onnxFile);
    expect(o.code, o.stderr).toBe(0);
    expect(o.stderr + o.stdout).toMatch(/ONNX opset 17, with KV cache, adapter merged/);
    const onnxIds = await greedyOnnx(readFileSync(onnxFile), c, [1, 5, 9], 12, c.eosTokenIds);
    expect(onnxIds).toEqual(JSON.parse(merged.stdout).ids.filter((id: number) => !c.eosTokenIds.includes(id)));

    const bf16 = webtune('merge', '--model', model, '--adapter', adapter, '--out', join(tmp, 'bf16'), '--dtype', 'bf16');
    expect(bf16.code, bf16.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(tmp, 'bf16', 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const bad = webtune('merge', '--model', model, '--adapter', adapter, '--out', join(tmp, 'x'), '--dtype', 'int8');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dtype must be f32, f16 or bf16, got "int8"/);
  });
});
