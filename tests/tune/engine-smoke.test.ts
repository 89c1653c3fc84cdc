import { describe, expect, it } from 'vitest';
import { memoryFiles } from '../../src/io/files';
import { openCheckpoint } from '../../src/model/checkpoint';
import { GpuModel } from '../../src/model/gpu-model';
import { TrainingEngine, shiftTargets } from '../../src/tune/engine';
import { planMethod } from '../../src/tune/methods';
import { gpu } from '../helpers/gpu';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

describe('training engine smoke', () => {
  for (const [arch, method] of [['llama', 'lora'], ['gpt2', 'lora'], ['llama', 'full'], ['gpt2', 'bitfit'], ['qwen2', 'partial']] as const) {
    it(`${arch} ${method}: loss falls on a repeated batch`, async () => {
      const ctx = await gpu();
      const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson(arch), { seed: 2 })));
      const model = await GpuModel.load(ctx, ck);
      const plan = planMethod(ctx, model, { method, lora: { r: 4, alpha: 8, dropout: 0.1, targets: [], rslora: false }, trainableLayers: 1 }, 7);
      const eng = new TrainingEngine(ctx, model, plan, 7);
      const B = 2, T = 8;
      const ids = Uint32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 97);
      const targets = shiftTargets(Int32Array.from(ids), B, T);
      const losses: number[] = [];
      for (let s = 0; s < 8; s++) {
        const r = await eng.trainStep([{ B, T, ids, targets }], { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 }, 1e-2);
        losses.push(r.loss);
        expect(r.skipped).toBe(false);
      }
      expect(losses[7]).toBeLessThan(losses[0] * 0.9);
      eng.release();
      model.release();
    });
  }
});
