// Reading files into rows: CSV (RFC 4180), JSON Lines, JSON arrays, format detection.
import { describe, expect, it } from 'vitest';
import { checkRow, detectFileFormat, detectRowFormat, mapColumns, parseCsv, readRows } from '../../../src/tune/data';

describe('parseCsv (RFC 4180)', () => {
  it('reads quoted fields with delimiters, doubled quotes and line breaks, and tracks lines', () => {
    const text = 'q,a\r\n"Hello, you","He said ""hi"""\r\n"two\nlines",x\n\nplain,"last"';
    const { records, bad, fatal } = parseCsv(text);
    expect(bad).toEqual([]);
    expect(fatal).toBeNull();
    expect(records).toEqual([
      { fields: ['q', 'a'], line: 1 },
      { fields: ['Hello, you', 'He said "hi"'], line: 2 },
      { fields: ['two\nlines', 'x'], line: 3 },
      { fields: ['plain', 'last'], line: 6 },
    ]);
  });

  it('keeps empty fields, a trailing empty field and a final line without a line break', () => {
    expect(parseCsv('a,,c\n,\nx,y,').records.map((r) => r.fields)).toEqual([['a', '', 'c'], ['', ''], ['x', 'y', '']]);
  });

  it('reports characters after a closing quote as a bad record and goes on', () => {
    const { records, bad } = parseCsv('a,b\n"x"y,z\nc,d\n');
    expect(bad).toEqual([{ line: 2, message: expect.stringContaining('after a closing quote') }]);
    expect(records.map((r) => r.line)).toEqual([1, 3]);
  });

  it('a quote that is never closed is fatal, at the line it opens', () => {
    const { records, fatal } = parseCsv('a,b\n1,2\n3,"open\nmore\n');
    expect(records.length).toBe(2);
    expect(fatal).toEqual({ line: 3, message: expect.stringContaining('never closed') });
  });

  it('reads TSV with a tab delimiter', () => {
    expect(parseCsv('a\tb\n"x\ty"\tz\n', '\t').records.map((r) => r.fields)).toEqual([['a', 'b'], ['x\ty', 'z']]);
  });
});

describe('readRows', () => {
  it('JSON Lines: one object per line, blank lines skipped, errors with file and line', () => {
    const text = '{"text":"a"}\n\n{"text": }\n[1]\n{"text":"b"}\r\n';
    const { rows, problems } = readRows({ name: 'train.jsonl', text }, 'jsonl');
    expect(rows.map((r) => [r.line, r.value.text])).toEqual([
      [1, 'a'],
      [5, 'b'],
    ]);
    expect(problems.map((p) => p.message)).toEqual([
      expect.stringMatching(/^train\.jsonl:3: not valid JSON \(Unexpected token/),
      'train.jsonl:4: expected a JSON object, got an array',
    ]);
    expect(problems.every((p) => p.severity === 'error' && p.code === 'json')).toBe(true);
  });

  it('JSON array: each element is a row with the line it starts on; a bad element is one bad row', () => {
    const text = '[\n  {"text": "a,b]"},\n  {\n    "text": "c"\n  },\n  {"text": x},\n  {"text": "d"}\n]\n';
    const { rows, problems } = readRows({ name: 'data.json', text }, 'json');
    expect(rows.map((r) => [r.line, r.value.text])).toEqual([
      [2, 'a,b]'],
      [3, 'c'],
      [7, 'd'],
    ]);
    expect(problems.map((p) => p.message)).toEqual([expect.stringMatching(/^data\.json:6: not valid JSON/)]);
  });

  it('JSON array: a missing "]" and an unterminated string are reported with lines', () => {
    const open = readRows({ name: 'a.json', text: '[{"text":"a"},\n{"text":"b"}\n' }, 'json');
    expect(open.rows.length).toBe(2);
    expect(open.problems[0].message).toMatch(/^a\.json:1: the array opened here is never closed/);
    const str = readRows({ name: 'b.json', text: '[\n{"text":"a},\n{"text":"b"}\n]' }, 'json');
    expect(str.rows.map((r) => r.value.text)).toEqual(['b']);
    expect(str.problems.map((p) => p.line)).toEqual([2]);
  });

  it('.json holding one object, or JSON Lines', () => {
    expect(readRows({ name: 'one.json', text: '{\n "text": "x"\n}' }, 'json').rows).toEqual([{ line: 1, value: { text: 'x' } }]);
    expect(readRows({ name: 'l.json', text: '{"text":"x"}\n{"text":"y"}' }, 'json').rows.length).toBe(2);
  });

  it('CSV: header → fields; wrong column count names the line and counts', () => {
    const text = 'q,a\n1,2\n"x, y",z\n3,4,5\n';
    const { rows, problems, header } = readRows({ name: 'data.csv', text }, 'csv');
    expect(header).toEqual(['q', 'a']);
    expect(rows).toEqual([
      { line: 2, value: { q: '1', a: '2' } },
      { line: 3, value: { q: 'x, y', a: 'z' } },
    ]);
    expect(problems.map((p) => p.message)).toEqual(['data.csv:4: 3 columns, expected 2']);
  });
});

describe('format detection', () => {
  it('file format from the extension, else from the first character', () => {
    const f = (name: string, text = ''): string => detectFileFormat({ name, text });
    expect([f('a.jsonl'), f('a.ndjson'), f('a.JSON'), f('a.csv'), f('a.tsv'), f('a.txt'), f('a.md')]).toEqual(['jsonl', 'jsonl', 'json', 'csv', 'tsv', 'txt', 'txt']);
    expect([f('data', '  [{}]'), f('data', '{"a":1}'), f('data', 'hello')]).toEqual(['json', 'jsonl', 'txt']);
  });

  it('row format from the fields', () => {
    expect(detectRowFormat({ messages: [] })).toBe('chat');
    expect(detectRowFormat({ input_ids: [1] })).toBe('tokens');
    expect(detectRowFormat({ instruction: 'x', input: '', output: 'y' })).toBe('alpaca');
    expect(detectRowFormat({ prompt: 'x', completion: 'y' })).toBe('prompt_completion');
    expect(detectRowFormat({ text: 'x', id: 3 })).toBe('text');
    expect(detectRowFormat({ content: 'x' })).toBeNull();
  });

  it('columns rename the file\'s fields to ours', () => {
    expect(mapColumns({ q: '1', a: '2', other: 3 }, { prompt: 'q', completion: 'a' })).toEqual({ prompt: '1', completion: '2', other: 3 });
  });

  it('checkRow names the missing or mistyped field', () => {
    expect(() => checkRow({ prompt: 'x' }, 4, 'prompt_completion')).toThrow('field "completion" is missing');
    expect(() => checkRow({ text: 3 }, 1, 'text')).toThrow('field "text" must be a string, got number');
    expect(() => checkRow({ messages: [{ role: 'user' }] }, 1, 'chat')).toThrow('messages[0]: field "content" is missing');
    expect(() => checkRow({ input_ids: [1, 2], labels: [1] }, 1, 'tokens')).toThrow('"labels" has 1 entries');
    expect(() => checkRow({ input_ids: [1, 5000] }, 1, 'tokens', 1000)).toThrow('input_ids"[1] = 5000 is outside the vocabulary [0, 1000)');
    expect(checkRow({ input_ids: '[1, 2]', labels: '[-100, 2]' }, 1, 'tokens')).toEqual({ kind: 'tokens', line: 1, inputIds: [1, 2], labels: [-100, 2] });
  });
});
