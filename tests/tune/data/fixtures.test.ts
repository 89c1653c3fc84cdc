// The pipeline on real tokenizers (../shared/fixtures): exact masks, tokens straddling the prompt
// boundary, a real chat template, and tinyshakespeare chunking.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../../src/model/tokenizer';
import { BatchIterator, datasetStats, loadDataset, previewExamples } from '../../../src/tune/data';
import { fixture, hasFixture, SKIP_FIXTURES_MESSAGE } from '../../helpers/fixtures';

const read = (...p: string[]): string => readFileSync(fixture(...p), 'utf8');
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n');

function trained(tok: TextTokenizer, ids: ArrayLike<number>, labels: ArrayLike<number>): string {
  const kept: number[] = [];
  for (let t = 0; t < ids.length; t++) if (labels[t] !== -100) kept.push(ids[t]);
  return tok.decode(kept, false);
}

if (!hasFixture('stories260k') || !hasFixture('gpt2-tokenizer')) console.warn(SKIP_FIXTURES_MESSAGE);

describe.skipIf(!hasFixture('stories260k'))('stories260k tokenizer (SentencePiece, adds BOS)', () => {
  const tok = (): TextTokenizer => TextTokenizer.fromText(read('stories260k', 'tokenizer.json'), read('stories260k', 'tokenizer_config.json'));

  it('prompt/completion: ids are the tokenizer\'s ids of the whole text + EOS; exactly the prompt tokens masked', () => {
    const t = tok();
    const prompt = 'Once upon a time,';
    const completion = ' there was a little girl.';
    const [ex] = loadDataset({ train: { name: 'pc.jsonl', text: jsonl([{ prompt, completion }]) } }, t, { maxLength: 64 }).train;
    const whole = t.encode(prompt + completion, true);
    const promptIds = t.encode(prompt, true);
    expect(whole.slice(0, promptIds.length)).toEqual(promptIds); // the prompt is a token prefix here
    expect(Array.from(ex.inputIds)).toEqual([...whole, t.eosTokenId]);
    expect(ex.inputIds[0]).toBe(1);
    const masked = Array.from(ex.labels).filter((l) => l === -100).length;
    expect(masked).toBe(promptIds.length);
    expect(trained(t, ex.inputIds, ex.labels)).toBe(t.decode([...whole.slice(promptIds.length), 2], false));
  });

  it('tinyshakespeare: blocks of maxLength over the tokenized file, BOS first, EOS last', () => {
    const t = tok();
    const text = read('corpus', 'tinyshakespeare_input.txt').slice(0, 8000);
    const ds = loadDataset({ train: { name: 'tinyshakespeare.txt', text } }, t, { maxLength: 128 });
    const all = ds.train.flatMap((e) => Array.from(e.inputIds));
    expect(all).toEqual([...t.encode(text, true), 2]);
    expect(ds.train.slice(0, -1).every((e) => e.inputIds.length === 128)).toBe(true);
    expect(ds.train.every((e) => Array.from(e.labels).every((l, i) => l === e.inputIds[i]))).toBe(true);
    expect(ds.info).toMatchObject({ fileFormat: 'txt', rowFormat: 'text' });
  });
});

