// PEFT adapter files: exactly the keys, shapes, dtypes and config PEFT expects; a saved adapter
// loads back to the same model; a real adapter trained elsewhere loads and runs.
import { describe, expect, it } from 'vitest';
import { bytesSource } from '../../src/io/bytes';
import { memoryFiles } from '../../src/io/files';
import { directoryFiles } from '../../src/io/files-node';
import { readPeftAdapter } from '../../src/io/peft';
import { openSafetensors } from '../../src/io/safetensors';
import { openCheckpoint } from '../../src/model/checkpoint';
import { generate } from '../../src/model/generate';
import { GpuModel } from '../../src/model/gpu-model';
import { InferenceSession } from '../../src/model/inference';
import { referenceLogits } from '../../src/ref/model';
import { exportPeftAdapter, loadAdapterIntoPlan } from '../../src/tune/adapter-io';
import type { Example } from '../../src/tune/data';
import { planMethod, releasePlan } from '../../src/tune/methods';
import { Trainer } from '../../src/tune/trainer';
import { expectClose } from '../helpers/compare';
import { fixture, hasFixture } from '../helpers/fixtures';
import { gpu } from '../helpers/gpu';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

const V010_KEYS = [
  'alpha_pattern', 'auto_mapping', 'base_model_name_or_path', 'bias', 'fan_in_fan_out', 'inference_mode', 'init_lora_weights',
  'layer_replication', 'layers_pattern', 'layers_to_transform', 'loftq_config', 'lora_alpha', 'lora_dropout', 'megatron_config',
  'megatron_core', 'modules_to_save', 'peft_type', 'r', 'rank_pattern', 'revision', 'target_modules', 'task_type', 'use_dora', 'use_rslora',
];

const examples: Example[] = Array.from({ length: 8 }, (_, i) => {
  const ids = Uint32Array.from({ length: 9 }, (_, t) => (i * 11 + t * 3 + 1) % 97);
  return { inputIds: ids, labels: Int32Array.from(ids), file: 'mem', line: i + 1 };
});

async function trainTiny(arch: 'llama' | 'gpt2', targets: string[]) {
  const ctx = await gpu();
  const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson(arch), { seed: 6 })));
  const model = await GpuModel.load(ctx, ck);
  const trainer = new Trainer(ctx, model, { train: examples, validation: null, reference: null }, {
    method: { method: 'lora', lora: { r: 4, alpha: 8, dropout: 0, targets, rslora: false } },
    optimizer: { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
    schedule: 'constant', warmupSteps: 0, batchSize: 4, gradAccum: 1, steps: 4, seed: 1, shuffle: true, evalEvery: 0, padId: 0,
  });
  await trainer.run();
  return { ctx, ck, model, trainer };
}

describe('PEFT adapter export', () => {
  it('llama: config keys and safetensors keys/shapes/dtypes as PEFT writes them', async () => {
    const { ctx, ck, model, trainer } = await trainTiny('llama', ['q_proj', 'v_proj']);
    const files = await exportPeftAdapter(ctx, ck.config, trainer.plan, 'org/tiny');
    const cfg = JSON.parse(files['adapter_config.json']);
    expect(Object.keys(cfg)).toEqual(V010_KEYS);
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, fan_in_fan_out: false, bias: 'none', target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'org/tiny', use_rslora: false, inference_mode: true });
    const st = await openSafetensors(bytesSource('adapter_model.safetensors', files['adapter_model.safetensors']));
    expect(st.metadata).toEqual({ format: 'pt' });
    const C = ck.config.hiddenSize;
    const kv = ck.config.numKvHeads * ck.config.headDim;
    const want = new Map<string, number[]>();
    for (let i = 0; i < ck.config.numLayers; i++) {
      want.set(`base_model.model.model.layers.${i}.self_attn.q_proj.lora_A.weight`, [4, C]);
      want.set(`base_model.model.model.layers.${i}.self_attn.q_proj.lora_B.weight`, [ck.config.numHeads * ck.config.headDim, 4]);
      want.set(`base_model.model.model.layers.${i}.self_attn.v_proj.lora_A.weight`, [4, C]);
      want.set(`base_model.model.model.layers.${i}.self_attn.v_proj.lora_B.weight`, [kv, 4]);
    }
    expect(new Set(st.tensors.keys())).toEqual(new Set(want.keys()));
    for (const [k, shape] of want) {
      expect(st.tensors.get(k)!.shape).toEqual(shape);
      expect(st.tensors.get(k)!.dtype).toBe('F32');
    }
    // The header is padded with spaces to a multiple of 8, as safetensors' writer does.
    const n = Number(new DataView(files['adapter_model.safetensors'].buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    trainer.release();
    model.release();
  });

  it('gpt2: fan_in_fan_out true and one c_attn adapter over fused q,k,v; load → generate equals the in-memory model', async () => {
    const { ctx, ck, model, trainer } = await trainTiny('gpt2', ['c_attn', 'c_proj']);
    const files = await exportPeftAdapter(ctx, ck.config, trainer.plan, null);
    const cfg = JSON.parse(files['adapter_config.json']);
    expect(cfg.fan_in_fan_out).toBe(true);
    const st = await openSafetensors(bytesSource('adapter_model.safetensors', files['adapter_model.safetensors']));
    const C = ck.config.hiddenSize;
    expect(st.tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.shape).toEqual([3 * C, 4]);
    expect(st.tensors.get('base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight')!.shape).toEqual([4, ck.config.intermediateSize]);
    // In memory vs reloaded from the files.
    const prompt = [3, 14, 15, 92];
    const live = new InferenceSession(model, 32, trainer.plan);
    const a = await generate(live, prompt, { temperature: 0, maxNewTokens: 10 });
    const adapter = await readPeftAdapter(memoryFiles('saved', files));
    const plan = planMethod(ctx, model, { method: 'lora', lora: adapter.lora }, 99);
    loadAdapterIntoPlan(ctx, plan, adapter);
    const loaded = new InferenceSession(model, 32, plan);
    const b = await generate(loaded, prompt, { temperature: 0, maxNewTokens: 10 });
    expect(b.ids).toEqual(a.ids);
    const base = await generate(new InferenceSession(model, 32), prompt, { temperature: 0, maxNewTokens: 10 });
    expect(base.ids).not.toEqual(a.ids);
    live.release();
    loaded.release();
    releasePlan(ctx, plan);
    trainer.release();
    model.release();
  });

  it('refuses an adapter for a different base model, naming the tensor', async () => {
    const { ctx, ck, model, trainer } = await trainTiny('llama', ['q_proj']);
    const files = await exportPeftAdapter(ctx, ck.config, trainer.plan, null);
    const other = await openCheckpoint(memoryFiles('wide', tinyCheckpointFiles(tinyConfigJson('llama', { hidden_size: 48 }))));
    const otherModel = await GpuModel.load(ctx, other);
    const adapter = await readPeftAdapter(memoryFiles('saved', files));
    const plan = planMethod(ctx, otherModel, { method: 'lora', lora: adapter.lora }, 0);
    expect(() => loadAdapterIntoPlan(ctx, plan, adapter)).toThrow(/q_proj\.lora_A\/B is \[4, 32\].*needs \[4, 48\].*different base model/);
    await expect(readPeftAdapter(memoryFiles('x', { 'adapter_config.json': '{"peft_type":"IA3"}' }))).rejects.toThrow(/only LORA adapters/);
    releasePlan(ctx, plan);
    otherModel.release();
    trainer.release();
    model.release();
  });
});

