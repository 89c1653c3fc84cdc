// Merged LoRA exports: the merged weights are W + s·B·A exactly (float64 sum, one rounding), and the
// merged model, loaded as a plain checkpoint, computes what base + adapter computes — for Llama,
// Qwen2 and GPT-2 (Conv1D, fan_in_fan_out), rsLoRA, an NF4 base (QLoRA) and a pre-quantized
// bitsandbytes folder. Also the dtype, config.json and the errors.
import { describe, expect, it } from 'vitest';
import { openBnbCheckpoint, writeBnbCheckpoint } from '../../src/io/bnb';
import { bytesSource } from '../../src/io/bytes';
import { memoryFiles } from '../../src/io/files';
import { directoryFiles } from '../../src/io/files-node';
import { AdapterError, readPeftAdapter, type PeftAdapter } from '../../src/io/peft';
import { openSafetensors, readTensorF32 } from '../../src/io/safetensors';
import { openCheckpoint } from '../../src/model/checkpoint';
import { generate } from '../../src/model/generate';
import { GpuModel, type WeightSource } from '../../src/model/gpu-model';
import { InferenceSession } from '../../src/model/inference';
import { linears, modelLayout } from '../../src/model/layout';
import type { ModelConfig } from '../../src/model/config';
import { uploadAdapter } from '../../src/tune/adapter-io';
import { addLoraDelta, mergeLora } from '../../src/tune/merge';
import { expectClose } from '../helpers/compare';
import { fixture, hasFixture } from '../helpers/fixtures';
import { gpu } from '../helpers/gpu';
import { normal } from '../helpers/random';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

/** A random adapter (B not zero, so it changes the model) over the linears whose short name is in `targets`. */
function randomAdapter(c: ModelConfig, targets: string[], r = 4, opts: { alpha?: number; rslora?: boolean; seed?: number } = {}): PeftAdapter {
  const tensors: PeftAdapter['tensors'] = new Map();
  let seed = opts.seed ?? 7;
  for (const d of modelLayout(c).blocks.flatMap((b) => linears(b))) {
    if (!targets.includes(d.short)) continue;
    tensors.set(d.module, {
      A: Float32Array.from(normal(r * d.in, seed++, 0.3)),
      B: Float32Array.from(normal(d.out * r, seed++, 0.3)),
      r,
      inF: d.in,
      outF: d.out,
    });
  }
  return { lora: { r, alpha: opts.alpha ?? 8, dropout: 0, targets, rslora: opts.rslora ?? false }, tensors };
}

const PROMPT = [3, 14, 15, 92, 6, 5];

/** Last-position logits of `weights` (+ adapter) on the GPU. */
async function logitsOf(weights: WeightSource, adapter: PeftAdapter | null, weightDType: 'f32' | 'nf4' = 'f32'): Promise<Float32Array> {
  const ctx = await gpu();
  const model = await GpuModel.load(ctx, weights, undefined, { weightDType });
  const up = adapter ? uploadAdapter(ctx, model, adapter, 'test adapter') : null;
  const session = new InferenceSession(model, 16, up);
  try {
    return await session.forward(PROMPT);
  } finally {
    session.release();
    up?.release();
    model.release();
  }
}

function expectSameLogits(actual: Float32Array, expected: Float32Array, label: string): void {
  let m = 0;
  for (const v of expected) m = Math.max(m, Math.abs(v));
  expectClose(actual, expected, { rtol: 1e-4, atol: 1e-4 * m }, label);
}

describe('addLoraDelta', () => {
  it('adds s·B·A in the stored layout: [out, in] for nn.Linear, [in, out] for Conv1D', () => {
    // in 3, out 2, r 2
    const A = Float32Array.from([1, 2, 3, -1, 0.5, 0.25]); // [2, 3]
    const B = Float32Array.from([0.5, -2, 1, 1]); // [2, 2]
    const BA = [
      [0.5 * 1 + -2 * -1, 0.5 * 2 + -2 * 0.5, 0.5 * 3 + -2 * 0.25],
      [1 * 1 + 1 * -1, 1 * 2 + 1 * 0.5, 1 * 3 + 1 * 0.25],
    ];
    const w = Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    const outIn = addLoraDelta(w, { in: 3, out: 2, layout: 'out_in', module: 'x' }, { A, B, r: 2 }, 1.5);
    const inOut = addLoraDelta(w, { in: 3, out: 2, layout: 'in_out', module: 'x' }, { A, B, r: 2 }, 1.5);
    for (let o = 0; o < 2; o++) {
      for (let i = 0; i < 3; i++) {
        expect(outIn[o * 3 + i]).toBe(Math.fround(w[o * 3 + i] + 1.5 * BA[o][i]));
        expect(inOut[i * 2 + o]).toBe(Math.fround(w[i * 2 + o] + 1.5 * BA[o][i]));
      }
    }
    expect(w[0]).toBeCloseTo(0.1, 7); // untouched
    expect(() => addLoraDelta(w, { in: 4, out: 2, layout: 'out_in', module: 'm.q_proj' }, { A, B, r: 2 }, 1)).toThrow(/m\.q_proj\.weight holds 6 values, expected 2·4/);
  });
});

