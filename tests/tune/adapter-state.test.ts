// Adapters kept side by side: a run's stored training state → the host-side adapter → PEFT files
// byte-identical to the live export; an imported adapter's stored form round-trips; an uploaded
// adapter generates exactly as the trainer's plan does; an adapter that does not fit the model is
// refused with the file and tensor named. The PEFT files picked in the page are found by name.
import { describe, expect, it } from 'vitest';
import { memoryFiles } from '../../src/io/files';
import { AdapterError, readPeftAdapter, type PeftAdapter } from '../../src/io/peft';
import { openCheckpoint } from '../../src/model/checkpoint';
import { generate } from '../../src/model/generate';
import { GpuModel } from '../../src/model/gpu-model';
import { InferenceSession } from '../../src/model/inference';
import {
  adapterFromPlan,
  adapterFromState,
  adapterStateTensors,
  checkAdapterFits,
  exportPeftAdapter,
  linearModules,
  loraOfState,
  uploadAdapter,
  writePeftAdapter,
} from '../../src/tune/adapter-io';
import type { Example } from '../../src/tune/data';
import { Trainer } from '../../src/tune/trainer';
import { pickPeftFiles } from '../../src/worker/adapters';
import { gpu } from '../helpers/gpu';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

const examples: Example[] = Array.from({ length: 8 }, (_, i) => {
  const ids = Uint32Array.from({ length: 9 }, (_, t) => (i * 11 + t * 3 + 1) % 97);
  return { inputIds: ids, labels: Int32Array.from(ids), file: 'mem', line: i + 1 };
});

async function trainTiny(arch: 'llama' | 'gpt2', targets: string[], seed = 1) {
  const ctx = await gpu();
  const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson(arch), { seed: 6 })));
  const model = await GpuModel.load(ctx, ck);
  const trainer = new Trainer(ctx, model, { train: examples, validation: null, reference: null }, {
    method: { method: 'lora', lora: { r: 4, alpha: 8, dropout: 0, targets, rslora: false } },
    optimizer: { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
    schedule: 'constant', warmupSteps: 0, batchSize: 4, gradAccum: 1, steps: 4, seed, shuffle: true, evalEvery: 0, padId: 0,
  });
  await trainer.run();
  return { ctx, ck, model, trainer };
}

const bytesOf = (files: Record<string, string | Uint8Array>) =>
  Object.fromEntries(Object.entries(files).map(([k, v]) => [k, typeof v === 'string' ? v : Buffer.from(v).toString('hex')]));

describe('a stored run’s adapter', () => {
  it('llama: checkpoint → PEFT files are the bytes the live export writes; the imported form round-trips', async () => {
    const { ctx, ck, model, trainer } = await trainTiny('llama', ['all-linear']);
    const live = await exportPeftAdapter(ctx, ck.config, trainer.plan, 'demo');
    const snap = await trainer.snapshot();
    expect(loraOfState(snap.meta)).toMatchObject({ r: 4, alpha: 8, targets: ['all-linear'] });
    const stored = await adapterFromState(snap.meta, snap.tensors, 'run "run 1"');
    expect(bytesOf(writePeftAdapter(ck.config, stored, 'demo'))).toEqual(bytesOf(live));
    // Without the model's config (a run of a model not loaded now), the module names say "not GPT-2".
    expect(bytesOf(writePeftAdapter(null, stored, 'demo'))).toEqual(bytesOf(live));

    // An imported adapter is stored as params only, B whole; read back, it is the same adapter.
    const imported = await readPeftAdapter(memoryFiles('picked', live));
    const meta = { version: 1, step: 0, config: { method: { method: 'lora', lora: imported.lora } }, history: [] };
    const again = await adapterFromState(meta, adapterStateTensors(imported), 'imported');
    expect(bytesOf(writePeftAdapter(ck.config, again, 'demo'))).toEqual(bytesOf(live));
    trainer.release();
    model.release();
  });

  it('gpt2: fused c_attn parts joined; uploaded, it generates exactly as the trainer’s plan', async () => {
    const { ctx, ck, model, trainer } = await trainTiny('gpt2', ['c_attn', 'c_proj']);
    const live = await exportPeftAdapter(ctx, ck.config, trainer.plan, null);
    const snap = await trainer.snapshot();
    const stored = await adapterFromState(snap.meta, snap.tensors, 'run "gpt2"');
    const C = ck.config.hiddenSize;
    expect(stored.tensors.get('transformer.h.0.attn.c_attn')).toMatchObject({ r: 4, inF: C, outF: 3 * C });
    expect(bytesOf(writePeftAdapter(ck.config, stored, null))).toEqual(bytesOf(live));
    expect(JSON.parse(writePeftAdapter(null, stored, null)['adapter_config.json']).fan_in_fan_out).toBe(true);
    expect(bytesOf(writePeftAdapter(null, stored, null))).toEqual(bytesOf(live));

    checkAdapterFits(stored, linearModules(model));
    const uploaded = uploadAdapter(ctx, model, stored, 'stored');
    expect(uploaded.bytes).toBe([...stored.tensors.values()].reduce((s, t) => s + (t.A.length + t.B.length) * 4, 0));
    const prompt = [3, 14, 15, 92];
    const a = await generate(new InferenceSession(model, 32, trainer.plan), prompt, { temperature: 0, maxNewTokens: 10 });
    const session = new InferenceSession(model, 32, uploaded);
    const b = await generate(session, prompt, { temperature: 0, maxNewTokens: 10 });
    expect(b.ids).toEqual(a.ids);
    const base = await generate(new InferenceSession(model, 32), prompt, { temperature: 0, maxNewTokens: 10 });
    expect(base.ids).not.toEqual(a.ids);
    session.release();
    uploaded.release();
    expect(uploaded.loraByLinear.size).toBe(0);
    trainer.release();
    model.release();
  });

  it('two runs give two different adapters on one model, switchable between generations', async () => {
    const one = await trainTiny('llama', ['q_proj', 'v_proj'], 1);
    const two = await trainTiny('llama', ['q_proj', 'v_proj'], 2);
    const a1 = await adapterFromPlan(one.ctx, one.trainer.plan);
    const a2 = await adapterFromPlan(two.ctx, two.trainer.plan);
    const u1 = uploadAdapter(one.ctx, one.model, a1, 'one');
    const u2 = uploadAdapter(one.ctx, one.model, a2, 'two');
    // One session, as the Playground's: the adapter is switched between calls.
    const session = new InferenceSession(one.model, 32);
    const prompt = [1, 2, 3, 4, 5];
    const logits = async (set: typeof u1 | null): Promise<number[]> => {
      session.reset();
      session.adapters = set;
      return Array.from(await session.forward(prompt));
    };
    const l1 = await logits(u1);
    const l2 = await logits(u2);
    const l0 = await logits(null);
    expect(await logits(u1)).toEqual(l1);
    expect(l2).not.toEqual(l1);
    expect(l0).not.toEqual(l1);
    expect(l0).not.toEqual(l2);
    const s1 = new InferenceSession(one.model, 32, one.trainer.plan);
    expect(Array.from(await s1.forward(prompt))).toEqual(l1);
    for (const s of [session, s1]) s.release();
    u1.release();
    u2.release();
    one.trainer.release();
    two.trainer.release();
    one.model.release();
    two.model.release();
  });

  it('a run that did not train LoRA holds no adapter', async () => {
    expect(loraOfState({ config: { method: { method: 'full' } } })).toBeNull();
    await expect(adapterFromState({ config: { method: { method: 'full' } } }, new Uint8Array(8), 'run "full"')).rejects.toThrow(/run "full" was not trained with LoRA/);
  });
});

