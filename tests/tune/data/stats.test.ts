// Summary, preview and the CLI flags.
import { describe, expect, it } from 'vitest';
import { datasetStats, DatasetError, formatStats, loadDataset, parseDataArgs, previewExamples } from '../../../src/tune/data';
import { FakeTokenizer } from './fake-tokenizer';

const rows = [
  '{"prompt": "Q: hi", "completion": " hello"}',
  '{"prompt": "Q: a b c d e f g h i j k l m n o p", "completion": " ok"}',
  '{"prompt": "Q: x"}',
  '{"prompt": "Q: y", "completion": " yes", "id": 4}',
].join('\n');

describe('datasetStats', () => {
  it('counts rows, tokens, targets, a length histogram and lists problems', () => {
    const ds = loadDataset({ train: { name: 'train.jsonl', text: rows } }, new FakeTokenizer(), { maxLength: 16, skipBadRows: true });
    const s = datasetStats(ds, 4);
    expect(s).toMatchObject({ fileFormat: 'jsonl', rowFormat: 'prompt_completion', rows: 4, skipped: 1, truncated: 0, dropped: 1, errors: 1, warnings: 2 });
    // Row 1: <s> Q : " hi" " hello" </s> = 6 tokens, 2 targets. Row 2 has 21 tokens; cut to 16, its
    // completion " ok" (token 19) is gone, so it is dropped. Row 4: 6 tokens, 2 targets.
    expect(s.train.examples).toBe(2);
    expect(s.train.tokens).toBe(12);
    expect(s.train.targets).toBe(4);
    expect(s.train.histogram).toEqual([
      { lo: 1, hi: 4, count: 0 },
      { lo: 5, hi: 8, count: 2 },
      { lo: 9, hi: 12, count: 0 },
      { lo: 13, hi: 16, count: 0 },
    ]);
    expect(s.problems.map((p) => p.line)).toEqual([2, 3, 4]);
    const text = formatStats(s);
    expect(text).toContain('train.jsonl (jsonl, prompt_completion rows, maxLength 16)');
    expect(text).toContain('error: train.jsonl:3: field "completion" is missing');
  });
});

describe('previewExamples', () => {
  it('gives each token its text and whether it is trained, merged into spans', () => {
    const tok = new FakeTokenizer();
    const ds = loadDataset({ train: { name: 't.jsonl', text: '{"prompt": "Q: hi\\nA:", "completion": " hello"}\n{"text": "x"}' } }, tok, {
      maxLength: 32,
      rowFormat: 'prompt_completion',
      skipBadRows: true,
    });
    const [p] = previewExamples(ds, tok, 3);
    expect(p.line).toBe(1);
    expect(p.text).toBe('<s>Q: hi\nA: hello</s>');
    expect(p.tokens.map((t) => t.text).join('')).toBe(p.text);
    expect(p.spans).toEqual([
      { text: '<s>Q: hi\nA:', trained: false },
      { text: ' hello</s>', trained: true },
    ]);
    expect(p.targets).toBe(2);
  });
});

describe('parseDataArgs', () => {
  it('maps flags to DatasetOptions and passes the rest through', () => {
    const a = parseDataArgs([
      '--model', 'm',
      '--data', 'train.csv',
      '--val', 'val.csv',
      '--columns', 'prompt=q,completion=a',
      '--max-length=128',
      '--loss-on', 'all',
      '--pack',
      '--skip-bad-rows',
      '--no-eos',
      '--steps', '10',
    ]);
    expect(a.train).toBe('train.csv');
    expect(a.validation).toBe('val.csv');
    expect(a.options).toEqual({ columns: { prompt: 'q', completion: 'a' }, maxLength: 128, lossOn: 'all', pack: true, skipBadRows: true, addEos: false });
    expect(a.rest).toEqual(['--model', 'm', '--steps', '10']);
    expect(parseDataArgs(['--data', 'x.txt', '--val-fraction', '0.1'], { maxLength: 64 }).options).toEqual({ maxLength: 64, validation: { fraction: 0.1 } });
  });

  it('says what is wrong', () => {
    expect(() => parseDataArgs(['--max-length', '8'])).toThrow(/--data FILE/);
    expect(() => parseDataArgs(['--data', 'x'])).toThrow(/--max-length N/);
    expect(() => parseDataArgs(['--data', 'x', '--max-length', '8', '--format', 'xml'])).toThrow('--format xml: expected one of txt, jsonl, json, csv, tsv');
    expect(() => parseDataArgs(['--data', 'x', '--max-length', '8', '--columns', 'question'])).toThrow(DatasetError);
  });
});

describe('node: loadDatasetFiles', () => {
  it('reads files from disk, names them by base name, and reads a chat template file', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { loadDatasetFiles, readDataFile } = await import('../../../src/tune/data/node');
    const dir = mkdtempSync(join(tmpdir(), 'webtune-data-'));
    writeFileSync(join(dir, 'train.jsonl'), '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}\n{"messages": 3}\n');
    writeFileSync(join(dir, 'tpl.jinja'), "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}");
    const tok = new FakeTokenizer();
    await expect(loadDatasetFiles(join(dir, 'train.jsonl'), null, tok, { maxLength: 32, chatTemplate: join(dir, 'tpl.jinja') })).rejects.toThrow(
      'train.jsonl:2: field "messages" must be an array',
    );
    const ds = await loadDatasetFiles(join(dir, 'train.jsonl'), null, tok, { maxLength: 32, chatTemplate: join(dir, 'tpl.jinja'), skipBadRows: true });
    expect(tok.trainedText(ds.train[0].inputIds, ds.train[0].labels)).toBe('Yo');
    await expect(readDataFile(join(dir, 'missing.jsonl'))).rejects.toThrow(/cannot read the data file/);
  });
});
