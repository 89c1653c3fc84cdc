// The data part of the `webtune` command line: flags → DatasetOptions, and a plain-text summary.
// No Node imports here (node.ts reads the files), so the browser can reuse the formatting.
//
//   --data FILE              training data (.txt .jsonl .json .csv .tsv)
//   --val FILE               validation data (else --val-fraction / --val-count of the training file)
//   --format F               txt | jsonl | json | csv | tsv (default: from the extension)
//   --row-format R           text | prompt_completion | alpaca | chat | tokens (default: detected)
//   --columns a=b,c=d        our field = the file's column, e.g. prompt=question,completion=answer
//   --max-length N           sequence length T (alias --seq-len)
//   --loss-on completion|all
//   --bos / --no-bos         force / suppress BOS (default: as the tokenizer does)
//   --no-eos                 do not append EOS
//   --overflow truncate|drop
//   --pack                   pack examples into maxLength blocks
//   --txt-mode chunk|documents
//   --chat-template T        'chatml' (node.ts also accepts a file with a Jinja template)
//   --skip-bad-rows
//   --val-fraction F | --val-count N
//   --data-seed N            seed of the validation split
import { DatasetError } from './errors';
import type { DatasetStats } from './stats';
import type { DatasetOptions, FieldName, FileFormat, RowFormat } from './types';

export interface DataArgs {
  train: string;
  validation: string | null;
  options: DatasetOptions;
  /** Arguments this parser does not know, in order (for the rest of the CLI). */
  rest: string[];
}

const FILE_FORMATS: FileFormat[] = ['txt', 'jsonl', 'json', 'csv', 'tsv'];
const ROW_FORMATS: RowFormat[] = ['text', 'prompt_completion', 'alpaca', 'chat', 'tokens'];
const FIELDS: FieldName[] = ['text', 'prompt', 'completion', 'instruction', 'input', 'output', 'messages', 'input_ids', 'labels'];

function oneOf<T extends string>(flag: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) throw new DatasetError(`${flag} ${v}: expected one of ${allowed.join(', ')}`);
  return v as T;
}

function int(flag: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new DatasetError(`${flag} ${v}: expected an integer ≥ ${min}`);
  return n;
}

/** Parse the data flags out of `argv`; `defaults.maxLength` is used when --max-length is absent. */
export function parseDataArgs(argv: readonly string[], defaults: Partial<DatasetOptions> = {}): DataArgs {
  const o: Partial<DatasetOptions> = { ...defaults };
  let train: string | null = null;
  let validation: string | null = null;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new DatasetError(`${flag} needs a value`);
      i++;
      return v;
    };
    switch (flag) {
      case '--data':
        train = value();
        break;
      case '--val':
        validation = value();
        break;
      case '--format':
        o.fileFormat = oneOf(flag, value(), FILE_FORMATS);
        break;
      case '--row-format':
        o.rowFormat = oneOf(flag, value(), ROW_FORMATS);
        break;
      case '--columns': {
        const cols: Partial<Record<FieldName, string>> = {};
        for (const pair of value().split(',')) {
          const k = pair.indexOf('=');
          if (k <= 0) throw new DatasetError(`--columns ${pair}: expected field=column, e.g. prompt=question`);
          cols[oneOf('--columns', pair.slice(0, k).trim(), FIELDS)] = pair.slice(k + 1).trim();
        }
        o.columns = cols;
        break;
      }
      case '--max-length':
      case '--seq-len':
        o.maxLength = int(flag, value(), 2);
        break;
      case '--loss-on':
        o.lossOn = oneOf(flag, value(), ['completion', 'all'] as const);
        break;
      case '--bos':
        o.addBos = true;
        break;
      case '--no-bos':
        o.addBos = false;
        break;
      case '--no-eos':
        o.addEos = false;
        break;
      case '--overflow':
        o.overflow = oneOf(flag, value(), ['truncate', 'drop'] as const);
        break;
      case '--pack':
        o.pack = true;
        break;
      case '--txt-mode':
        o.txtMode = oneOf(flag, value(), ['chunk', 'documents'] as const);
        break;
      case '--chat-template':
        o.chatTemplate = value();
        break;
      case '--skip-bad-rows':
        o.skipBadRows = true;
        break;
      case '--val-fraction': {
        const v = value();
        const f = Number(v);
        if (!(f > 0 && f < 1)) throw new DatasetError(`--val-fraction ${v}: expected a number in (0, 1)`);
        o.validation = { fraction: f };
        break;
      }
      case '--val-count':
        o.validation = { count: int(flag, value(), 1) };
        break;
      case '--data-seed':
        o.seed = int(flag, value(), 0);
        break;
      default:
        rest.push(a);
    }
  }
  if (train === null) throw new DatasetError('no training data: pass --data FILE (.txt, .jsonl, .json, .csv or .tsv)');
  if (o.maxLength === undefined) throw new DatasetError('no sequence length: pass --max-length N');
  return { train, validation, options: o as DatasetOptions, rest };
}

/** A terminal summary: formats, counts, lengths, and the first `maxProblems` problems. */
export function formatStats(s: DatasetStats, maxProblems = 20): string {
  const lines: string[] = [];
  lines.push(`data: ${s.files.join(' + ')} (${s.fileFormat}, ${s.rowFormat} rows${s.packed ? ', packed' : ''}, maxLength ${s.maxLength})`);
  lines.push(`  rows ${s.rows}, skipped ${s.skipped}, truncated ${s.truncated}, dropped ${s.dropped}`);
  const split = (name: string, t: DatasetStats['train']): void => {
    lines.push(
      `  ${name}: ${t.examples} examples, ${t.tokens} tokens, ${t.targets} trained; length min ${t.minLength} / mean ${t.meanLength.toFixed(1)} / max ${t.maxLength}`,
    );
    const peak = Math.max(1, ...t.histogram.map((b) => b.count));
    for (const b of t.histogram) lines.push(`    ${`${b.lo}-${b.hi}`.padStart(11)} ${String(b.count).padStart(7)} ${'#'.repeat(Math.round((40 * b.count) / peak))}`);
  };
  split('train', s.train);
  if (s.validation) split('validation', s.validation);
  if (s.problems.length) {
    lines.push(`  ${s.errors} error${s.errors === 1 ? '' : 's'}, ${s.warnings} warning${s.warnings === 1 ? '' : 's'}:`);
    for (const p of s.problems.slice(0, maxProblems)) lines.push(`    ${p.severity === 'error' ? 'error' : 'warning'}: ${p.message}`);
    if (s.problems.length > maxProblems) lines.push(`    … and ${s.problems.length - maxProblems} more`);
  }
  return lines.join('\n');
}
