import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/model/tokenizer';
import { fixture, hasFixture } from '../helpers/fixtures';

const read = (...p: string[]): string => readFileSync(fixture(...p), 'utf8');

describe.skipIf(!hasFixture('gpt2-tokenizer'))('GPT-2 tokenizer (real files, llama.cpp test vectors)', () => {
  it('encodes every llama.cpp gpt-2 vector exactly and decodes back', () => {
    const tok = TextTokenizer.fromText(read('gpt2-tokenizer', 'tokenizer.json'), read('gpt2-tokenizer', 'tokenizer_config.json'));
    const inputs = read('tokenizer-vectors', 'ggml-vocab-gpt-2.gguf.inp').split('\n__ggml_vocab_test__\n');
    const outputs = read('tokenizer-vectors', 'ggml-vocab-gpt-2.gguf.out').split('\n');
    // The input file ends with a final separator line; drop the empty tail.
    if (inputs[inputs.length - 1].replace(/\n?__ggml_vocab_test__\n?$/, '') === '') inputs.pop();
    let checked = 0;
    inputs.forEach((raw, i) => {
      const text = raw.replace(/\n?__ggml_vocab_test__\n?$/, '');
      const want = outputs[i].trim() === '' ? [] : outputs[i].trim().split(/\s+/).map(Number);
      expect(tok.encode(text, false), JSON.stringify(text)).toEqual(want);
      expect(tok.decode(want, false)).toBe(text);
      checked++;
    });
    expect(checked).toBeGreaterThan(20);
  });

  it('matches the swift-transformers GPT-2 baselines', () => {
    const tok = TextTokenizer.fromText(read('gpt2-tokenizer', 'tokenizer.json'), read('gpt2-tokenizer', 'tokenizer_config.json'));
    const base = JSON.parse(read('tokenizer-vectors', 'openai-community__gpt2.json')) as {
      entries: Record<string, { input_ids: number[]; decoded_skip_special: string }>;
    };
    const inputs = JSON.parse(read('tokenizer-vectors', 'multilingual_inputs.json')) as { inputs: { id: string; text: string }[] };
    let n = 0;
    for (const { id, text } of inputs.inputs) {
      const e = base.entries[id];
      if (!e) continue;
      expect(tok.encode(text, false), id).toEqual(e.input_ids);
      expect(tok.decode(e.input_ids), id).toBe(e.decoded_skip_special);
      n++;
    }
    expect(n).toBeGreaterThan(10);
    const enc = JSON.parse(read('tokenizer-vectors', 'gpt2_encoded_tokens.json')) as { text: string; token_ids: number[]; decoded_text: string };
    expect(tok.encode(enc.text, false)).toEqual(enc.token_ids);
    expect(tok.decode(enc.token_ids)).toBe(enc.decoded_text);
  });
});

describe.skipIf(!hasFixture('stories260k'))('stories260k tokenizer', () => {
  it('adds BOS and round-trips text', () => {
    const tok = TextTokenizer.fromText(read('stories260k', 'tokenizer.json'), read('stories260k', 'tokenizer_config.json'));
    const ids = tok.encode('Once upon a time, there was a little girl.');
    expect(ids[0]).toBe(1);
    expect(Math.max(...ids)).toBeLessThan(512);
    expect(tok.decode(ids)).toBe('Once upon a time, there was a little girl.');
  });
});

describe.skipIf(!hasFixture('smollm2-tokenizer'))('SmolLM2 tokenizer with a chat template', () => {
  it('renders ChatML and encodes the special tokens as single ids', () => {
    const template =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    const tok = TextTokenizer.fromText(read('smollm2-tokenizer', 'tokenizer.json'), JSON.stringify({ chat_template: template, eos_token: '<|im_end|>' }));
    const text = tok.applyChatTemplate([{ role: 'user', content: 'Hi!' }], true);
    expect(text).toBe('<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encode(text, false);
    const start = tok.tokenToId('<|im_start|>');
    expect(start).toBeDefined();
    expect(ids.filter((i) => i === start).length).toBe(3);
    expect(tok.eosTokenId).toBe(tok.tokenToId('<|im_end|>'));
  });
});
