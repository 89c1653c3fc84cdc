// Reading a data file into rows (JSON objects with the line each starts on), telling the file and
// row formats apart, and checking each row's fields.
//
// Formats:
//   .jsonl / .ndjson  one JSON object per line (blank lines skipped)
//   .json             a JSON array of objects (each element parsed on its own, so one bad element is
//                     one bad row with its line), or JSON Lines when the file does not start with '['
//   .csv / .tsv       RFC 4180 with a header row; columns become fields (see `columns` to rename them)
//   .txt              plain text (src/tune/data/text.ts)
// Row formats, detected from the fields of the first valid row (first match wins):
//   {"messages": [{"role", "content"}, …]}         chat
//   {"input_ids": [...], "labels"?: [...]}          tokens (pre-tokenized)
//   {"instruction", "input"?, "output"}             alpaca
//   {"prompt", "completion"}                        prompt_completion
//   {"text"}                                        text
import { parseCsv } from './csv';
import type { ChatMessage, DataFile, FieldName, FileFormat, Problem, ProblemCode, RowFormat } from './types';

type Json = Record<string, unknown>;

/** A row as read from the file, before its format is checked. */
export interface RawRow {
  line: number;
  value: Json;
}

/** A row whose fields have been checked against its format. */
export type Row =
  | { kind: 'text'; line: number; text: string }
  | { kind: 'prompt_completion'; line: number; prompt: string; completion: string }
  | { kind: 'alpaca'; line: number; instruction: string; input: string; output: string }
  | { kind: 'chat'; line: number; messages: ChatMessage[] }
  | { kind: 'tokens'; line: number; inputIds: number[]; labels: number[] | null };

/** The fields each row format knows (others are reported once as unknown, and ignored). */
export const ROW_FIELDS: Record<RowFormat, readonly string[]> = {
  text: ['text'],
  prompt_completion: ['prompt', 'completion'],
  alpaca: ['instruction', 'input', 'output'],
  chat: ['messages'],
  tokens: ['input_ids', 'labels', 'attention_mask'],
};

export function problem(file: string, line: number, severity: Problem['severity'], code: ProblemCode, detail: string): Problem {
  return { file, line, severity, code, message: `${file}:${line}: ${detail}` };
}

/** The file format from the name's extension, else from the first characters. */
export function detectFileFormat(file: DataFile): FileFormat {
  const ext = /\.([a-z0-9]+)$/i.exec(file.name)?.[1]?.toLowerCase() ?? '';
  switch (ext) {
    case 'jsonl':
    case 'ndjson':
      return 'jsonl';
    case 'json':
      return 'json';
    case 'csv':
      return 'csv';
    case 'tsv':
      return 'tsv';
    case 'txt':
    case 'text':
    case 'md':
      return 'txt';
  }
  const first = file.text.replace(/^\ufeff/, '').trimStart()[0];
  if (first === '[') return 'json';
  if (first === '{') return 'jsonl';
  return 'txt';
}

/** Shorten a JSON.parse message (V8 may quote the whole input). */
function jsonMessage(e: unknown): string {
  let m = (e as Error).message ?? String(e);
  m = m.replace(/, "[\s\S]*" is not valid JSON$/, '');
  return m.length > 160 ? `${m.slice(0, 157)}…` : m;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v;
}

export interface ReadResult {
  rows: RawRow[];
  problems: Problem[];
}

function readJsonLines(file: DataFile, text: string, firstLine = 1): ReadResult {
  const rows: RawRow[] = [];
  const problems: Problem[] = [];
  const lines = text.split('\n');
  for (let k = 0; k < lines.length; k++) {
    const src = lines[k].replace(/\r$/, '');
    if (src.trim() === '') continue;
    const line = firstLine + k;
    let v: unknown;
    try {
      v = JSON.parse(src);
    } catch (e) {
      problems.push(problem(file.name, line, 'error', 'json', `not valid JSON (${jsonMessage(e)})`));
      continue;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      problems.push(problem(file.name, line, 'error', 'json', `expected a JSON object, got ${typeName(v)}`));
      continue;
    }
    rows.push({ line, value: v as Json });
  }
  return { rows, problems };
}

/**
 * The top-level elements of a JSON array as [start, end) offsets, found by a scanner that only
 * tracks strings and bracket depth; each element is then parsed on its own. Returns a fatal message
 * (with its offset) when the array's structure itself is broken.
 */