describe('mergeLora: the merged checkpoint computes base + adapter', () => {
  const cases: { arch: 'llama' | 'qwen2' | 'gpt2'; targets: string[]; rslora?: boolean }[] = [
    { arch: 'llama', targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
    { arch: 'qwen2', targets: ['q_proj', 'v_proj'], rslora: true },
    { arch: 'gpt2', targets: ['c_attn', 'c_proj', 'c_fc'] },
  ];
  for (const { arch, targets, rslora } of cases) {
    it(`${arch} (${targets.join(',')}${rslora ? ', rsLoRA' : ''})`, async () => {
      const baseFiles = tinyCheckpointFiles(tinyConfigJson(arch), { seed: 3 });
      const ck = await openCheckpoint(memoryFiles('base', baseFiles));
      const adapter = randomAdapter(ck.config, targets, 4, { rslora });
      const result = await mergeLora(ck, adapter);
      expect(result.dtype).toBe('F32');
      expect(result.merged.length).toBe(adapter.tensors.size);

      // Same tensor names, shapes and dtypes as the base; untouched tensors byte for byte.
      const before = await openSafetensors(bytesSource('base', baseFiles['model.safetensors'] as Uint8Array));
      const after = await openSafetensors(bytesSource('merged', result.files['model.safetensors'] as Uint8Array));
      expect(new Set(after.tensors.keys())).toEqual(new Set(before.tensors.keys()));
      for (const [name, info] of before.tensors) {
        const m = after.tensors.get(name)!;
        expect([m.shape, m.dtype]).toEqual([info.shape, info.dtype]);
        const module = (arch === 'gpt2' ? `transformer.${name}` : name).replace(/\.weight$/, '');
        if (!adapter.tensors.has(module)) expect(await readTensorF32(after, name)).toEqual(await readTensorF32(before, name));
      }
      expect(JSON.parse(result.files['config.json'] as string)).toMatchObject({ ...tinyConfigJson(arch), torch_dtype: 'float32' });

      const merged = await openCheckpoint(memoryFiles('merged', result.files));
      expectSameLogits(await logitsOf(merged, null), await logitsOf(ck, adapter), `${arch}: merged vs base + adapter`);
      // And the adapter matters (the check above is not vacuous).
      const base = await logitsOf(ck, null);
      const merged0 = await logitsOf(merged, null);
      expect(Math.max(...merged0.map((v, i) => Math.abs(v - base[i])))).toBeGreaterThan(1e-2);
    });
  }

  it('keeps the base dtype (F16, BF16) unless asked, and says so in config.json', async () => {
    const cfg = tinyConfigJson('llama', { torch_dtype: 'bfloat16' });
    const ck = await openCheckpoint(memoryFiles('bf16', tinyCheckpointFiles(cfg, { dtype: 'BF16' })));
    const adapter = randomAdapter(ck.config, ['q_proj']);
    const kept = await mergeLora(ck, adapter);
    expect(kept.dtype).toBe('BF16');
    expect(JSON.parse(kept.files['config.json'] as string).torch_dtype).toBe('bfloat16');
    const st = await openSafetensors(bytesSource('m', kept.files['model.safetensors'] as Uint8Array));
    expect([...st.tensors.values()].every((t) => t.dtype === 'BF16')).toBe(true);
    const f16 = await mergeLora(ck, adapter, { dtype: 'F16' });
    expect(JSON.parse(f16.files['config.json'] as string).torch_dtype).toBe('float16');
    const st16 = await openSafetensors(bytesSource('m', f16.files['model.safetensors'] as Uint8Array));
    expect([...st16.tensors.values()].every((t) => t.dtype === 'F16')).toBe(true);
    // The f16 weights are the f32 merge rounded once more.
    const f32 = await mergeLora(ck, adapter, { dtype: 'F32' });
    const st32 = await openSafetensors(bytesSource('m', f32.files['model.safetensors'] as Uint8Array));
    const name = 'model.layers.1.self_attn.q_proj.weight';
    expectClose(await readTensorF32(st16, name), await readTensorF32(st32, name), { rtol: 1e-3, atol: 1e-4 }, 'f16 merge');
  });

  it('QLoRA: nf4Base merges into NF4(W), which is what the adapter ran on', async () => {
    const ck = await openCheckpoint(memoryFiles('base', tinyCheckpointFiles(tinyConfigJson('llama'), { seed: 5 })));
    const adapter = randomAdapter(ck.config, ['q_proj', 'v_proj', 'down_proj']);
    const result = await mergeLora(ck, adapter, { nf4Base: true });
    const merged = await openCheckpoint(memoryFiles('merged', result.files));
    const onNf4 = await logitsOf(ck, adapter, 'nf4');
    expectSameLogits(await logitsOf(merged, null), onNf4, 'merged(NF4 base) vs NF4 base + adapter');
    // Merging into W instead gives a different model (the 4-bit rounding is real).
    const intoW = await openCheckpoint(memoryFiles('merged-w', (await mergeLora(ck, adapter)).files));
    const w = await logitsOf(intoW, null);
    expect(Math.max(...w.map((v, i) => Math.abs(v - onNf4[i])))).toBeGreaterThan(1e-3);
  });

  it('a pre-quantized bitsandbytes folder: dequantized base + ΔW, without quantization_config', async () => {
    const ck = await openCheckpoint(memoryFiles('base', tinyCheckpointFiles(tinyConfigJson('qwen2'), { seed: 4 })));
    const bnb = await openBnbCheckpoint(memoryFiles('bnb', await writeBnbCheckpoint(ck)));
    const adapter = randomAdapter(bnb.config, ['k_proj', 'o_proj', 'gate_proj']);
    const result = await mergeLora(bnb, adapter);
    expect(result.dtype).toBe('F32');
    const cfg = JSON.parse(result.files['config.json'] as string);
    expect(cfg.quantization_config).toBeUndefined();
    const merged = await openCheckpoint(memoryFiles('merged', result.files));
    expectSameLogits(await logitsOf(merged, null), await logitsOf(bnb, adapter), 'merged(bnb) vs bnb + adapter');
  });

  it('refuses an adapter made for another model, naming the file and tensor', async () => {
    const ck = await openCheckpoint(memoryFiles('base', tinyCheckpointFiles(tinyConfigJson('llama'))));
    const wide = await openCheckpoint(memoryFiles('wide', tinyCheckpointFiles(tinyConfigJson('llama', { hidden_size: 48 }))));
    const adapter = randomAdapter(wide.config, ['q_proj']);
    await expect(mergeLora(ck, adapter, { adapterFiles: { config: 'a/adapter_config.json', weights: 'a/adapter_model.safetensors' } })).rejects.toThrow(
      /a\/adapter_model\.safetensors: tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight" is \[4, 48\], but model\.layers\.0\.self_attn\.q_proj takes 32 inputs/,
    );
    const none: PeftAdapter = { lora: { r: 4, alpha: 8, dropout: 0, targets: ['q_proj'], rslora: false }, tensors: new Map() };
    await expect(mergeLora(ck, none)).rejects.toThrow(AdapterError);
  });
});

describe.skipIf(!hasFixture('peft-adapter-gpt2-causal'))('merging a real PEFT adapter (GPT-2, fan_in_fan_out)', () => {
  it('layer 0 of the adapter merged into a one-layer GPT-2 of its size computes what the adapter computes', async () => {
    const adapter = await readPeftAdapter(directoryFiles(fixture('peft-adapter-gpt2-causal')));
    const cfgJson = tinyConfigJson('gpt2', { n_embd: 768, n_head: 12, n_layer: 1, vocab_size: 97, n_positions: 16 });
    const ck = await openCheckpoint(memoryFiles('gpt2-1layer', tinyCheckpointFiles(cfgJson, { seed: 8 })));
    const layer0: PeftAdapter = { lora: adapter.lora, tensors: new Map([...adapter.tensors].filter(([m]) => m.startsWith('transformer.h.0.'))) };
    const result = await mergeLora(ck, layer0);
    expect(result.merged).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.0.attn.c_proj', 'transformer.h.0.mlp.c_proj']);
    const merged = await openCheckpoint(memoryFiles('merged', result.files));
    expectSameLogits(await logitsOf(merged, null), await logitsOf(ck, layer0), 'real adapter merged');
  });
});

describe.skipIf(!hasFixture('stories260k'))('merging into a real pretrained model (stories260k)', () => {
  it('greedy text of the merged model equals base + adapter', async () => {
    const ck = await openCheckpoint(directoryFiles(fixture('stories260k')));
    const adapter = randomAdapter(ck.config, ['q_proj', 'v_proj', 'up_proj'], 8, { alpha: 4, seed: 21 });
    const result = await mergeLora(ck, adapter);
    expect(Object.keys(result.files)).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']));
    const merged = await openCheckpoint(memoryFiles('merged', result.files));
    const ctx = await gpu();
    const run = async (w: WeightSource, a: PeftAdapter | null): Promise<number[]> => {
      const model = await GpuModel.load(ctx, w);
      const up = a ? uploadAdapter(ctx, model, a, 'a') : null;
      const session = new InferenceSession(model, 48, up);
      try {
        return (await generate(session, [1, 403, 407, 261, 378], { temperature: 0, maxNewTokens: 24 })).ids;
      } finally {
        session.release();
        up?.release();
        model.release();
      }
    };
    const withAdapter = await run(ck, adapter);
    expect(await run(merged, null)).toEqual(withAdapter);
    expect(await run(ck, null)).not.toEqual(withAdapter);
  });
});
