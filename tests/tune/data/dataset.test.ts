// loadDataset with a fake tokenizer: every row format, exact loss masks, errors with lines,
// skipBadRows, truncation, packing, validation split.
import { describe, expect, it } from 'vitest';
import {
  alpacaPrompt,
  DatasetError,
  DatasetLineError,
  EmptyDatasetError,
  loadDataset,
  packExamples,
  type DataFile,
  type DatasetOptions,
  type Example,
} from '../../../src/tune/data';
import { BOS, EOS, FakeTokenizer } from './fake-tokenizer';

const file = (name: string, text: string): { train: DataFile } => ({ train: { name, text } });
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const opts = (o: Partial<DatasetOptions> = {}): DatasetOptions => ({ maxLength: 64, ...o });

function expectError(fn: () => unknown): DatasetLineError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DatasetLineError);
    return e as DatasetLineError;
  }
  throw new Error('expected a DatasetLineError');
}

describe('row formats and loss masks', () => {
  it('text: BOS as the tokenizer adds it, EOS appended, every token a label', () => {
    const tok = new FakeTokenizer();
    const ds = loadDataset(file('t.jsonl', jsonl([{ text: 'Hello world.' }])), tok, opts());
    expect(ds.info).toMatchObject({ fileFormat: 'jsonl', rowFormat: 'text', rows: 1, truncated: 0 });
    const [ex] = ds.train;
    expect(tok.decode(Array.from(ex.inputIds), false)).toBe('<s>Hello world.</s>');
    expect(ex.inputIds[0]).toBe(BOS);
    expect(ex.inputIds[ex.inputIds.length - 1]).toBe(EOS);
    expect(Array.from(ex.labels)).toEqual(Array.from(ex.inputIds));
    expect(ex).toMatchObject({ file: 't.jsonl', line: 1 });
  });

  it('prompt/completion: exactly the prompt tokens are −100; the completion and EOS are trained', () => {
    const tok = new FakeTokenizer();
    const ds = loadDataset(file('pc.jsonl', jsonl([{ prompt: 'Q: 2+2?\nA:', completion: ' four' }])), tok, opts());
    const [ex] = ds.train;
    const ids = Array.from(ex.inputIds);
    // <s> Q : " 2" + 2 ? \n A : | " four" </s>
    expect(ids.length).toBe(12);
    expect(Array.from(ex.labels)).toEqual([-100, -100, -100, -100, -100, -100, -100, -100, -100, -100, ids[10], EOS]);
    expect(tok.trainedText(ex.inputIds, ex.labels)).toBe(' four</s>');
  });

  it('lossOn "all" trains the prompt too; addEos false leaves EOS out', () => {
    const tok = new FakeTokenizer();
    const rows = jsonl([{ prompt: 'Q:', completion: ' yes' }]);
    const all = loadDataset(file('pc.jsonl', rows), tok, opts({ lossOn: 'all' })).train[0];
    expect(Array.from(all.labels)).toEqual(Array.from(all.inputIds));
    const noEos = loadDataset(file('pc.jsonl', rows), tok, opts({ addEos: false })).train[0];
    expect(tok.decode(Array.from(noEos.inputIds), false)).toBe('<s>Q: yes');
    expect(tok.trainedText(noEos.inputIds, noEos.labels)).toBe(' yes');
  });

  it('addBos: false drops BOS; true adds it for a tokenizer that does not', () => {
    const rows = jsonl([{ text: 'a b' }]);
    const none = loadDataset(file('t.jsonl', rows), new FakeTokenizer(), opts({ addBos: false })).train[0];
    expect(none.inputIds[0]).not.toBe(BOS);
    const forced = loadDataset(file('t.jsonl', rows), new FakeTokenizer({ addBos: false }), opts({ addBos: true })).train[0];
    expect(forced.inputIds[0]).toBe(BOS);
    const asIs = loadDataset(file('t.jsonl', rows), new FakeTokenizer({ addBos: false }), opts()).train[0];
    expect(asIs.inputIds[0]).not.toBe(BOS);
  });

  it('Alpaca: the standard prompt (with and without input) is masked, output + EOS trained', () => {
    const tok = new FakeTokenizer();
    const rows = [
      { instruction: 'Add the numbers.', input: '2 and 3', output: 'Five.' },
      { instruction: 'Say hi.', input: '', output: 'Hi!' },
    ];
    const ds = loadDataset(file('alpaca.json', JSON.stringify(rows, null, 2)), tok, opts({ maxLength: 256 }));
    expect(ds.info.rowFormat).toBe('alpaca');
    expect(ds.train.map((e) => e.line)).toEqual([2, 7]);
    const [a, b] = ds.train;
    expect(tok.decode(Array.from(a.inputIds), false)).toBe(
      '<s>Below is an instruction that describes a task, paired with an input that provides further context. ' +
        'Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\nFive.</s>',
    );
    expect(tok.trainedText(a.inputIds, a.labels)).toBe('Five.</s>');
    expect(tok.decode(Array.from(b.inputIds), false)).toBe(`<s>${alpacaPrompt('Say hi.', '')}Hi!</s>`);
    expect(alpacaPrompt('Say hi.', '')).not.toContain('### Input');
    expect(tok.trainedText(b.inputIds, b.labels)).toBe('Hi!</s>');
  });

  it('chat: only the assistant turns (with their end-of-turn token) are trained', () => {
    const tok = new FakeTokenizer({ chatml: true });
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello there' },
      { role: 'user', content: 'Bye' },
      { role: 'assistant', content: 'See you' },
    ];
    const [ex] = loadDataset(file('chat.jsonl', jsonl([{ messages }])), tok, opts({ maxLength: 128 })).train;
    const ids = Array.from(ex.inputIds);
    expect(tok.decode(ids, false)).toBe(tok.applyChatTemplate(messages, false));
    // The runs of trained tokens, as text.
    const runs: string[] = [];
    let cur: number[] = [];
    ids.forEach((id, t) => {
      if (ex.labels[t] !== -100) cur.push(id);
      else if (cur.length) (runs.push(tok.decode(cur, false)), (cur = []));
    });
    if (cur.length) runs.push(tok.decode(cur, false));
    expect(runs).toEqual(['Hello there<|im_end|>', 'See you<|im_end|>']);
  });

  it('chat: the built-in ChatML template when the tokenizer has none; a clear error otherwise', () => {
    const rows = jsonl([{ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Yo' }] }]);
    const tok = new FakeTokenizer();
    const [ex] = loadDataset(file('c.jsonl', rows), tok, opts({ chatTemplate: 'chatml' })).train;
    expect(tok.decode(Array.from(ex.inputIds), false)).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n');
    expect(tok.trainedText(ex.inputIds, ex.labels)).toBe('Yo<|im_end|>');
    expect(() => loadDataset(file('c.jsonl', rows), tok, opts())).toThrow(/no chat_template[\s\S]*chatTemplate/);
    expect(() => loadDataset(file('c.jsonl', rows), tok, opts())).toThrow(DatasetError);
  });

  it('chat: a template that is not prefix-stable is reported for the row; no assistant → nothing to train', () => {
    // Renders the number of messages first: the prefix renders differ from the whole.
    const tpl = "{{ messages|length }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}";
    const rows = jsonl([
      { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] },
      { messages: [{ role: 'user', content: 'a' }] },
    ]);
    const e = expectError(() => loadDataset(file('c.jsonl', rows), new FakeTokenizer(), opts({ chatTemplate: tpl })));
    expect(e.problems.map((p) => [p.line, p.code])).toEqual([
      [1, 'template'],
      [2, 'no-targets'],
    ]);
    expect(e.problems[0].message).toMatch(/^c\.jsonl:1: the chat template does not render this conversation prefix by prefix/);
    // With lossOn "all" the mask is not needed.
    const all = loadDataset(file('c.jsonl', rows), new FakeTokenizer(), opts({ chatTemplate: tpl, lossOn: 'all' }));
    expect(all.train.length).toBe(2);
  });

  it('pre-tokenized rows: labels kept (−100 ignored), or every token a target without labels; taken verbatim', () => {
    const tok = new FakeTokenizer();
    const rows = jsonl([{ input_ids: [5, 6, 7, 8], labels: [-100, -100, 7, 8] }, { input_ids: [9, 10, 11] }]);
    const ds = loadDataset(file('tok.jsonl', rows), tok, opts());
    expect(ds.info.rowFormat).toBe('tokens');
    expect(ds.train.map((e) => [Array.from(e.inputIds), Array.from(e.labels)])).toEqual([
      [
        [5, 6, 7, 8],
        [-100, -100, 7, 8],
      ],
      [
        [9, 10, 11],
        [9, 10, 11],
      ],
    ]);
    const e = expectError(() => loadDataset(file('tok.jsonl', jsonl([{ input_ids: [1, 2000] }])), tok, opts()));
    expect(e.problems[0]).toMatchObject({ line: 1, code: 'token-range' });
  });

  it('CSV with a column mapping, quotes and line breaks in fields', () => {
    const tok = new FakeTokenizer();
    const text = 'id,question,answer\n1,"Why, ""really""?","Because\nof that."\n2,Hi,Yo\n';
    const ds = loadDataset(file('data.csv', text), tok, opts({ columns: { prompt: 'question', completion: 'answer' } }));
    expect(ds.info).toMatchObject({ fileFormat: 'csv', rowFormat: 'prompt_completion', rows: 2 });
    expect(ds.train.map((e) => e.line)).toEqual([2, 4]);
    expect(tok.decode(Array.from(ds.train[0].inputIds), false)).toBe('<s>Why, "really"?Because\nof that.</s>');
    expect(tok.trainedText(ds.train[0].inputIds, ds.train[0].labels)).toBe('Because\nof that.</s>');
    // The extra "id" column is a warning naming it.
    expect(ds.problems).toEqual([expect.objectContaining({ severity: 'warning', code: 'unknown-fields', line: 2, message: expect.stringContaining('"id"') })]);
  });

  it('CSV: a mapped column missing from the header, and a wrong column count', () => {
    const tok = new FakeTokenizer();
    expect(() => loadDataset(file('data.csv', 'q,a\n1,2\n'), tok, opts({ columns: { prompt: 'question', completion: 'a' } }))).toThrow(
      'data.csv:1: column "question" (for "prompt") is not in the header; the columns are "q", "a"',
    );
    const text = 'prompt,completion\n' + 'a,b\n'.repeat(7) + 'a,b,c\n';
    const e = expectError(() => loadDataset(file('data.csv', text), tok, opts()));
    expect(e.message).toMatch(/^data\.csv:9: 3 columns, expected 2; fix the rows, or pass skipBadRows/);
  });

  it('TSV and .txt documents', () => {
    const tok = new FakeTokenizer();
    const tsv = loadDataset(file('d.tsv', 'text\nfirst row\nsecond row\n'), tok, opts());
    expect(tsv.train.length).toBe(2);
    const docs = loadDataset(file('book.txt', 'One.\nTwo.\n\n\nThree.\n  \nFour.'), tok, opts({ txtMode: 'documents' }));
    expect(docs.train.map((e) => [e.line, tok.decode(Array.from(e.inputIds), true)])).toEqual([
      [1, 'One.\nTwo.'],
      [5, 'Three.'],
      [7, 'Four.'],
    ]);
  });

  it('the formats can be overridden', () => {
    const tok = new FakeTokenizer();
    const ds = loadDataset(file('data.dat', '{"text":"x y"}\n'), tok, opts({ fileFormat: 'jsonl', rowFormat: 'text' }));
    expect(ds.info.fileFormat).toBe('jsonl');
    expect(() => loadDataset(file('d.jsonl', '{"content":"x"}\n'), tok, opts())).toThrow(/d\.jsonl:1: cannot tell the row format from the fields "content"/);
    expect(loadDataset(file('d.jsonl', '{"content":"x"}\n'), tok, opts({ columns: { text: 'content' } })).train.length).toBe(1);
  });
});

describe('malformed rows', () => {
  const bad = [
    '{"prompt": "a", "completion": "b"}',
    '{"prompt": "a", "completion": "b"}',
    '{"prompt": "a", "completion": "b"}',
    '{"prompt": "a"}',
    '{"prompt": "a", "completion": 7}',
    '{"prompt": "a", "completion": "b"',
    '{"prompt": "a", "completion": "b", "source": "web", "score": 1}',
  ].join('\n');

  it('are refused with file:line messages, listing them all', () => {
    const e = expectError(() => loadDataset(file('train.jsonl', bad), new FakeTokenizer(), opts()));
    expect(e.name).toBe('DatasetLineError');
    expect(e.message).toMatch(/^train\.jsonl:4: field "completion" is missing \(and 2 more bad rows\); fix the rows, or pass skipBadRows/);
    expect(e.problems.map((p) => p.message)).toEqual([
      'train.jsonl:4: field "completion" is missing',
      'train.jsonl:5: field "completion" must be a string, got number',
      expect.stringMatching(/^train\.jsonl:6: not valid JSON \(/),
    ]);
    expect([e.file, e.line]).toEqual(['train.jsonl', 4]);
  });

  it('skipBadRows skips them and reports every problem with its line; unknown fields are a warning', () => {
    const ds = loadDataset(file('train.jsonl', bad), new FakeTokenizer(), opts({ skipBadRows: true }));
    expect(ds.train.map((e) => e.line)).toEqual([1, 2, 3, 7]);
    expect(ds.info).toMatchObject({ rows: 7, skipped: 3 });
    expect(ds.problems.map((p) => [p.line, p.severity, p.code])).toEqual([
      [4, 'error', 'missing-field'],
      [5, 'error', 'field-type'],
      [6, 'error', 'json'],
      [7, 'warning', 'unknown-fields'],
    ]);
    expect(ds.problems[3].message).toBe('train.jsonl:7: unknown fields "source", "score" ignored (in 1 row; prompt_completion rows use "prompt", "completion")');
  });

  it('a row of another format says so', () => {
    const e = expectError(() => loadDataset(file('m.jsonl', jsonl([{ text: 'a' }, { prompt: 'x', completion: 'y' }])), new FakeTokenizer(), opts()));
    expect(e.problems[0].message).toBe('m.jsonl:2: field "text" is missing (this row looks like "prompt_completion", the file\'s first row like "text")');
  });

  it('an empty dataset, or one with no usable rows, is a clear error', () => {
    const tok = new FakeTokenizer();
    expect(() => loadDataset(file('e.jsonl', '\n\n'), tok, opts())).toThrow(new EmptyDatasetError('e.jsonl: no rows (the file is empty)'));
    expect(() => loadDataset(file('e.txt', '  \n'), tok, opts())).toThrow(EmptyDatasetError);
    expect(() => loadDataset(file('e.jsonl', '{"text": 1}\n{"text": 2}\n'), tok, opts({ skipBadRows: true }))).toThrow(
      'e.jsonl: no usable rows: of 2, 2 skipped as malformed',
    );
  });
});

describe('length limits', () => {
  const rows = jsonl([{ text: 'a b c d e f g h' }, { text: 'short' }, { prompt: 'p q r s t u v w x y', completion: ' z' }].slice(0, 2));

  it('long rows are truncated to maxLength and counted, with a warning per row', () => {
    const ds = loadDataset(file('t.jsonl', rows), new FakeTokenizer(), opts({ maxLength: 5 }));
    expect(ds.train.map((e) => e.inputIds.length)).toEqual([5, 3]);
    expect(ds.info.truncated).toBe(1);
    expect(ds.problems).toEqual([expect.objectContaining({ line: 1, code: 'truncated', message: 't.jsonl:1: 10 tokens, truncated to maxLength 5' })]);
  });

  it('or dropped when asked', () => {
    const ds = loadDataset(file('t.jsonl', rows), new FakeTokenizer(), opts({ maxLength: 5, overflow: 'drop' }));
    expect(ds.train.map((e) => e.line)).toEqual([2]);
    expect(ds.info.dropped).toBe(1);
    expect(ds.problems[0]).toMatchObject({ line: 1, code: 'dropped', severity: 'warning' });
  });

  it('a row whose completion is cut off entirely is dropped', () => {
    const pc = jsonl([{ prompt: 'p q r s t u v', completion: ' z' }, { prompt: 'p', completion: ' z' }]);
    const ds = loadDataset(file('t.jsonl', pc), new FakeTokenizer(), opts({ maxLength: 4 }));
    expect(ds.train.map((e) => e.line)).toEqual([2]);
    expect(ds.problems[0].message).toMatch(/t\.jsonl:1: 10 tokens, truncated to maxLength 4, which leaves nothing to train on: dropped/);
  });
});

describe('packing', () => {
  const ex = (ids: number[], labels: number[], line: number): Example => ({ inputIds: Uint32Array.from(ids), labels: Int32Array.from(labels), file: 'f', line });

  it('concatenates examples (EOS-separated) into blocks of exactly maxLength; labels kept per example', () => {
    const a = ex([1, 10, 11, 2], [-100, -100, 11, 2], 1); // already ends with EOS
    const b = ex([1, 12, 13], [-100, 12, 13], 2); // no EOS: a separator (label −100) is inserted
    const c = ex([1, 14, 15, 16, 2], [1, 14, 15, 16, 2], 3);
    const packed = packExamples([a, b, c], 5, EOS);
    expect(packed.map((p) => Array.from(p.inputIds))).toEqual([
      [1, 10, 11, 2, 1],
      [12, 13, 2, 1, 14],
      [15, 16, 2],
    ]);
    expect(packed.map((p) => Array.from(p.labels))).toEqual([
      [-100, -100, 11, 2, -100],
      [12, 13, -100, 1, 14],
      [15, 16, 2],
    ]);
    expect(packed.map((p) => p.line)).toEqual([1, 2, 3]);
  });

  it('loadDataset packs after the split, and does not truncate', () => {
    const tok = new FakeTokenizer();
    const rows = jsonl(Array.from({ length: 10 }, (_, i) => ({ text: `row ${i} has some words` })));
    const ds = loadDataset(file('t.jsonl', rows), tok, opts({ maxLength: 16, pack: true }));
    expect(ds.info.packed).toBe(true);
    const lengths = ds.train.map((e) => e.inputIds.length);
    expect(lengths.slice(0, -1).every((n) => n === 16)).toBe(true);
    // 10 rows × (BOS + 5 words + EOS) = 70 tokens.
    expect(lengths.reduce((s, n) => s + n, 0)).toBe(70);
    const all = ds.train.flatMap((e) => Array.from(e.inputIds));
    expect(tok.decode(all, false)).toBe(Array.from({ length: 10 }, (_, i) => `<s>row ${i} has some words</s>`).join(''));
  });
});

describe('validation split', () => {
  const rows = jsonl(Array.from({ length: 20 }, (_, i) => ({ text: `row ${i}` })));

  it('seeded, disjoint, covering, reproducible; fraction or count', () => {
    const tok = new FakeTokenizer();
    const a = loadDataset(file('t.jsonl', rows), tok, opts({ validation: { fraction: 0.25 }, seed: 7 }));
    const b = loadDataset(file('t.jsonl', rows), tok, opts({ validation: { fraction: 0.25 }, seed: 7 }));
    const c = loadDataset(file('t.jsonl', rows), tok, opts({ validation: { count: 5 }, seed: 8 }));
    const lines = (x: Example[] | null): number[] => (x ?? []).map((e) => e.line);
    expect(lines(a.validation).length).toBe(5);
    expect(lines(a.validation)).toEqual(lines(b.validation));
    expect(lines(c.validation).length).toBe(5);
    expect(lines(c.validation)).not.toEqual(lines(a.validation));
    expect([...lines(a.train), ...lines(a.validation)].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // Both parts keep the file order.
    expect(lines(a.train)).toEqual([...lines(a.train)].sort((x, y) => x - y));
    expect(() => loadDataset(file('t.jsonl', rows), tok, opts({ validation: { count: 20 } }))).toThrow(/leaves nothing to train on/);
  });

  it('a separate validation file uses the training file\'s row format', () => {
    const tok = new FakeTokenizer();
    const ds = loadDataset(
      { train: { name: 't.jsonl', text: jsonl([{ prompt: 'a', completion: ' b' }]) }, validation: { name: 'v.csv', text: 'prompt,completion\nc, d\n' } },
      tok,
      opts({ validation: { fraction: 0.5 } }),
    );
    expect(ds.info.files).toEqual(['t.jsonl', 'v.csv']);
    expect(ds.validation?.length).toBe(1);
    expect(tok.trainedText(ds.validation![0].inputIds, ds.validation![0].labels)).toBe(' d</s>');
    expect(ds.train.length).toBe(1);
  });
});
