// Whole models on the WGSL kernels vs the float64 reference model.
import { afterAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu';
import { memoryFiles } from '../../src/io/files';
import { directoryFiles } from '../../src/io/files-node';
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint';
import { generate } from '../../src/model/generate';
import { GpuModel } from '../../src/model/gpu-model';
import { InferenceSession } from '../../src/model/inference';
import { argmax } from '../../src/model/sampling';
import { TextTokenizer } from '../../src/model/tokenizer';
import { f16ToF32, f32ToF16 } from '../../src/io/safetensors';
import { referenceLogits, type RefWeights } from '../../src/ref/model';
import { expectClose } from '../helpers/compare';
import { fixture, hasFixture } from '../helpers/fixtures';
import { gpu } from '../helpers/gpu';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

async function refWeights(ck: Checkpoint): Promise<RefWeights> {
  const w: RefWeights = new Map();
  for (const name of ck.tensors.keys()) w.set(name, Float64Array.from(await ck.readF32(name)));
  return w;
}

/** Logits are compared with rtol 1e-4 and atol 1e-4 × max|reference logit| (f32 through ~15 kernels). */
function tolFor(ref: ArrayLike<number>): { rtol: number; atol: number } {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(ref[i]));
  return { rtol: 1e-4, atol: 1e-4 * Math.max(m, 1) };
}

const models: GpuModel[] = [];
afterAll(() => models.forEach((m) => m.release()));

