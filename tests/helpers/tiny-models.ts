// Tiny random checkpoints in exact Hugging Face layout (config.json + model.safetensors), written by
// the tests themselves: nothing is downloaded.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromF32, writeSafetensors, type TensorToWrite } from '../../src/io/safetensors';
import { parseConfig } from '../../src/model/config';
import { expectedTensors } from '../../src/model/layout';
import { normal } from './random';

export type TinyArch = 'llama' | 'qwen2' | 'gpt2';

export function tinyConfigJson(arch: TinyArch, over: Record<string, unknown> = {}): Record<string, unknown> {
  if (arch === 'gpt2') {
    return {
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 32, n_head: 4, n_layer: 2, n_positions: 64,
      vocab_size: 97, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new', bos_token_id: 0, eos_token_id: 0, ...over,
    };
  }
  return {
    architectures: [arch === 'llama' ? 'LlamaForCausalLM' : 'Qwen2ForCausalLM'], model_type: arch,
    hidden_size: 32, intermediate_size: 72, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
    vocab_size: 97, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: arch === 'qwen2',
    hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2, ...over,
  };
}

/** Random weights for every tensor the config implies (norm weights near 1, others ~N(0, 0.2²)). */
export function tinyWeights(configJson: Record<string, unknown>, seed = 1): Map<string, { shape: number[]; data: Float32Array }> {
  const cfg = parseConfig(configJson);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  let s = seed * 1000;
  for (const [name, shape] of expectedTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = /(layernorm|ln_\d|ln_f|norm)\.weight$/.test(name);
    const vals = normal(n, s++, isNorm ? 0.1 : 0.2);
    if (isNorm) for (let i = 0; i < n; i++) vals[i] = Math.fround(1 + vals[i]);
    out.set(name, { shape, data: Float32Array.from(vals) });
  }
  return out;
}

/** The checkpoint's files in memory: config.json and model.safetensors (GPT-2 keys without `transformer.`, as on the Hub). */
export function tinyCheckpointFiles(
  configJson: Record<string, unknown>,
  opts: { seed?: number; dtype?: 'F32' | 'F16' | 'BF16'; shards?: number } = {},
): Record<string, Uint8Array | string> {
  const weights = tinyWeights(configJson, opts.seed ?? 1);
  const dtype = opts.dtype ?? 'F32';
  const isGpt2 = (configJson.architectures as string[])[0] === 'GPT2LMHeadModel';
  const tensors: TensorToWrite[] = [...weights].map(([name, w]) => ({
    name: isGpt2 ? name.replace(/^transformer\./, '') : name,
    dtype,
    shape: w.shape,
    data: fromF32(w.data, dtype),
  }));
  const files: Record<string, Uint8Array | string> = { 'config.json': JSON.stringify(configJson, null, 2) };
  const shards = opts.shards ?? 1;
  if (shards <= 1) {
    files['model.safetensors'] = writeSafetensors(tensors, { format: 'pt' });
  } else {
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.filter((_, i) => i % shards === s);
      for (const t of part) weightMap[t.name] = name;
      files[name] = writeSafetensors(part, { format: 'pt' });
    }
    files['model.safetensors.index.json'] = JSON.stringify({ metadata: {}, weight_map: weightMap });
  }
  return files;
}

export function writeFilesToDir(dir: string, files: Record<string, Uint8Array | string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  return dir;
}
