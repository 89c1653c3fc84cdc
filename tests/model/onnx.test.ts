// ONNX export: the exported graph, run by an independent runtime (onnxruntime-web's WebAssembly
// backend in Node), gives the float64 reference model's logits at every position — Llama (GQA,
// llama3 rope scaling), Qwen2 (q/k/v biases, tied head), GPT-2 (Conv1D, learned positions, GELU) —
// for a batch of two sequences; decoding through its KV cache (past_key_values → present) and a
// left-padded batch (attention_mask, position_ids) give the same logits; a real pretrained model
// (stories260k) decodes the same greedy text.
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { memoryFiles } from '../../src/io/files';
import { directoryFiles } from '../../src/io/files-node';
import { OnnxExportError, OnnxGraph, ONNX_FLOAT } from '../../src/io/onnx';
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint';
import { exportOnnx } from '../../src/model/onnx';
import { openBnbCheckpoint, writeBnbCheckpoint } from '../../src/io/bnb';
import { floatWeights } from '../../src/tune/merge';
import { argmax } from '../../src/model/sampling';
import { referenceLogits } from '../../src/ref/model';
import { expectClose } from '../helpers/compare';
import { fixture, hasFixture } from '../helpers/fixtures';
import { emptyPast, greedyOnnx, step, type CacheShape } from '../helpers/onnx';
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

async function referenceWeights(ck: Checkpoint): Promise<Map<string, Float64Array>> {
  const w = new Map<string, Float64Array>();
  for (const name of ck.tensors.keys()) w.set(name, Float64Array.from(await ck.readF32(name)));
  return w;
}

async function runOnnx(bytes: Uint8Array, c: CacheShape, batch: number[][]): Promise<{ dims: readonly number[]; data: Float32Array }> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const names = (kind: string) => Array.from({ length: c.numLayers }, (_, i) => [`${kind}.${i}.key`, `${kind}.${i}.value`]).flat();
    expect(session.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids', ...names('past_key_values')]);
    expect(session.outputNames).toEqual(['logits', ...names('present')]);
    const { logits } = await step(session, batch, emptyPast(c, batch.length), 0);
    return { dims: logits.dims, data: logits.data as Float32Array };
  } finally {
    await session.release();
  }
}

describe('the ONNX writer', () => {
  it('writes a graph onnxruntime loads: initializers, attributes, dynamic dims', async () => {
    const g = new OnnxGraph('smoke');
    const x = g.input('x', ONNX_FLOAT, ['batch', 3]);
    const y = g.node('Mul', [x, g.weight('w', [3], Float32Array.of(1, 2, 3))]);
    const s = g.node('ReduceSum', [y, g.ints('axes', [1])], { keepdims: 1 });
    g.output(g.node('LeakyRelu', [s], { alpha: { float: 0.5 } }), 'out', ONNX_FLOAT, ['batch', 1]);
    const session = await ort.InferenceSession.create(g.serialize({ opset: 17, producer: 'webtune', producerVersion: '0' }));
    const r = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, 1, 1, -2, 0, -1), [2, 3]) });
    expect([...r.out.dims]).toEqual([2, 1]);
    expect([...(r.out.data as Float32Array)]).toEqual([6, -2.5]);
    await session.release();
    expect(() => g.weight('bad', [2, 2], new Float32Array(3))).toThrow(OnnxExportError);
  });
});

