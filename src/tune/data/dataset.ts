// loadDataset: data files + tokenizer + options → training (and validation) examples, with every
// problem row listed by file and line.
//
// Order of work, per file: read rows (JSON / JSONL / CSV / TSV / text) → rename columns → detect the
// row format (first valid row, unless given) → check each row's fields → render and tokenize with the
// loss mask (render.ts) → truncate or drop rows longer than maxLength (not when packing: packed blocks
// cut examples anyway). Then: the validation split (seeded, of the training file's examples, when no
// validation file is given), then packing of each part.
//
// Malformed rows are errors: without skipBadRows the load is refused with a DatasetLineError listing
// all of them; with it they are skipped and listed in `problems`. Unknown fields, truncated and
// dropped rows are warnings.
import { DatasetError, DatasetLineError, EmptyDatasetError } from './errors';
import { packExamples } from './pack';
import { countTargets, RowEncoder } from './render';
import { checkRow, detectFileFormat, detectRowFormat, mapColumns, problem, readRows, ROW_FIELDS, RowError, type Row } from './rows';
import { splitHoldout } from './shuffle';
import { chunkText, textDocuments } from './text';
import type { DataFile, Dataset, DatasetInfo, DatasetOptions, Example, FileFormat, Problem, RowFormat, TokenizerLike } from './types';

/** How many first training examples `Dataset.head` keeps for previews. */
export const HEAD_SIZE = 32;

interface FileResult {
  examples: Example[];
  problems: Problem[];
  fileFormat: FileFormat;
  rowFormat: RowFormat;
  rows: number;
  skipped: number;
  truncated: number;
  dropped: number;
}

function checkOptions(o: DatasetOptions): void {
  if (!Number.isInteger(o.maxLength) || o.maxLength < 2) throw new DatasetError(`maxLength must be an integer ≥ 2, got ${o.maxLength}`);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) throw new DatasetError(`seed must be a non-negative integer, got ${o.seed}`);
}

function loadFile(file: DataFile, encoder: RowEncoder, o: DatasetOptions, rowFormatHint: RowFormat | undefined): FileResult {
  const fileFormat = o.fileFormat ?? detectFileFormat(file);
  const problems: Problem[] = [];
  const res: FileResult = { examples: [], problems, fileFormat, rowFormat: 'text', rows: 0, skipped: 0, truncated: 0, dropped: 0 };
  const addEos = o.addEos !== false;

  let rows: Row[];
  if (fileFormat === 'txt') {
    if ((o.txtMode ?? 'chunk') === 'chunk') {
      res.examples = chunkText(file, encoder, o.maxLength, addEos);
      res.rows = res.examples.length;
      return res;
    }
    rows = textDocuments(file);
  } else {
    const read = readRows(file, fileFormat);
    problems.push(...read.problems);
    const values = read.rows.map((r) => ({ line: r.line, value: mapColumns(r.value, o.columns) }));
    if (o.columns && read.header) {
      for (const [ours, theirs] of Object.entries(o.columns)) {
        if (theirs !== undefined && !read.header.includes(theirs)) {
          throw new DatasetError(`${file.name}:1: column "${theirs}" (for "${ours}") is not in the header; the columns are ${read.header.map((h) => `"${h}"`).join(', ')}`);
        }
      }
    }
    let rowFormat = o.rowFormat ?? rowFormatHint;
    if (!rowFormat) {
      for (const v of values) {
        const f = detectRowFormat(v.value);
        if (f) {
          rowFormat = f;
          break;
        }
      }
    }
    if (!rowFormat) {
      if (values.length === 0) {
        if (problems.length) throw new DatasetLineError(problems, 'no row could be read');
        throw new EmptyDatasetError(`${file.name}: no rows (the file is empty)`);
      }
      const first = values[0];
      throw new DatasetError(
        `${file.name}:${first.line}: cannot tell the row format from the fields ${Object.keys(first.value).map((k) => `"${k}"`).join(', ') || '(none)'}: ` +
          'expected {"text"}, {"prompt", "completion"}, {"instruction", "input", "output"}, {"messages"} or {"input_ids"}; ' +
          'rename the fields with the columns option (e.g. { text: "content" }) or set rowFormat',
      );
    }
    res.rowFormat = rowFormat;
    // Unknown fields: one warning per file, naming them, at the first row that has one.
    const known = new Set(ROW_FIELDS[rowFormat]);
    const unknown = new Map<string, number>();
    let firstUnknownLine = 0;
    let unknownRows = 0;
    rows = [];
    for (const v of values) {
      let any = false;
      for (const k of Object.keys(v.value)) {
        if (known.has(k)) continue;
        if (!unknown.has(k)) unknown.set(k, v.line);
        any = true;
      }
      if (any) {
        unknownRows++;
        if (!firstUnknownLine) firstUnknownLine = v.line;
      }
      try {
        rows.push(checkRow(v.value, v.line, rowFormat, encoder.tok.vocabSize));
      } catch (e) {
        if (!(e instanceof RowError)) throw e;
        const other = detectRowFormat(v.value);
        const hint = other && other !== rowFormat ? ` (this row looks like "${other}", the file's first row like "${rowFormat}")` : '';
        problems.push(problem(file.name, v.line, 'error', e.code, e.message + hint));
      }
    }
    if (unknown.size) {
      const names = [...unknown.keys()].map((k) => `"${k}"`).join(', ');
      problems.push(
        problem(file.name, firstUnknownLine, 'warning', 'unknown-fields', `unknown field${unknown.size > 1 ? 's' : ''} ${names} ignored (in ${unknownRows} row${unknownRows > 1 ? 's' : ''}; ${rowFormat} rows use ${ROW_FIELDS[rowFormat].map((f) => `"${f}"`).join(', ')})`),
      );
    }
  }
  res.rows = rows.length + problems.filter((p) => p.severity === 'error').length;

  const total = rows.length;
  rows.forEach((row, k) => {
    if (o.onProgress && k % 256 === 0) o.onProgress(k, total);
    let enc;
    try {
      enc = encoder.encodeRow(row);
    } catch (e) {
      if (!(e instanceof RowError)) throw e;
      problems.push(problem(file.name, row.line, 'error', e.code, e.message));
      return;
    }
    let { ids, labels } = enc;
    if (!o.pack && ids.length > o.maxLength) {
      if (o.overflow === 'drop') {
        problems.push(problem(file.name, row.line, 'warning', 'dropped', `${ids.length} tokens, more than maxLength ${o.maxLength}: dropped`));
        res.dropped++;
        return;
      }
      ids = ids.slice(0, o.maxLength);
      labels = labels.slice(0, o.maxLength);
      if (countTargets(labels) === 0) {
        problems.push(problem(file.name, row.line, 'warning', 'dropped', `${enc.ids.length} tokens, truncated to maxLength ${o.maxLength}, which leaves nothing to train on: dropped`));
        res.dropped++;
        return;
      }
      res.truncated++;
      problems.push(problem(file.name, row.line, 'warning', 'truncated', `${enc.ids.length} tokens, truncated to maxLength ${o.maxLength}`));
    }
    res.examples.push({ inputIds: Uint32Array.from(ids), labels: Int32Array.from(labels), file: file.name, line: row.line });
  });
  o.onProgress?.(total, total);
  res.skipped = problems.filter((p) => p.severity === 'error').length;
  problems.sort((a, b) => a.line - b.line);
  return res;
}

