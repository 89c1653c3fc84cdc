import { describe, expect, it } from 'vitest';
import { memoryFiles } from '../../src/io/files';
import { directoryFiles } from '../../src/io/files-node';
import { openCheckpoint } from '../../src/model/checkpoint';
import { fixture, hasFixture } from '../helpers/fixtures';
import { tinyCheckpointFiles, tinyConfigJson, tinyWeights } from '../helpers/tiny-models';

const fail = async (files: Record<string, Uint8Array | string>): Promise<Error> =>
  openCheckpoint(memoryFiles('tiny', files)).then(
    () => {
      throw new Error('expected failure');
    },
    (e: Error) => e,
  );

describe('openCheckpoint', () => {
  for (const arch of ['llama', 'qwen2', 'gpt2'] as const) {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      it(`opens a tiny ${arch} checkpoint stored as ${dtype}`, async () => {
        const cfg = tinyConfigJson(arch);
        const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(cfg, { dtype })));
        expect(ck.config.architecture).toBe(arch);
        const embedName = arch === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight';
        const emb = await ck.readF32(embedName);
        const want = tinyWeights(cfg).get(embedName)!.data;
        const tol = dtype === 'F32' ? 0 : dtype === 'F16' ? 2 ** -10 : 2 ** -7;
        for (let i = 0; i < want.length; i++) expect(Math.abs(emb[i] - want[i])).toBeLessThanOrEqual(tol * Math.abs(want[i]) + 1e-7);
        expect(ck.dtypeOf(embedName)).toBe(dtype);
      });
    }
  }

  it('opens a sharded checkpoint through model.safetensors.index.json', async () => {
    const ck = await openCheckpoint(memoryFiles('tiny', tinyCheckpointFiles(tinyConfigJson('llama'), { shards: 3 })));
    expect(ck.tensors.size).toBeGreaterThan(10);
    expect(new Set([...ck.tensors.values()].map((t) => t.file.source.name)).size).toBe(3);
  });

  it.skipIf(!hasFixture('stories260k'))('opens the real stories260k folder from disk', async () => {
    const ck = await openCheckpoint(directoryFiles(fixture('stories260k')));
    expect(ck.config.numLayers).toBe(5);
    expect(ck.generation.eosTokenIds).toEqual([2]);
    expect(ck.tokenizerJson).not.toBeNull();
  });

  it('names a missing tensor', async () => {
    const cfg = tinyConfigJson('llama');
    const files = tinyCheckpointFiles({ ...cfg, num_hidden_layers: 2 });
    const e = await fail({ ...files, 'config.json': JSON.stringify({ ...cfg, num_hidden_layers: 3 }) });
    expect(e.message).toMatch(/model\.safetensors: tensor "model\.layers\.2\.input_layernorm\.weight" is missing/);
  });

  it('names a config/weights shape disagreement', async () => {
    const cfg = tinyConfigJson('llama');
    const files = tinyCheckpointFiles(cfg);
    const e = await fail({ ...files, 'config.json': JSON.stringify({ ...cfg, intermediate_size: 80 }) });
    expect(e.message).toMatch(/tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[72, 32\] but config\.json implies \[80, 32\]/);
  });

  it('refuses a folder without config.json or without weights', async () => {
    expect((await fail({ 'model.safetensors': new Uint8Array(8) })).message).toMatch(/config\.json is missing/);
    expect((await fail({ 'config.json': JSON.stringify(tinyConfigJson('gpt2')), 'pytorch_model.bin': new Uint8Array(4) })).message).toMatch(
      /model\.safetensors is missing \(found pytorch_model\.bin: only safetensors/,
    );
  });

  it('refuses an unsupported architecture by name', async () => {
    const e = await fail({ 'config.json': JSON.stringify({ architectures: ['FalconForCausalLM'] }) });
    expect(e.name).toBe('UnsupportedModelError');
    expect(e.message).toMatch(/FalconForCausalLM is not supported/);
  });

  it('names a truncated safetensors file', async () => {
    const files = tinyCheckpointFiles(tinyConfigJson('gpt2'));
    const st = files['model.safetensors'] as Uint8Array;
    const e = await fail({ ...files, 'model.safetensors': st.subarray(0, st.length - 100) });
    expect(e.name).toBe('SafetensorsFormatError');
    expect(e.message).toMatch(/model\.safetensors: tensor ".*": data_offsets .* run past the end|truncated/);
  });
});
