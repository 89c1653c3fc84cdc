// Plain-text files.
//   'chunk' (default): the whole file is tokenized once (BOS as the tokenizer adds it, EOS at the end
//     when addEos) and cut into consecutive blocks of maxLength tokens, as transformers'
//     run_clm.py `group_texts` does; every token is trained. The last, shorter block is kept (it is
//     padded in its batch) unless it has fewer than 2 tokens (nothing to predict). The token between
//     two blocks is never a target: the loss shifts within a block.
//   'documents': one example per document, documents being separated by blank lines; each is a
//     {"text"} row (BOS, EOS, truncation and packing as for rows).
import type { RowEncoder } from './render';
import type { Row } from './rows';
import type { DataFile, Example } from './types';

function countNewlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** Blocks of maxLength tokens over the whole file. `line` is where each block starts (decoded newlines counted). */
export function chunkText(file: DataFile, encoder: RowEncoder, maxLength: number, addEos: boolean): Example[] {
  const text = file.text.replace(/^\ufeff/, '');
  if (text.trim() === '') return [];
  const ids = encoder.encodeText(text);
  const eos = encoder.tok.eosTokenId;
  if (addEos && eos !== null && ids[ids.length - 1] !== eos) ids.push(eos);
  const out: Example[] = [];
  let line = 1;
  for (let s = 0; s < ids.length; s += maxLength) {
    const block = ids.slice(s, s + maxLength);
    if (block.length >= 2) {
      const inputIds = Uint32Array.from(block);
      out.push({ inputIds, labels: Int32Array.from(block), file: file.name, line });
    }
    line += countNewlines(encoder.tok.decode(block, false));
  }
  return out;
}

/** Blank-line-separated documents as {"text"} rows, each with the line it starts on. */
export function textDocuments(file: DataFile): Row[] {
  const lines = file.text.replace(/^\ufeff/, '').split('\n');
  const rows: Row[] = [];
  let start = -1;
  const flush = (end: number): void => {
    if (start >= 0) rows.push({ kind: 'text', line: start + 1, text: lines.slice(start, end).map((l) => l.replace(/\r$/, '')).join('\n') });
    start = -1;
  };
  for (let k = 0; k < lines.length; k++) {
    if (lines[k].trim() === '') flush(k);
    else if (start < 0) start = k;
  }
  flush(lines.length);
  return rows;
}
