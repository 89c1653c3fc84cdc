import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parameterCount, parseConfig } from '../../src/model/config';
import { fixture, hasFixture } from '../helpers/fixtures';

describe('config.json parsing', () => {
  it.skipIf(!hasFixture('stories260k'))('reads the stories260k Llama config', () => {
    const c = parseConfig(readFileSync(fixture('stories260k', 'config.json'), 'utf8'));
    expect(c.architecture).toBe('llama');
    expect([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.vocabSize]).toEqual([64, 5, 8, 4, 8, 512]);
    expect(c.tieWordEmbeddings).toBe(true);
    expect(c.normEps).toBe(1e-5);
    // 260K parameters as the name says
    expect(parameterCount(c)).toBeGreaterThan(250_000);
    expect(parameterCount(c)).toBeLessThan(300_000);
  });

  it('reads GPT-2 and computes its 124M parameters', () => {
    const c = parseConfig({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 768, n_head: 12, n_layer: 12, vocab_size: 50257, n_positions: 1024 });
    expect(c.norm).toBe('layernorm');
    expect(c.intermediateSize).toBe(3072);
    expect(parameterCount(c)).toBe(124_439_808);
  });

  it('reads Qwen2 (q/k/v biases) and Llama-3 rope scaling', () => {
    const q = parseConfig({ architectures: ['Qwen2ForCausalLM'], hidden_size: 896, num_attention_heads: 14, num_key_value_heads: 2, num_hidden_layers: 24, intermediate_size: 4864, vocab_size: 151936, tie_word_embeddings: true, rope_theta: 1000000 });
    expect(q.attentionBias).toBe(true);
    expect(q.headDim).toBe(64);
    expect(parameterCount(q)).toBe(494_032_768);
    const l = parseConfig({ architectures: ['LlamaForCausalLM'], hidden_size: 2048, num_attention_heads: 32, num_key_value_heads: 8, num_hidden_layers: 16, intermediate_size: 8192, vocab_size: 128256, rope_theta: 500000, tie_word_embeddings: true, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } });
    expect(l.ropeScaling?.factor).toBe(32);
    expect(parameterCount(l)).toBe(1_235_814_400);
  });

  it('refuses unsupported architectures and options by name', () => {
    expect(() => parseConfig({ architectures: ['MistralForCausalLM'], hidden_size: 8 })).toThrow(/architecture MistralForCausalLM is not supported/);
    expect(() => parseConfig({ architectures: ['LlamaForCausalLM'], hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, vocab_size: 4, hidden_act: 'gelu' })).toThrow(/"hidden_act" = "gelu" is not supported/);
    expect(() => parseConfig({ architectures: ['LlamaForCausalLM'], hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, vocab_size: 4, rope_scaling: { type: 'yarn', factor: 2 } })).toThrow(/rope_scaling" type "yarn"/);
  });

  it('names the missing or bad field', () => {
    expect(() => parseConfig({ architectures: ['LlamaForCausalLM'], hidden_size: 8 })).toThrow(/config\.json: field "num_attention_heads": is required/);
    expect(() => parseConfig('{not json')).toThrow(/config\.json: .*not valid JSON/);
    expect(() => parseConfig({ architectures: ['LlamaForCausalLM'], hidden_size: 10, num_attention_heads: 3, num_hidden_layers: 1, intermediate_size: 8, vocab_size: 4 })).toThrow(/not divisible/);
  });
});