describe.skipIf(!hasFixture('gpt2-tokenizer'))('GPT-2 tokenizer (byte-level BPE, no BOS added)', () => {
  const tok = (): TextTokenizer => TextTokenizer.fromText(read('gpt2-tokenizer', 'tokenizer.json'), read('gpt2-tokenizer', 'tokenizer_config.json'));

  it('a token straddling the prompt boundary (" yes" after a prompt ending in a space) is trained', () => {
    const t = tok();
    const [ex] = loadDataset({ train: { name: 'pc.jsonl', text: jsonl([{ prompt: 'Q: is it?\nA: ', completion: 'yes' }]) } }, t, { maxLength: 64 }).train;
    const ids = Array.from(ex.inputIds);
    expect(ids).toEqual([...t.encode('Q: is it?\nA: yes', false), 50256]);
    expect(t.encode('Q: is it?\nA: ', false).at(-1)).toBe(220); // the lone space the whole text never has
    expect(trained(t, ex.inputIds, ex.labels)).toBe(' yes<|endoftext|>');
    expect(Array.from(ex.labels).slice(0, ids.length - 2).every((l) => l === -100)).toBe(true);
  });

  it('Alpaca rows: the output and EOS are the only targets', () => {
    const t = tok();
    const [ex] = loadDataset({ train: { name: 'a.jsonl', text: jsonl([{ instruction: 'Name a colour.', input: '', output: 'Blue.' }]) } }, t, { maxLength: 128 }).train;
    expect(trained(t, ex.inputIds, ex.labels)).toBe('Blue.<|endoftext|>');
    const [p] = previewExamples([ex], t, 1);
    expect(p.text.endsWith('### Response:\nBlue.<|endoftext|>')).toBe(true);
    expect(p.spans.map((s) => s.trained)).toEqual([false, true]);
  });

  it('the whole tinyshakespeare: chunks, line numbers of each block, split and batches', () => {
    const t = tok();
    const text = read('corpus', 'tinyshakespeare_input.txt');
    const ds = loadDataset({ train: { name: 'tinyshakespeare.txt', text } }, t, { maxLength: 256, validation: { fraction: 0.1 }, seed: 1 });
    // Back in file order (no line of this file is 256 tokens long, so lines are distinct per block).
    const ordered = [...ds.train, ...ds.validation!].sort((a, b) => a.line - b.line);
    const total = ordered.reduce((s, e) => s + e.inputIds.length, 0);
    expect(total).toBe(338025 + 1); // + EOS
    expect(ds.validation!.length).toBe(Math.round(0.1 * Math.ceil(total / 256)));
    // Line of each block = line of its first character in the file (ASCII text: decoding is exact).
    let offset = 0;
    let line = 1;
    for (const e of ordered) {
      expect(e.line).toBe(line);
      const piece = t.decode(Array.from(e.inputIds), false).replace(/<\|endoftext\|>$/, '');
      expect(text.slice(offset, offset + piece.length)).toBe(piece);
      for (const c of piece) if (c === '\n') line++;
      offset += piece.length;
    }
    expect(offset).toBe(text.length);
    const s = datasetStats(ds);
    expect(s.train.targets).toBe(s.train.tokens - s.train.examples);
    const batch = new BatchIterator(ds.train, { batchSize: 4, seed: 1, padId: 50256 }).next();
    expect([batch.B, batch.T]).toEqual([4, 256]);
  });
});

describe.skipIf(!hasFixture('smollm2-tokenizer'))('SmolLM2 tokenizer with a ChatML template', () => {
  const template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

  it('trains exactly the assistant replies and their <|im_end|>', () => {
    const t = TextTokenizer.fromText(read('smollm2-tokenizer', 'tokenizer.json'), JSON.stringify({ chat_template: template, eos_token: '<|im_end|>' }));
    const messages = [
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: 'It is 4.' },
      { role: 'user', content: 'And 3+3?' },
      { role: 'assistant', content: '6, of course.' },
    ];
    const [ex] = loadDataset({ train: { name: 'chat.jsonl', text: jsonl([{ messages }]) } }, t, { maxLength: 256 }).train;
    expect(Array.from(ex.inputIds)).toEqual(t.encode(t.applyChatTemplate(messages, false), false));
    const runs: string[] = [];
    let cur: number[] = [];
    Array.from(ex.inputIds).forEach((id, i) => {
      if (ex.labels[i] !== -100) cur.push(id);
      else if (cur.length) (runs.push(t.decode(cur, false)), (cur = []));
    });
    if (cur.length) runs.push(t.decode(cur, false));
    expect(runs).toEqual(['It is 4.<|im_end|>', '6, of course.<|im_end|>']);
  });
});
