// QLoRA: LoRA on an NF4 base. The GPU model with NF4-resident linear layers must equal the float64
// reference model run on the weights bitsandbytes would dequantize (src/ref/nf4.ts, independent of
// src/quant); a pre-quantized 4-bit checkpoint loads to the same numbers; QLoRA trains about as well as LoRA.
import { describe, expect, it } from 'vitest';
import { memoryFiles } from '../../src/io/files';
import { directoryFiles } from '../../src/io/files-node';
import { writeBnbCheckpoint } from '../../src/io/bnb';
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint';
import { GpuModel } from '../../src/model/gpu-model';
import { InferenceSession } from '../../src/model/inference';
import { linears, modelLayout } from '../../src/model/layout';
import { openModel } from '../../src/model/open';
import { TextTokenizer } from '../../src/model/tokenizer';
import { referenceLogits } from '../../src/ref/model';
import { dequantizeNf4Double, quantizeNf4Double } from '../../src/ref/nf4';
import { referenceTrainStep } from '../../src/ref/train';
import { loadDatasetFiles } from '../../src/tune/data/node';
import { TrainingEngine, shiftTargets } from '../../src/tune/engine';
import { planMethod, releasePlan } from '../../src/tune/methods';
import { Trainer, type TrainConfig } from '../../src/tune/trainer';
import { expectClose } from '../helpers/compare';
import { fixture, hasFixture } from '../helpers/fixtures';
import { gpu } from '../helpers/gpu';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';
import { join } from 'node:path';

/** Base weights as bitsandbytes would dequantize them (NF4 + double quant, blocksize 64), nn.Linear layout. */
async function dequantizedWeights(ck: Checkpoint): Promise<Map<string, Float64Array>> {
  const w = new Map<string, Float64Array>();
  for (const name of ck.tensors.keys()) w.set(name, Float64Array.from(await ck.readF32(name)));
  for (const b of modelLayout(ck.config).blocks) {
    for (const l of linears(b)) {
      const name = `${l.module}.weight`;
      const v = w.get(name)!;
      // bitsandbytes quantizes [out, in] row-major (transformers transposes Conv1D first).
      const oi = new Float64Array(l.in * l.out);
      for (let o = 0; o < l.out; o++) for (let i = 0; i < l.in; i++) oi[o * l.in + i] = l.layout === 'out_in' ? v[o * l.in + i] : v[i * l.out + o];
      const dq = dequantizeNf4Double(quantizeNf4Double(oi, 64));
      const back = new Float64Array(v.length);
      for (let o = 0; o < l.out; o++) for (let i = 0; i < l.in; i++) back[l.layout === 'out_in' ? o * l.in + i : i * l.out + o] = dq[o * l.in + i];
      w.set(name, back);
    }
  }
  return w;
}

const tol = (ref: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(ref[i]));
  return { rtol: 1e-4, atol: 1e-4 * Math.max(m, 1e-6) };
};