function splitJsonArray(text: string, from: number): { spans: [number, number][]; fatal: { at: number; message: string } | null } {
  const spans: [number, number][] = [];
  const n = text.length;
  const ws = (c: string): boolean => c === ' ' || c === '\n' || c === '\r' || c === '\t';
  let i = from + 1; // past '['
  for (;;) {
    while (i < n && ws(text[i])) i++;
    if (i >= n) return { spans, fatal: { at: from, message: 'the array opened here is never closed (missing "]")' } };
    if (text[i] === ']') {
      i++;
      while (i < n && ws(text[i])) i++;
      if (i < n) return { spans, fatal: { at: i, message: 'text after the end of the JSON array' } };
      return { spans, fatal: null };
    }
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < n; i++) {
      const c = text[i];
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
        else if (c === '\n') break; // JSON strings cannot hold raw line breaks: stop at the line end
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        if (depth === 0) break; // the array's own ']'
        depth--;
      } else if (c === ',' && depth === 0) break;
    }
    if (inString) {
      // Unterminated string: resynchronise at the next line that starts an element.
      let j = text.indexOf('\n', i);
      if (j < 0) j = n;
      spans.push([start, j]);
      i = j;
      // Skip to the next top-level-looking element start ("{" at the start of a line).
      const m = /\n[ \t]*\{/g;
      m.lastIndex = j;
      const hit = m.exec(text);
      if (!hit) return { spans, fatal: null }; // the broken element is reported when it fails to parse
      i = hit.index + 1;
      continue;
    }
    let end = i;
    while (end > start && ws(text[end - 1])) end--;
    spans.push([start, end]);
    if (i >= n) return { spans, fatal: { at: from, message: 'the array opened here is never closed (missing "]")' } };
    if (text[i] === ',') i++;
  }
}

function lineAt(lineStarts: number[], offset: number): number {
  let lo = 0;
  let hi = lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

function readJson(file: DataFile, text: string): ReadResult {
  const from = text.search(/\S/);
  if (from < 0) return { rows: [], problems: [] };
  if (text[from] !== '[') {
    // A single object, else JSON Lines.
    try {
      const v = JSON.parse(text) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) return { rows: [{ line: lineAt(lineStarts(text), from), value: v as Json }], problems: [] };
    } catch {
      /* not one JSON value: read as JSON Lines */
    }
    return readJsonLines(file, text);
  }
  const starts = lineStarts(text);
  const { spans, fatal } = splitJsonArray(text, from);
  const rows: RawRow[] = [];
  const problems: Problem[] = [];
  for (const [s, e] of spans) {
    const line = lineAt(starts, s);
    let v: unknown;
    try {
      v = JSON.parse(text.slice(s, e));
    } catch (err) {
      problems.push(problem(file.name, line, 'error', 'json', `not valid JSON (${jsonMessage(err)})`));
      continue;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      problems.push(problem(file.name, line, 'error', 'json', `expected a JSON object, got ${typeName(v)}`));
      continue;
    }
    rows.push({ line, value: v as Json });
  }
  if (fatal) problems.push(problem(file.name, lineAt(starts, fatal.at), 'error', 'json', fatal.message));
  return { rows, problems };
}

function lineStarts(text: string): number[] {
  const out = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) out.push(i + 1);
  return out;
}

function readCsv(file: DataFile, text: string, delimiter: string): ReadResult & { header: string[] } {
  const { records, bad, fatal } = parseCsv(text, delimiter);
  const problems: Problem[] = bad.map((b) => problem(file.name, b.line, 'error', 'csv', b.message));
  if (fatal) problems.push(problem(file.name, fatal.line, 'error', 'csv', fatal.message));
  if (records.length === 0) return { rows: [], problems, header: [] };
  const header = records[0].fields.map((h) => h.trim());
  const rows: RawRow[] = [];
  for (const r of records.slice(1)) {
    if (r.fields.length !== header.length) {
      problems.push(problem(file.name, r.line, 'error', 'columns', `${r.fields.length} column${r.fields.length === 1 ? '' : 's'}, expected ${header.length}`));
      continue;
    }
    const value: Json = {};
    header.forEach((h, k) => (value[h] = r.fields[k]));
    rows.push({ line: r.line, value });
  }
  return { rows, problems, header };
}

/** Split a JSON / JSONL / CSV / TSV file into rows. Problems are row errors (each with its line). */
export function readRows(file: DataFile, format: Exclude<FileFormat, 'txt'>): ReadResult & { header?: string[] } {
  const text = file.text.replace(/^\ufeff/, '');
  switch (format) {
    case 'jsonl':
      return readJsonLines(file, text);
    case 'json':
      return readJson(file, text);
    case 'csv':
      return readCsv(file, text, ',');
    case 'tsv':
      return readCsv(file, text, '\t');
  }
}

/** Rename fields: `columns` maps our field name → the file's name. Unmapped keys keep their names. */
export function mapColumns(value: Json, columns: Partial<Record<FieldName, string>> | undefined): Json {
  if (!columns) return value;
  const out: Json = { ...value };
  for (const theirs of Object.values(columns)) if (theirs !== undefined) delete out[theirs];
  for (const [ours, theirs] of Object.entries(columns)) if (theirs !== undefined && theirs in value) out[ours] = value[theirs];
  return out;
}

