// ONNX export: the exported graph, run by an independent runtime (onnxruntime-web's WebAssembly
// backend in Node), gives the float64 reference model's logits at every position — Llama (GQA,
// llama3 rope scaling), Qwen2 (q/k/v biases, tied head), GPT-2 (Conv1D, learned positions, GELU) —
// for a batch of two sequences; and a real pretrained model (stories260k) decodes the same greedy text.
import * as ort from 'onnxruntime-web';
import { beforeAll, describe, expect, it } from 'vitest';
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
import { tinyCheckpointFiles, tinyConfigJson } from '../helpers/tiny-models';

beforeAll(() => {
  ort.env.wasm.numThreads = 1;
});

async function referenceWeights(ck: Checkpoint): Promise<Map<string, Float64Array>> {
  const w = new Map<string, Float64Array>();
  for (const name of ck.tensors.keys()) w.set(name, Float64Array.from(await ck.readF32(name)));
  return w;
}

async function runOnnx(bytes: Uint8Array, batch: number[][]): Promise<{ dims: readonly number[]; data: Float32Array }> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    expect(session.inputNames).toEqual(['input_ids']);
    expect(session.outputNames).toEqual(['logits']);
    const S = batch[0].length;
    const ids = new ort.Tensor('int64', BigInt64Array.from(batch.flat().map(BigInt)), [batch.length, S]);
    const out = (await session.run({ input_ids: ids })).logits;
    return { dims: out.dims, data: out.data as Float32Array };
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
      const out = await runOnnx(bytes, batch);
      const V = ck.config.vocabSize;
      expect([...out.dims]).toEqual([2, 7, V]);
      const w = await referenceWeights(ck);
      for (const [b, seq] of batch.entries()) {
        const ref = referenceLogits(ck.config, w, [seq]);
        let m = 0;
        for (const v of ref) m = Math.max(m, Math.abs(v));
        expectClose(out.data.subarray(b * 7 * V, (b + 1) * 7 * V), ref, { rtol: 1e-4, atol: 1e-4 * m }, `${arch} sequence ${b}`);
      }
    });
  }
});

describe('exportOnnx of a pre-quantized bitsandbytes folder', () => {
  it('exports the dequantized weights (floatWeights): logits of the reference model on NF4(W)', async () => {
    const ck = await openCheckpoint(memoryFiles('base', tinyCheckpointFiles(tinyConfigJson('llama'), { seed: 13 })));
    const bnb = await openBnbCheckpoint(memoryFiles('bnb', await writeBnbCheckpoint(ck)));
    const read = floatWeights(bnb);
    const out = await runOnnx(await exportOnnx({ config: bnb.config, readF32: async (n) => (await read(n)).values }), [[4, 8, 15, 16, 23, 42]]);
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
  it('greedy decoding through onnxruntime-web equals the reference model, token for token', async () => {
    const ck = await openCheckpoint(directoryFiles(fixture('stories260k')));
    const session = await ort.InferenceSession.create(await exportOnnx(ck, { metadata: { source: 'stories260k' } }));
    const w = await referenceWeights(ck);
    const V = ck.config.vocabSize;
    const seq = [1, 403, 407, 261, 378]; // "Once upon a time"
    for (let t = 0; t < 12; t++) {
      const ids = new ort.Tensor('int64', BigInt64Array.from(seq.map(BigInt)), [1, seq.length]);
      const logits = (await session.run({ input_ids: ids })).logits.data as Float32Array;
      const next = argmax(logits.subarray((seq.length - 1) * V));
      const ref = argmax(referenceLogits(ck.config, w, [seq]).subarray((seq.length - 1) * V));
      expect(next).toBe(ref);
      seq.push(next);
    }
    await session.release();
  });
});