describe('exportOnnx: onnxruntime-web computes the reference model', () => {
  const cases: { label: string; arch: 'llama' | 'qwen2' | 'gpt2'; over?: Record<string, unknown> }[] = [
    { label: 'llama (GQA 4/2, llama3 rope scaling)', arch: 'llama', over: { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } } },
    { label: 'qwen2 (q/k/v biases, tied head)', arch: 'qwen2' },
    { label: 'gpt2 (Conv1D, learned positions, GELU tanh)', arch: 'gpt2' },
  ];
  for (const { label, arch, over } of cases) {
    it(label, async () => {
      const ck = await openCheckpoint(memoryFiles(arch, tinyCheckpointFiles(tinyConfigJson(arch, over), { seed: 12 })));
      const bytes = await exportOnnx(ck);
      const batch = [
        [5, 17, 3, 88, 41, 9, 60],
        [2, 2, 71, 30, 15, 96, 1],
      ];
      const out = await runOnnx(bytes, ck.config, batch);
      const V = ck.config.vocabSize;
      expect([...out.dims]).toEqual([2, 7, V]);
      const w = await referenceWeights(ck);
      const refs = batch.map((seq) => referenceLogits(ck.config, w, [seq]));
      for (const [b, ref] of refs.entries()) expectSameLogits(out.data.subarray(b * 7 * V, (b + 1) * 7 * V), ref, `${arch} sequence ${b}`);

      // Through the KV cache: 4 tokens, then 2, then 1; each call's logits are the full sequence's rows.
      const session = await ort.InferenceSession.create(bytes);
      let past = emptyPast(ck.config, 2);
      let at = 0;
      for (const n of [4, 2, 1]) {
        const r = await step(session, batch.map((s) => s.slice(at, at + n)), past, at);
        expect([...r.past['past_key_values.0.key'].dims]).toEqual([2, ck.config.numKvHeads, at + n, ck.config.headDim]);
        for (const b of [0, 1]) expectSameLogits((r.logits.data as Float32Array).subarray(b * n * V, (b + 1) * n * V), refs[b].subarray(at * V, (at + n) * V), `${arch} cached call at ${at}, sequence ${b}`);
        past = r.past;
        at += n;
      }

      // Left padding: the second sequence is 4 tokens behind 3 pads (mask 0, positions from its first token).
      const padded = await step(session, [batch[0], [0, 0, 0, ...batch[1].slice(0, 4)]], emptyPast(ck.config, 2), 0, {
        mask: [[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]],
        positions: [[0, 1, 2, 3, 4, 5, 6], [1, 1, 1, 0, 1, 2, 3]],
      });
      const data = padded.logits.data as Float32Array;
      expectSameLogits(data.subarray(0, 7 * V), refs[0], `${arch} padded batch, sequence 0`);
      expectSameLogits(data.subarray((7 + 3) * V, 14 * V), refs[1].subarray(0, 4 * V), `${arch} left-padded sequence`);
      expect(data.every(Number.isFinite)).toBe(true);
      await session.release();
    });
  }
});

function expectSameLogits(actual: Float32Array, expected: Float64Array, label: string): void {
  let m = 0;
  for (const v of expected) m = Math.max(m, Math.abs(v));
  expectClose(actual, expected, { rtol: 1e-4, atol: 1e-4 * m }, label);
}

describe('exportOnnx of a pre-quantized bitsandbytes folder', () => {
  it('exports the dequantized weights (floatWeights): logits of the reference model on NF4(W)', async () => {
    const ck = await openCheckpoint(memoryFiles('base', tinyCheckpointFiles(tinyConfigJson('llama'), { seed: 13 })));
    const bnb = await openBnbCheckpoint(memoryFiles('bnb', await writeBnbCheckpoint(ck)));
    const read = floatWeights(bnb);
    const out = await runOnnx(await exportOnnx({ config: bnb.config, readF32: async (n) => (await read(n)).values }), bnb.config, [[4, 8, 15, 16, 23, 42]]);
    const w = new Map<string, Float64Array>();
    for (const name of ck.tensors.keys()) w.set(name, Float64Array.from((await read(name)).values));
    const ref = referenceLogits(ck.config, w, [[4, 8, 15, 16, 23, 42]]);
    let m = 0;
    for (const v of ref) m = Math.max(m, Math.abs(v));
    expectClose(out.data, ref, { rtol: 1e-4, atol: 1e-4 * m }, 'bnb → onnx');
    // NF4 is not W: the dequantized weights really were used.
    const plain = referenceLogits(ck.config, await referenceWeights(ck), [[4, 8, 15, 16, 23, 42]]);
    expect(Math.max(...ref.map((v, i) => Math.abs(v - plain[i])))).toBeGreaterThan(1e-3);
  });
});

describe.skipIf(!hasFixture('stories260k'))('exportOnnx on a real pretrained model (stories260k)', () => {
  it('greedy decoding through onnxruntime-web (KV cache) equals the reference model, token for token', async () => {
    const ck = await openCheckpoint(directoryFiles(fixture('stories260k')));
    const prompt = [1, 403, 407, 261, 378]; // "Once upon a time"
    const ids = await greedyOnnx(await exportOnnx(ck, { metadata: { source: 'stories260k' } }), ck.config, prompt, 16);
    const w = await referenceWeights(ck);
    const V = ck.config.vocabSize;
    const seq = [...prompt];
    for (const id of ids) {
      expect(id).toBe(argmax(referenceLogits(ck.config, w, [seq]).subarray((seq.length - 1) * V)));
      seq.push(id);
    }
    expect(ids).toHaveLength(16);
  });
});