/** The row format a row's fields say, or null. */
export function detectRowFormat(value: Json): RowFormat | null {
  if ('messages' in value) return 'chat';
  if ('input_ids' in value) return 'tokens';
  if ('instruction' in value || 'output' in value) return 'alpaca';
  if ('prompt' in value || 'completion' in value) return 'prompt_completion';
  if ('text' in value) return 'text';
  return null;
}

export class RowError extends Error {
  constructor(
    readonly code: ProblemCode,
    message: string,
  ) {
    super(message);
  }
}

function str(value: Json, field: string, required = true): string {
  const v = value[field];
  if (v === undefined) {
    if (!required) return '';
    throw new RowError('missing-field', `field "${field}" is missing`);
  }
  if (typeof v !== 'string') throw new RowError('field-type', `field "${field}" must be a string, got ${typeName(v)}`);
  return v;
}

/** CSV cells hold JSON arrays as text. */
function jsonField(value: Json, field: string): unknown {
  const v = value[field];
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v) as unknown;
  } catch (e) {
    throw new RowError('field-type', `field "${field}" is text that is not valid JSON (${jsonMessage(e)})`);
  }
}

function intArray(value: Json, field: string, allowIgnore: boolean, vocabSize: number | undefined): number[] {
  const v = jsonField(value, field);
  if (!Array.isArray(v)) throw new RowError('field-type', `field "${field}" must be an array of token ids, got ${typeName(v)}`);
  for (let k = 0; k < v.length; k++) {
    const x = v[k] as unknown;
    if (typeof x !== 'number' || !Number.isInteger(x)) throw new RowError('field-type', `field "${field}"[${k}] must be an integer, got ${JSON.stringify(x)}`);
    if (allowIgnore && x === -100) continue;
    if (x < 0 || (vocabSize !== undefined && vocabSize > 0 && x >= vocabSize)) {
      throw new RowError('token-range', `field "${field}"[${k}] = ${x} is outside the vocabulary [0, ${vocabSize ?? '∞'})${allowIgnore ? ' and is not -100' : ''}`);
    }
  }
  return v as number[];
}

/** Check a row's fields for `format`; throws RowError with the detail. */
export function checkRow(value: Json, line: number, format: RowFormat, vocabSize?: number): Row {
  switch (format) {
    case 'text': {
      const text = str(value, 'text');
      if (text.trim() === '') throw new RowError('empty', 'field "text" is empty');
      return { kind: 'text', line, text };
    }
    case 'prompt_completion':
      return { kind: 'prompt_completion', line, prompt: str(value, 'prompt'), completion: str(value, 'completion') };
    case 'alpaca': {
      const instruction = str(value, 'instruction');
      if (instruction.trim() === '') throw new RowError('empty', 'field "instruction" is empty');
      const input = value.input === null ? '' : str(value, 'input', false);
      return { kind: 'alpaca', line, instruction, input, output: str(value, 'output') };
    }
    case 'chat': {
      if (value.messages === undefined) throw new RowError('missing-field', 'field "messages" is missing');
      const msgs = jsonField(value, 'messages');
      if (!Array.isArray(msgs)) throw new RowError('field-type', `field "messages" must be an array of {"role", "content"}, got ${typeName(msgs)}`);
      if (msgs.length === 0) throw new RowError('empty', 'field "messages" is empty');
      const messages: ChatMessage[] = msgs.map((m: unknown, k) => {
        if (!m || typeof m !== 'object' || Array.isArray(m)) throw new RowError('field-type', `messages[${k}] must be an object {"role", "content"}, got ${typeName(m)}`);
        const o = m as Json;
        if (typeof o.role !== 'string') throw new RowError(o.role === undefined ? 'missing-field' : 'field-type', `messages[${k}]: field "role" ${o.role === undefined ? 'is missing' : `must be a string, got ${typeName(o.role)}`}`);
        if (typeof o.content !== 'string') throw new RowError(o.content === undefined ? 'missing-field' : 'field-type', `messages[${k}]: field "content" ${o.content === undefined ? 'is missing' : `must be a string, got ${typeName(o.content)}`}`);
        return { role: o.role, content: o.content };
      });
      return { kind: 'chat', line, messages };
    }
    case 'tokens': {
      if (value.input_ids === undefined) throw new RowError('missing-field', 'field "input_ids" is missing');
      const inputIds = intArray(value, 'input_ids', false, vocabSize);
      if (inputIds.length === 0) throw new RowError('empty', 'field "input_ids" is empty');
      let labels: number[] | null = null;
      if (value.labels !== undefined && value.labels !== null) {
        labels = intArray(value, 'labels', true, vocabSize);
        if (labels.length !== inputIds.length) throw new RowError('field-type', `field "labels" has ${labels.length} entries, "input_ids" has ${inputIds.length}`);
      }
      return { kind: 'tokens', line, inputIds, labels };
    }
  }
}