describe('checkAdapterFits', () => {
  const modules = [
    { module: 'model.layers.0.self_attn.q_proj', inF: 32, outF: 32 },
    { module: 'model.layers.0.self_attn.v_proj', inF: 32, outF: 16 },
  ];
  const adapter = (over: Partial<{ r: number; inF: number; outF: number; module: string; targets: string[]; cfgR: number }> = {}): PeftAdapter => {
    const r = over.r ?? 4;
    const inF = over.inF ?? 32;
    const outF = over.outF ?? 32;
    return {
      lora: { r: over.cfgR ?? 4, alpha: 8, dropout: 0, targets: over.targets ?? ['q_proj'], rslora: false },
      tensors: new Map([[over.module ?? 'model.layers.0.self_attn.q_proj', { A: new Float32Array(r * inF), B: new Float32Array(outF * r), r, inF, outF }]]),
    };
  };
  const files = { config: 'adapter_config.json', weights: 'adapter_model.safetensors' };

  it('accepts an adapter made for the model', () => {
    expect(() => checkAdapterFits(adapter(), modules, files)).not.toThrow();
  });
  it('names the file and tensor of a wrong shape', () => {
    expect(() => checkAdapterFits(adapter({ inF: 48 }), modules, files)).toThrow(
      /^adapter_model\.safetensors: tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight" is \[4, 48\].*expected \[4, 32\]/,
    );
    expect(() => checkAdapterFits(adapter({ outF: 64 }), modules, files)).toThrow(/tensor ".*q_proj\.lora_B\.weight" is \[64, 4\].*expected \[32, 4\]/);
    expect(() => checkAdapterFits(adapter({ cfgR: 8 }), modules, files)).toThrow(/has rank 4, but adapter_config\.json says r = 8/);
  });
  it('names a layer or a target module the model does not have', () => {
    expect(() => checkAdapterFits(adapter({ module: 'transformer.h.0.attn.c_attn' }), modules, files)).toThrow(
      /adapter_model\.safetensors: tensor "base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight" is for the layer .* which this model does not have/,
    );
    expect(() => checkAdapterFits(adapter({ targets: ['q_proj', 'c_attn'] }), modules, files)).toThrow(
      /^adapter_config\.json: target_modules names "c_attn", which matches no linear layer of this model \(its layers are: q_proj, v_proj\)/,
    );
    expect(() => checkAdapterFits(adapter(), modules, files)).not.toThrow(AdapterError);
  });
});

describe('pickPeftFiles', () => {
  const file = (name: string) => new File([new Uint8Array(1)], name);
  it('finds the two files by name, or the one .json and one .safetensors of renamed downloads', () => {
    expect(pickPeftFiles([file('adapter_model.safetensors'), file('adapter_config.json'), file('README.md')])).toMatchObject({
      configName: 'adapter_config.json',
      weightsName: 'adapter_model.safetensors',
    });
    const renamed = pickPeftFiles([file('adapter_config (1).json'), file('adapter_model (1).safetensors')]);
    expect(renamed).toMatchObject({ configName: 'adapter_config (1).json', weightsName: 'adapter_model (1).safetensors' });
    expect(renamed.files.has('adapter_config.json') && renamed.files.has('adapter_model.safetensors')).toBe(true);
  });
  it('says which file is missing', () => {
    expect(() => pickPeftFiles([file('adapter_config.json')])).toThrow(/adapter_model\.safetensors is missing among the picked files \(adapter_config\.json\)/);
    expect(() => pickPeftFiles([file('adapter_config.json'), file('adapter_model.bin')])).toThrow(/adapter_model\.bin is not supported/);
  });
});