describe('QLoRA (NF4 base)', () => {
  it('llama: NF4-resident logits and LoRA gradients equal the reference on bitsandbytes-dequantized weights', async () => {
    const ctx = await gpu();
    const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson('llama'), { seed: 21 })));
    const model = await GpuModel.load(ctx, ck, undefined, { weightDType: 'nf4' });
    expect(model.weightDType).toBe('nf4');
    const w = await dequantizedWeights(ck);
    const ids = [3, 9, 27, 81, 50, 11];
    const s = new InferenceSession(model, 8);
    const logits = await s.forward(ids);
    const ref = referenceLogits(ck.config, w, [ids]);
    const V = ck.config.vocabSize;
    expectClose(logits, ref.subarray(5 * V), tol(ref.subarray(5 * V)), 'NF4 logits');
    s.release();
    // LoRA gradients on the NF4 base.
    const plan = planMethod(ctx, model, { method: 'qlora', lora: { r: 2, alpha: 4, dropout: 0, targets: ['q_proj', 'down_proj'], rslora: false } }, 5);
    const adapters = new Map<string, { A: Float64Array; B: Float64Array }>();
    for (const g of plan.loraGroups) {
      const B = Float32Array.from({ length: g.parts[0].outFeatures * g.r }, (_, i) => Math.sin(i + 1) * 0.2);
      ctx.write(g.parts[0].B, B);
      adapters.set(g.module, { A: Float64Array.from(await ctx.readF32(g.A)), B: Float64Array.from(B) });
    }
    const eng = new TrainingEngine(ctx, model, plan, 5);
    const flat = Uint32Array.from([...ids, ...ids.map((x) => (x * 7) % V)]);
    const labels = Int32Array.from(flat);
    const got = await eng.computeGradients([{ B: 2, T: 6, ids: flat, targets: shiftTargets(labels, 2, 6) }]);
    const rows = [ids, ids.map((x) => (x * 7) % V)];
    const refStep = referenceTrainStep(ck.config, w, { ids: rows, labels: rows }, { lora: { r: 2, alpha: 4, adapters }, trainable: () => false });
    expect(Math.abs(got.loss - refStep.loss)).toBeLessThan(1e-5 * refStep.loss);
    for (const g of plan.loraGroups) {
      const dA = refStep.grads.get(`${g.module}.lora_A.weight`)!;
      const dB = refStep.grads.get(`${g.module}.lora_B.weight`)!;
      expectClose(await ctx.readF32(eng.grads.get(g.A)!), dA, tol(dA), `${g.module} dA`);
      expectClose(await ctx.readF32(eng.grads.get(g.parts[0].B)!), dB, tol(dB), `${g.module} dB`);
    }
    expect(() => planMethod(ctx, model, { method: 'full' }, 0)).toThrow(/must be f32/);
    eng.release();
    releasePlan(ctx, plan);
    model.release();
  });

  it('a pre-quantized transformers+bitsandbytes checkpoint loads to the same numbers as quantizing on load; ~4.13 bits/param (4.127 + the shared map)', async () => {
    const ctx = await gpu();
    const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson('qwen2', { hidden_size: 64, intermediate_size: 128 }), { seed: 22 })));
    const onLoad = await GpuModel.load(ctx, ck, undefined, { weightDType: 'nf4' });
    const files = await writeBnbCheckpoint(ck);
    const opened = await openModel(memoryFiles('tiny-bnb-4bit', files));
    expect(opened.prequantized).toBe(true);
    const pre = await GpuModel.load(ctx, opened.weights);
    const ids = [1, 2, 3, 4, 5];
    const a = new InferenceSession(onLoad, 8);
    const b = new InferenceSession(pre, 8);
    expect([...(await b.forward(ids))]).toEqual([...(await a.forward(ids))]);
    const f = pre.linearWeightFootprint();
    const bits = (8 * f.bytes) / f.params;
    expect(bits).toBeGreaterThan(4.1);
    // 4 + 8/64 + 32/(64·256) = 4.127 for large weights; this tiny model also pays the shared 1 KiB map.
    expect(bits).toBeLessThan(4.3);
    a.release();
    b.release();
    onLoad.release();
    pre.release();
  });
});

async function finalLoss(model: GpuModel, data: { train: any[]; validation: any[] | null }, method: 'lora' | 'qlora', steps: number): Promise<number> {
  const cfg: TrainConfig = {
    method: { method, lora: { r: 8, alpha: 16, dropout: 0, targets: ['all-linear'], rslora: false } },
    optimizer: { lr: 5e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
    schedule: 'constant', warmupSteps: 0, batchSize: 8, gradAccum: 1, steps, seed: 1, shuffle: true, evalEvery: 0, padId: 0,
  };
  const t = new Trainer(model.ctx, model, { train: data.train, validation: data.validation, reference: null }, cfg);
  const before = (await t.evaluate(data.validation))!.loss;
  const e = await t.run();
  t.release();
  expect(e.evalLoss!).toBeLessThan(before);
  return e.evalLoss!;
}

describe('QLoRA trains as well as LoRA (within 10% of its final validation loss, same steps)', () => {
  const cases: [string, string, string][] = [['demo', join(import.meta.dirname, '..', '..', 'public', 'demo'), 'dataset.jsonl']];
  if (hasFixture('stories260k')) cases.push(['stories260k', fixture('stories260k'), '']);
  for (const [label, dir] of cases) {
    it(label, async () => {
      const ctx = await gpu();
      const ck = await openCheckpoint(directoryFiles(dir));
      const tok = TextTokenizer.fromText(ck.tokenizerJson!, ck.tokenizerConfigJson);
      const dataFile = join(import.meta.dirname, '..', '..', 'public', 'demo', 'dataset.jsonl');
      const ds = await loadDatasetFiles(dataFile, null, tok, { maxLength: 32, validation: { count: 8 }, seed: 0 });
      const steps = 12;
      const f32 = await GpuModel.load(ctx, ck);
      const lora = await finalLoss(f32, ds, 'lora', steps);
      f32.release();
      const nf4 = await GpuModel.load(ctx, ck, undefined, { weightDType: 'nf4' });
      const qlora = await finalLoss(nf4, ds, 'qlora', steps);
      nf4.release();
      expect(qlora).toBeLessThan(lora * 1.1);
    });
  }
});