function emptyMessage(r: FileResult, name: string, o: DatasetOptions): string {
  if (r.rows === 0) return `${name}: no rows (the file is empty)`;
  const parts: string[] = [];
  if (r.skipped) parts.push(`${r.skipped} skipped as malformed`);
  if (r.dropped) parts.push(`${r.dropped} dropped (longer than maxLength ${o.maxLength}${o.overflow === 'drop' ? ' with overflow "drop"' : ', nothing left to train on'})`);
  return `${name}: no usable rows: of ${r.rows}, ${parts.join(', ') || 'none had anything to train on'}`;
}

/** Load training (and validation) data. Throws DatasetLineError / EmptyDatasetError / DatasetError. */
export function loadDataset(files: { train: DataFile; validation?: DataFile | null }, tokenizer: TokenizerLike, options: DatasetOptions): Dataset {
  checkOptions(options);
  const encoder = new RowEncoder(tokenizer, options);
  const tr = loadFile(files.train, encoder, options, undefined);
  const va = files.validation ? loadFile(files.validation, encoder, options, options.rowFormat ?? (tr.fileFormat === 'txt' ? undefined : tr.rowFormat)) : null;
  const problems = [...tr.problems, ...(va?.problems ?? [])];
  const errors = problems.filter((p) => p.severity === 'error');
  if (errors.length && !options.skipBadRows) throw new DatasetLineError(errors);
  if (tr.examples.length === 0) throw new EmptyDatasetError(emptyMessage(tr, files.train.name, options));
  if (va && files.validation && va.examples.length === 0) throw new EmptyDatasetError(emptyMessage(va, files.validation.name, options));

  let train = tr.examples;
  let validation: Example[] | null = va ? va.examples : null;
  const head = train.slice(0, HEAD_SIZE);
  if (!va && options.validation) {
    const s = splitHoldout(train, options.validation, options.seed ?? 0);
    train = s.train;
    validation = s.validation;
  }
  const packed = !!options.pack && !(tr.fileFormat === 'txt' && (options.txtMode ?? 'chunk') === 'chunk');
  if (packed) {
    train = packExamples(train, options.maxLength, tokenizer.eosTokenId);
    if (validation) validation = packExamples(validation, options.maxLength, tokenizer.eosTokenId);
  }
  const info: DatasetInfo = {
    files: [files.train.name, ...(files.validation ? [files.validation.name] : [])],
    fileFormat: tr.fileFormat,
    rowFormat: tr.rowFormat,
    rows: tr.rows + (va?.rows ?? 0),
    skipped: tr.skipped + (va?.skipped ?? 0),
    truncated: tr.truncated + (va?.truncated ?? 0),
    dropped: tr.dropped + (va?.dropped ?? 0),
    packed,
    maxLength: options.maxLength,
  };
  return { train, validation, info, problems, head };
}