describe.skipIf(!hasFixture('peft-adapter-gpt2-causal'))('a real PEFT adapter trained elsewhere (GPT-2, r=8, c_attn + c_proj)', () => {
  it('reads its config and tensors, and runs it exactly as the merged-weights math says', async () => {
    const adapter = await readPeftAdapter(directoryFiles(fixture('peft-adapter-gpt2-causal')));
    expect(adapter.lora).toMatchObject({ r: 8, alpha: 32, targets: ['c_attn', 'c_proj'] });
    expect(adapter.baseModel).toBe('gpt2');
    expect(adapter.tensors.size).toBe(36);
    expect(adapter.tensors.get('transformer.h.0.attn.c_attn')).toMatchObject({ r: 8, inF: 768, outF: 2304 });
    // A one-layer GPT-2 with the real hidden size, and the adapter's layer-0 tensors.
    const ctx = await gpu();
    const cfgJson = tinyConfigJson('gpt2', { n_embd: 768, n_head: 12, n_layer: 1, vocab_size: 61, n_positions: 16 });
    const ck = await openCheckpoint(memoryFiles('gpt2-1layer', tinyCheckpointFiles(cfgJson, { seed: 8 })));
    const model = await GpuModel.load(ctx, ck);
    const layer0 = { lora: adapter.lora, tensors: new Map([...adapter.tensors].filter(([m]) => m.startsWith('transformer.h.0.'))) };
    const plan = planMethod(ctx, model, { method: 'lora', lora: adapter.lora }, 0);
    loadAdapterIntoPlan(ctx, plan, layer0);
    const ids = [5, 9, 33, 2];
    const session = new InferenceSession(model, 8, plan);
    const logits = await session.forward(ids);
    const w = new Map<string, Float64Array>();
    for (const name of ck.tensors.keys()) w.set(name, Float64Array.from(await ck.readF32(name)));
    const s = 32 / 8;
    const ref = referenceLogits(ck.config, w, [ids], (l, x, y, N) => {
      const t = layer0.tensors.get(l.module);
      if (!t) return;
      // y += s · (x Aᵀ) Bᵀ, A [r, in], B [out, r] (nn.Linear layout even for Conv1D, as PEFT)
      for (let n = 0; n < N; n++) {
        const u = new Float64Array(t.r);
        for (let j = 0; j < t.r; j++) for (let i = 0; i < t.inF; i++) u[j] += x[n * t.inF + i] * t.A[j * t.inF + i];
        for (let o = 0; o < t.outF; o++) {
          let d = 0;
          for (let j = 0; j < t.r; j++) d += u[j] * t.B[o * t.r + j];
          y[n * t.outF + o] += s * d;
        }
      }
    });
    const V = ck.config.vocabSize;
    const want = ref.subarray((ids.length - 1) * V);
    let m = 0;
    for (const v of want) m = Math.max(m, Math.abs(v));
    expectClose(logits, want, { rtol: 1e-4, atol: 1e-4 * m }, 'logits with the real adapter');
    session.release();
    releasePlan(ctx, plan);
    model.release();
  });
});
