// Whole-model gradients on the WGSL path vs the float64 reference training step (src/ref/train.ts,
// itself checked by finite differences). Tolerances: loss rtol 1e-5; every gradient element
// |gpu − ref| ≤ max(2e-4·max|ref grad of that tensor|, 1e-7) + 1e-4·|ref| (f32 accumulation through the
// model; the 1e-7 floor covers tensors whose exact gradient is 0, e.g. GPT-2's key bias, where
// softmax is invariant and f32 leaves ~1e-8 of rounding).
import { describe, expect, it } from 'vitest';
import type { GpuTensor } from '../../src/gpu';
import { memoryFiles } from '../../src/io/files';
import { openCheckpoint } from '../../src/model/checkpoint';
import { GpuModel } from '../../src/model/gpu-model';
import { dropoutMask } from '../../src/ref/dropout';
import { referenceTrainStep, type RefLora } from '../../src/ref/train';
import { TrainingEngine, shiftTargets } from '../../src/tune/engine';
import { planMethod, releasePlan, type MethodConfig } from '../../src/tune/methods';
import { expectClose } from '../helpers/compare';
import { gpu } from '../helpers/gpu';
import { normal } from '../helpers/random';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

const B = 2;
const T = 7;

function tol(ref: Float64Array): { rtol: number; atol: number } {
  let m = 0;
  for (const v of ref) m = Math.max(m, Math.abs(v));
  return { rtol: 1e-4, atol: Math.max(2e-4 * m, 1e-7) };
}

async function check(arch: 'llama' | 'qwen2' | 'gpt2', method: MethodConfig, opts: { dropout?: number } = {}): Promise<void> {
  const ctx = await gpu();
  const cfgJson = tinyConfigJson(arch, arch === 'gpt2' ? { n_embd: 24, n_head: 4, n_layer: 2, vocab_size: 53 } : { hidden_size: 24, intermediate_size: 40, vocab_size: 53 });
  const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(cfgJson, { seed: 11 })));
  const c = ck.config;
  const model = await GpuModel.load(ctx, ck);
  const seed = 21;
  const plan = planMethod(ctx, model, method, seed);
  const eng = new TrainingEngine(ctx, model, plan, seed);
  // Data: random ids, some prompt tokens masked with −100.
  const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 31 + t * 17 + 5) % c.vocabSize));
  const labels = ids.map((row, b) => row.map((v, t) => (b === 0 && t < 3 ? -100 : v)));
  const flatIds = Uint32Array.from(ids.flat());
  const targets = shiftTargets(Int32Array.from(labels.flat()), B, T);
  // LoRA B starts at zero (PEFT init): give it random values so every gradient path is exercised.
  const refLora: RefLora | undefined = plan.loraGroups.length
    ? { r: method.lora!.r, alpha: method.lora!.alpha, rslora: method.lora!.rslora, adapters: new Map() }
    : undefined;
  let dropOffset = 0;
  for (const [gi, g] of plan.loraGroups.entries()) {
    const outTotal = g.parts.reduce((s, p) => s + p.outFeatures, 0);
    const bVals = normal(outTotal * g.r, 100 + gi, 0.3);
    for (const p of g.parts) ctx.write(p.B, Float32Array.from(bVals.subarray(p.rowOffset * g.r, (p.rowOffset + p.outFeatures) * g.r)));
    const aVals = Float64Array.from(await ctx.readF32(g.A));
    refLora!.adapters.set(g.module, { A: aVals, B: bVals });
    if (opts.dropout) {
      refLora!.dropout ??= { p: opts.dropout, masks: new Map() };
      const n = B * T * g.inFeatures;
      refLora!.dropout.masks.set(g.module, dropoutMask(n, { p: opts.dropout, seed, offset: dropOffset }));
      dropOffset += n;
    }
  }
  const got = await eng.computeGradients([{ B, T, ids: flatIds, targets }]);
  const weights = new Map<string, Float64Array>();
  for (const name of ck.tensors.keys()) weights.set(name, Float64Array.from(await ck.readF32(name)));
  const trainableNames = new Set(plan.trainables.map((t) => t.name.replace(/\[(q|k|v)\]/, '')));
  const ref = referenceTrainStep(c, weights, { ids, labels }, { lora: refLora, trainable: (n) => trainableNames.has(n) });
  expect(got.count).toBe(ref.count);
  expect(Math.abs(got.loss - ref.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(ref.loss));
  let checked = 0;
  for (const t of plan.trainables) {
    const g = Float64Array.from(await ctx.readF32(eng.grads.get(t.param) as GpuTensor));
    let want: Float64Array;
    const split = /^(.*)\[(q|k|v)\]\.(weight|bias)$/.exec(t.name);
    const loraB = /^base_model\.model\.(.*)\.lora_B\.weight(?:\[(\d)\])?$/.exec(t.name);
    const loraA = /^base_model\.model\.(.*)\.lora_A\.weight$/.exec(t.name);
    if (split) {
      // GPT-2 c_attn was split into q | k | v columns on the GPU.
      const full = ref.grads.get(`${split[1]}.${split[3]}`)!;
      const j = 'qkv'.indexOf(split[2]);
      const C = c.hiddenSize;
      if (split[3] === 'bias') want = full.slice(j * C, (j + 1) * C);
      else {
        want = new Float64Array(C * C);
        for (let i = 0; i < C; i++) want.set(full.subarray(i * 3 * C + j * C, i * 3 * C + (j + 1) * C), i * C);
      }
    } else if (loraA) {
      want = ref.grads.get(`${loraA[1]}.lora_A.weight`)!;
    } else if (loraB) {
      const grp = plan.loraGroups.find((gg) => gg.module === loraB[1])!;
      const part = grp.parts[Number(loraB[2] ?? 0)];
      want = ref.grads.get(`${loraB[1]}.lora_B.weight`)!.slice(part.rowOffset * grp.r, (part.rowOffset + part.outFeatures) * grp.r);
    } else {
      want = ref.grads.get(t.name)!;
    }
    expect(want, `reference gradient for ${t.name}`).toBeDefined();
    expectClose(g, want, tol(want), `gradient of ${t.name}`);
    checked++;
  }
  expect(checked).toBe(plan.trainables.length);
  eng.release();
  releasePlan(ctx, plan);
  model.release();
}

const lora = (targets: string[], extra: Partial<NonNullable<MethodConfig['lora']>> = {}): MethodConfig => ({
  method: 'lora',
  lora: { r: 3, alpha: 6, dropout: 0, targets, rslora: false, ...extra },
});

describe('whole-model gradients: WGSL vs float64 reference', () => {
  for (const arch of ['llama', 'qwen2', 'gpt2'] as const) {
    it(`${arch}: full fine-tuning, every tensor`, () => check(arch, { method: 'full' }));
    it(`${arch}: LoRA on all linear layers`, () => check(arch, lora(['all-linear'])));
  }
  it('llama: LoRA q_proj,v_proj with dropout 0.2 and rsLoRA', () => check('llama', lora(['q_proj', 'v_proj'], { dropout: 0.2, rslora: true }), { dropout: 0.2 }));
  it('gpt2: LoRA c_attn,c_proj with dropout 0.1', () => check('gpt2', lora(['c_attn', 'c_proj'], { dropout: 0.1 }), { dropout: 0.1 }));
  it('gpt2: BitFit (biases only)', () => check('gpt2', { method: 'bitfit' }));
  it('qwen2: partial fine-tuning of the last block + lm_head', () => check('qwen2', { method: 'partial', trainableLayers: 1, trainLmHead: true }));
});