describe('GPU model forward vs float64 reference', () => {
  for (const arch of ['llama', 'qwen2', 'gpt2'] as const) {
    it(`${arch}: logits at every position (KV cache, one token at a time and as a prefill) match`, async () => {
      const ctx: GpuContext = await gpu();
      // Llama with Llama-3 rope scaling (a short original context so every frequency band is exercised).
      const cfg = tinyConfigJson(
        arch,
        arch === 'llama' ? { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } } : {},
      );
      const ck = await openCheckpoint(memoryFiles(`tiny-${arch}`, tinyCheckpointFiles(cfg, { seed: 3 })));
      const model = await GpuModel.load(ctx, ck);
      models.push(model);
      const V = ck.config.vocabSize;
      const ids = [5, 17, 3, 96, 40, 40, 1, 77, 12];
      const ref = referenceLogits(ck.config, await refWeights(ck), [ids]);
      const session = new InferenceSession(model, 16);
      for (let t = 0; t < ids.length; t++) {
        const got = await session.forward([ids[t]]);
        const want = ref.subarray(t * V, (t + 1) * V);
        expectClose(got, want, tolFor(want), `${arch} position ${t} (decode)`);
      }
      // Prefill of 6 tokens then 3 decode steps lands on the same logits.
      session.reset();
      const pre = await session.forward(ids.slice(0, 6));
      expectClose(pre, ref.subarray(5 * V, 6 * V), tolFor(ref.subarray(5 * V, 6 * V)), `${arch} prefill`);
      for (let t = 6; t < ids.length; t++) {
        const got = await session.forward([ids[t]]);
        expectClose(got, ref.subarray(t * V, (t + 1) * V), tolFor(ref.subarray(t * V, (t + 1) * V)), `${arch} after prefill ${t}`);
      }
      session.release();
    });
  }

  it('f16-resident weights: logits equal the reference on f16-rounded matrices; matrix memory halves', async () => {
    const ctx: GpuContext = await gpu();
    const ck = await openCheckpoint(memoryFiles('tiny-f16', tinyCheckpointFiles(tinyConfigJson('llama'), { seed: 5 })));
    const before = ctx.memory.report().liveByRole.weights;
    const m32 = await GpuModel.load(ctx, ck);
    const bytes32 = ctx.memory.report().liveByRole.weights - before;
    const m16 = await GpuModel.load(ctx, ck, undefined, { weightDType: 'f16' });
    const bytes16 = ctx.memory.report().liveByRole.weights - before - bytes32;
    models.push(m32, m16);
    expect(m16.blocks[0].q.weight.dtype).toBe('f16x2');
    const c = ck.config;
    const matrices = c.numLayers * (c.hiddenSize * (c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize);
    expect(bytes32 - bytes16).toBe(matrices * 2);
    const w = await refWeights(ck);
    for (const [name, v] of w) {
      if (/_proj\.weight$/.test(name)) w.set(name, v.map((x) => f16ToF32(f32ToF16(x))));
    }
    const ids = [4, 8, 15, 16, 23, 42];
    const ref = referenceLogits(c, w, [ids]);
    const s = new InferenceSession(m16, 8);
    const got = await s.forward(ids);
    const V = c.vocabSize;
    expectClose(got, ref.subarray(5 * V), tolFor(ref.subarray(5 * V)), 'f16 logits');
    s.release();
  });

  for (const arch of ['llama', 'gpt2'] as const) {
    it(`${arch}: vocabulary tables split across bindings give the same logits and LoRA gradients`, async () => {
      const ctx: GpuContext = await gpu();
      const cfg = tinyConfigJson(arch, arch === 'llama' ? { tie_word_embeddings: false } : {});
      const ck = await openCheckpoint(memoryFiles('split', tinyCheckpointFiles(cfg, { seed: 12 })));
      const whole = await GpuModel.load(ctx, ck);
      // 97 × 32 × 4 bytes per table: at most 40 rows per binding → 3 row blocks.
      const split = await GpuModel.load(ctx, ck, undefined, { maxBindingBytes: 40 * 32 * 4 });
      models.push(whole, split);
      expect(split.embedParts.map((p) => p.rows)).toEqual([40, 40, 17]);
      expect(split.vocabSplit).toBe(true);
      const ids = [96, 0, 41, 39, 80, 7];
      const a = new InferenceSession(whole, 8);
      const b = new InferenceSession(split, 8);
      expectClose(await b.forward(ids), await a.forward(ids), { rtol: 1e-6, atol: 1e-6 }, 'split logits');
      a.release();
      b.release();
      const { planMethod, releasePlan } = await import('../../src/tune/methods');
      const { TrainingEngine, shiftTargets } = await import('../../src/tune/engine');
      const grads: Float32Array[] = [];
      for (const m of [whole, split]) {
        const plan = planMethod(ctx, m, { method: 'lora', lora: { r: 2, alpha: 4, dropout: 0, targets: ['all-linear'], rslora: false } }, 3);
        for (const g of plan.loraGroups) for (const p of g.parts) ctx.write(p.B, new Float32Array(p.outFeatures * g.r).fill(0.01));
        const eng = new TrainingEngine(ctx, m, plan, 3);
        const flat = Uint32Array.from([...ids, ...ids.slice().reverse()]);
        await eng.computeGradients([{ B: 2, T: 6, ids: flat, targets: shiftTargets(Int32Array.from(flat), 2, 6) }]);
        grads.push(await ctx.readF32(eng.grads.get(plan.loraGroups[0].A)!));
        expect(() => planMethod(ctx, split, { method: 'full' }, 0)).toThrow(/split across GPU bindings/);
        eng.release();
        releasePlan(ctx, plan);
      }
      expectClose(grads[1], grads[0], { rtol: 1e-5, atol: 1e-7 }, 'LoRA gradient with split vocabulary');
    });
  }

  it('greedy decoding with the KV cache equals decoding without it', async () => {
    const ctx = await gpu();
    const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson('llama'), { seed: 9 })));
    const model = await GpuModel.load(ctx, ck);
    models.push(model);
    const prompt = [1, 8, 33, 2];
    const cached = new InferenceSession(model, 32);
    const withCache = (await generate(cached, prompt, { temperature: 0, maxNewTokens: 12 })).ids;
    const fresh = new InferenceSession(model, 32);
    const seq = [...prompt];
    const noCache: number[] = [];
    for (let i = 0; i < 12; i++) {
      fresh.reset();
      const next = argmax(await fresh.forward(seq));
      noCache.push(next);
      seq.push(next);
    }
    expect(withCache).toEqual(noCache);
    cached.release();
    fresh.release();
  });

  it('refuses to run past the context it was given', async () => {
    const ctx = await gpu();
    const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson('gpt2'))));
    const model = await GpuModel.load(ctx, ck);
    models.push(model);
    const s = new InferenceSession(model, 4);
    await s.forward([1, 2, 3]);
    await expect(s.forward([4, 5])).rejects.toThrow(/5 tokens exceed this session's context of 4/);
    expect(() => new InferenceSession(model, 1000)).toThrow(/exceeds the model's 64 positions/);
    s.release();
  });
});

describe.skipIf(!hasFixture('stories260k'))('stories260k (real pretrained TinyStories Llama)', () => {
  it('greedy decoding on the GPU equals the reference forward token for token, and tells a story', async () => {
    const ctx = await gpu();
    const ck = await openCheckpoint(directoryFiles(fixture('stories260k')));
    const tok = TextTokenizer.fromText(ck.tokenizerJson!, ck.tokenizerConfigJson);
    const model = await GpuModel.load(ctx, ck);
    models.push(model);
    const prompt = tok.encode('Once upon a time');
    const session = new InferenceSession(model, 64);
    const res = await generate(session, prompt, { temperature: 0, maxNewTokens: 30, stopTokenIds: [2] });
    const w = await refWeights(ck);
    const seq = [...prompt];
    for (let i = 0; i < res.ids.length; i++) {
      const logits = referenceLogits(ck.config, w, [seq]);
      const V = ck.config.vocabSize;
      const next = argmax(logits.subarray((seq.length - 1) * V));
      expect(res.ids[i], `token ${i}`).toBe(next);
      seq.push(next);
    }
    const text = tok.decode([...prompt, ...res.ids]);
    // Coherent English: a sentence with common words.
    expect(text).toMatch(/^Once upon a time, there was a little/);
    expect(text.split(/\s+/).length).toBeGreaterThan(15);
    session.release();
  });
});
