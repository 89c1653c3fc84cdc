// The worker's model engine (run in Node, no comlink) loads a pre-quantized transformers +
// bitsandbytes 4-bit folder as the page does — from picked files — straight to NF4 on the GPU, and
// generates exactly what quantizing the f32 checkpoint on upload generates. Asking it for f32
// weights (what a LoRA run asks) keeps the NF4 base: there are no full-precision weights to go back to.
import { describe, expect, it } from 'vitest';
import { writeBnbCheckpoint } from '../../src/io/bnb';
import { memoryFiles } from '../../src/io/files';
import { openCheckpoint } from '../../src/model/checkpoint';
import { GpuModel } from '../../src/model/gpu-model';
import { generate } from '../../src/model/generate';
import { InferenceSession } from '../../src/model/inference';
import { ModelEngine } from '../../src/worker/engine';
import { gpu } from '../helpers/gpu';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

const asFiles = (entries: Record<string, Uint8Array | string>): File[] =>
  Object.entries(entries).map(([name, v]) => new File([typeof v === 'string' ? v : new Uint8Array(v)], name));

describe('ModelEngine with a pre-quantized bitsandbytes 4-bit folder', () => {
  it('loads it as NF4 without dequantizing, generates as quantize-on-load does, and keeps NF4 when f32 is asked for', async () => {
    const ctx = await gpu();
    const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson('llama', { hidden_size: 64, intermediate_size: 128 }), { seed: 5 })));
    const bnb = await writeBnbCheckpoint(ck);
    const engine = new ModelEngine(async () => ctx);
    const info = await engine.loadModel({ kind: 'files', files: asFiles(bnb) });
    expect(info.notes.join(' ')).toMatch(/pre-quantized bitsandbytes 4-bit/);
    const loaded = engine.current!;
    expect(loaded.prequantized).toBe(true);
    expect(loaded.model.weightDType).toBe('nf4');

    const prompt = [1, 2, 3, 4];
    const res = await engine.generate({ ids: prompt }, { maxNewTokens: 6, temperature: 0 });

    // The same tokens as the f32 checkpoint quantized on upload (bitsandbytes' algorithm both ways).
    const onLoad = await GpuModel.load(ctx, ck, undefined, { weightDType: 'nf4' });
    const session = new InferenceSession(onLoad, 16);
    const ref = await generate(session, prompt, { maxNewTokens: 6, temperature: 0, stopTokenIds: [] });
    expect(res.ids).toEqual(ref.ids.slice(0, res.ids.length));
    session.release();
    onLoad.release();

    const before = loaded.model;
    await engine.setWeightResidency('f32');
    expect(engine.current!.model).toBe(before);
    expect(engine.current!.model.weightDType).toBe('nf4');
  });
});
