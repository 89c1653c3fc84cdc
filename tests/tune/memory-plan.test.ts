// The training memory plan against the real engine: load a tiny model, plan the method, run one
// optimizer step, and compare what the accountant measured per role with what the plan predicted.
// Tolerances: weights, trainable weights, gradients and optimizer moments must match exactly (they are
// sums of tensor sizes); activations within 2 % (the plan counts the engine's workspace tensor by
// tensor, so in practice exactly); scratch within 10 % (it includes the batch's uniform params, one
// 256-byte slot per kernel dispatch, whose count the plan estimates from the layer structure).
import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu';
import type { Role } from '../../src/gpu/tensor';
import { memoryFiles } from '../../src/io/files';
import { openCheckpoint } from '../../src/model/checkpoint';
import { parameterCount, parseConfig } from '../../src/model/config';
import { linears, modelLayout } from '../../src/model/layout';
import { GpuModel } from '../../src/model/gpu-model';
import { TrainingEngine, shiftTargets, type MicroBatch } from '../../src/tune/engine';
import { checkFit, QLORA_BITS_PER_PARAM, trainingMemoryPlan, type TrainMemoryOptions } from '../../src/tune/memory-plan';
import { planMethod, releasePlan, type MethodConfig } from '../../src/tune/methods';
import { gpu } from '../helpers/gpu';
import { tinyCheckpointFiles, tinyConfigJson, type TinyArch } from '../helpers/tiny-models';

const ROLES: Role[] = ['weights', 'trainable', 'gradients', 'optimizer', 'activations', 'scratch'];

function micro(B: number, T: number, V: number, seed: number): MicroBatch {
  const ids = Uint32Array.from({ length: B * T }, (_, i) => (i * 7 + seed) % V);
  return { B, T, ids, targets: shiftTargets(Int32Array.from(ids), B, T) };
}

/** A batch's uniform params buffer is freed once the GPU has finished with it: wait for that. */
async function settled(ctx: GpuContext): Promise<void> {
  await ctx.onDone();
  await new Promise((r) => setTimeout(r, 0));
}

interface Case {
  arch: TinyArch;
  method: MethodConfig;
  plan: TrainMemoryOptions;
}

const lora = { r: 4, alpha: 8, dropout: 0.1, targets: ['all-linear'], rslora: false };
const CASES: Case[] = [
  { arch: 'llama', method: { method: 'lora', lora }, plan: { method: 'lora', lora, batchSize: 2, seqLen: 16, gradAccum: 2 } },
  { arch: 'llama', method: { method: 'full' }, plan: { method: 'full', batchSize: 3, seqLen: 13 } },
  { arch: 'gpt2', method: { method: 'lora', lora: { ...lora, dropout: 0, targets: [] } }, plan: { method: 'lora', lora: { ...lora, dropout: 0, targets: [] }, batchSize: 2, seqLen: 24 } },
  { arch: 'gpt2', method: { method: 'bitfit' }, plan: { method: 'bitfit', batchSize: 2, seqLen: 8 } },
  { arch: 'qwen2', method: { method: 'partial', trainableLayers: 1 }, plan: { method: 'partial', trainableLayers: 1, batchSize: 2, seqLen: 16 } },
];

describe('training memory plan vs the accountant', () => {
  for (const tc of CASES) {
    it(`${tc.arch} ${tc.plan.method} B=${tc.plan.batchSize} T=${tc.plan.seqLen}: every role as planned`, async () => {
      const ctx = await gpu();
      const json = tinyConfigJson(tc.arch);
      const cfg = parseConfig(json);
      const plan = trainingMemoryPlan(cfg, tc.plan);
      expect(plan.invalid).toBeNull();

      await settled(ctx);
      const before = ctx.memory.report().liveByRole;
      const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(json, { seed: 3 })));
      const model = await GpuModel.load(ctx, ck);
      const method = planMethod(ctx, model, tc.method, 1);
      const eng = new TrainingEngine(ctx, model, method, 1);
      const afterSetup = ctx.memory.report().liveByRole;
      const delta = (r: Role, m: Record<Role, number>): number => m[r] - before[r];
      // Exact: these are sums of tensor sizes.
      expect(delta('weights', afterSetup)).toBe(plan.byRole.weights);
      expect(delta('trainable', afterSetup)).toBe(plan.byRole.trainable);
      expect(delta('gradients', afterSetup)).toBe(plan.byRole.gradients);
      expect(delta('optimizer', afterSetup)).toBe(plan.byRole.optimizer);
      const trainable = method.trainables.reduce((s, t) => s + t.param.shape.reduce((a, b) => a * b, 1), 0);
      expect(plan.trainableParameters).toBe(trainable);

      ctx.memory.resetPeak();
      const A = tc.plan.gradAccum ?? 1;
      const batches = Array.from({ length: A }, (_, i) => micro(plan.B, plan.T, cfg.vocabSize, i + 1));
      const r = await eng.trainStep(batches, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 }, 1e-3);
      expect(Number.isFinite(r.loss)).toBe(true);
      const peak = ctx.memory.report().peakByRole;
      const measured = Object.fromEntries(ROLES.map((role) => [role, delta(role, peak)])) as Record<Role, number>;
      const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(1, b);
      console.log(
        `${tc.arch} ${tc.plan.method}: ` +
          ROLES.map((role) => `${role} planned ${plan.byRole[role as keyof typeof plan.byRole]} measured ${measured[role]}`).join('; '),
      );
      expect(rel(plan.byRole.activations, measured.activations)).toBeLessThanOrEqual(0.02);
      expect(rel(plan.byRole.gradients, measured.gradients)).toBeLessThanOrEqual(0.02);
      expect(measured.scratch).toBeGreaterThan(0);
      expect(rel(plan.byRole.scratch, measured.scratch)).toBeLessThanOrEqual(0.1);

      eng.release();
      releasePlan(ctx, method);
      model.release();
      await settled(ctx);
      const after = ctx.memory.report().liveByRole;
      for (const role of ROLES) expect([role, after[role]]).toEqual([role, before[role]]);
    });
  }

  it('full vs LoRA vs QLoRA on a Llama-shaped config: ordering, 4.127 bits, and the binding limit', () => {
    const cfg = parseConfig(tinyConfigJson('llama', { hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4, vocab_size: 4096 }));
    const o = { batchSize: 4, seqLen: 128, lora: { r: 8, dropout: 0.05, targets: [] } };
    const full = trainingMemoryPlan(cfg, { ...o, method: 'full' });
    const lo = trainingMemoryPlan(cfg, { ...o, method: 'lora' });
    const q = trainingMemoryPlan(cfg, { ...o, method: 'qlora' });
    expect(QLORA_BITS_PER_PARAM).toBeCloseTo(4.127, 3);
    // Full: every parameter has a gradient and two moments.
    expect(full.gradientBytes).toBe(full.parameters * 4);
    expect(full.optimizerBytes).toBe(2 * full.parameters * 4);
    expect(lo.trainableParameters).toBeLessThan(full.trainableParameters / 20);
    expect(q.trainableParameters).toBe(lo.trainableParameters);
    expect(q.activationBytes).toBe(lo.activationBytes);
    // QLoRA stores the linear weights at 4.127 bits instead of 32.
    const sizes = [256 * 256, 256 * 128, 256 * 128, 256 * 256, 256 * 688, 256 * 688, 688 * 256];
    let packed = 0;
    let linear = 0;
    for (let l = 0; l < cfg.numLayers; l++) {
      for (const n of sizes) {
        linear += n * 4;
        packed += Math.ceil((n * QLORA_BITS_PER_PARAM) / 8);
      }
    }
    expect(q.frozenWeightBytes).toBe(lo.frozenWeightBytes - linear + packed);
    expect(q.frozenWeightBytes).toBeLessThan(lo.frozenWeightBytes * 0.5);
    expect(full.totalBytes).toBeGreaterThan(lo.totalBytes);
    expect(lo.totalBytes).toBeGreaterThan(q.totalBytes);
    // Logits N×V dominate one workspace here: 4·128·4096·4 bytes each for logits and dlogits.
    expect(lo.logitsBytes).toBe(2 * 4 * 128 * 4096 * 4);
    expect(checkFit(lo, { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 }).fits).toBe(true);
    const tight = checkFit(lo, { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 22 });
    expect(tight.fits).toBe(false);
    expect(tight.problems[0]).toMatch(/logits.*lower the batch size or the sequence length/);
  });

  it('BitFit on a bias-free Llama is reported as impossible', () => {
    const p = trainingMemoryPlan(parseConfig(tinyConfigJson('llama')), { method: 'bitfit', batchSize: 1, seqLen: 8 });
    expect(p.invalid).toMatch(/BitFit/);
    expect(checkFit(p, { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 30 }).fits).toBe(false);
  });
});

describe('checkpoint size of a 135M-parameter LoRA (SmolLM2-135M config.json)', () => {
  // The shapes of HuggingFaceTB/SmolLM2-135M: 30 layers, hidden 576, 9 heads / 3 KV heads of 64, MLP 1536.
  const smol = parseConfig({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30,
    num_attention_heads: 9, num_key_value_heads: 3, vocab_size: 49152, max_position_embeddings: 8192, rms_norm_eps: 1e-5,
    rope_theta: 100000, tie_word_embeddings: true, hidden_act: 'silu',
  });
  // A checkpoint holds each trainable tensor and its two AdamW moments, all f32 (src/tune/trainer.ts snapshot).
  const fromShapes = (targets: string[]): number =>
    modelLayout(smol).blocks.flatMap(linears).filter((l) => targets.includes(l.short)).reduce((s, l) => s + 8 * (l.in + l.out), 0);

  it('q_proj,v_proj r=8: 460,800 parameters → 5,529,600 bytes; all-linear r=8: 2,442,240 → 29,306,880 bytes', () => {
    expect(parameterCount(smol)).toBe(134_515_008);
    for (const [targets, short, params] of [
      [['q_proj', 'v_proj'], ['q_proj', 'v_proj'], 460_800],
      [['all-linear'], ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], 2_442_240],
    ] as const) {
      const plan = trainingMemoryPlan(smol, { method: 'lora', lora: { r: 8, dropout: 0, targets: [...targets] }, trainableLayers: 1, batchSize: 1, seqLen: 256, gradAccum: 1 });
      expect(plan.trainableParameters).toBe(params);
      expect(fromShapes([...short])).toBe(params);
      expect(plan.trainableWeightBytes + plan.optimizerBytes).toBe(params * 12);
    }
  });
});
