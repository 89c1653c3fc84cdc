// Summary and preview of a loaded dataset, for the UI and the CLI.
import { countTargets } from './render';
import { IGNORE_INDEX, type Dataset, type Example, type FileFormat, type Problem, type RowFormat, type TokenizerLike } from './types';

/** Examples whose length is in [lo, hi] (inclusive). */
export interface LengthBucket {
  lo: number;
  hi: number;
  count: number;
}

export interface SplitStats {
  examples: number;
  /** Real tokens. */
  tokens: number;
  /** Positions the loss trains on (labels ≠ −100 after the first position of each example). */
  targets: number;
  minLength: number;
  maxLength: number;
  meanLength: number;
  histogram: LengthBucket[];
}

export interface DatasetStats {
  files: string[];
  fileFormat: FileFormat;
  rowFormat: RowFormat;
  rows: number;
  skipped: number;
  truncated: number;
  dropped: number;
  packed: boolean;
  maxLength: number;
  train: SplitStats;
  validation: SplitStats | null;
  errors: number;
  warnings: number;
  problems: Problem[];
}

/** Length statistics with `buckets` equal-width buckets over [1, maxLength]. */
export function splitStats(examples: readonly Example[], maxLength: number, buckets = 8): SplitStats {
  const nb = Math.max(1, Math.min(buckets, maxLength));
  const width = Math.ceil(maxLength / nb);
  const histogram: LengthBucket[] = [];
  for (let k = 0; k < nb; k++) histogram.push({ lo: k * width + 1, hi: Math.min(maxLength, (k + 1) * width), count: 0 });
  let tokens = 0;
  let targets = 0;
  let min = Infinity;
  let max = 0;
  for (const ex of examples) {
    const n = ex.inputIds.length;
    tokens += n;
    targets += countTargets(ex.labels);
    min = Math.min(min, n);
    max = Math.max(max, n);
    histogram[Math.min(nb - 1, Math.floor((n - 1) / width))].count++;
  }
  return {
    examples: examples.length,
    tokens,
    targets,
    minLength: examples.length ? min : 0,
    maxLength: max,
    meanLength: examples.length ? tokens / examples.length : 0,
    histogram: histogram.filter((b) => b.lo <= b.hi),
  };
}

export function datasetStats(ds: Dataset, buckets = 8): DatasetStats {
  const { info } = ds;
  return {
    ...info,
    train: splitStats(ds.train, info.maxLength, buckets),
    validation: ds.validation ? splitStats(ds.validation, info.maxLength, buckets) : null,
    errors: ds.problems.filter((p) => p.severity === 'error').length,
    warnings: ds.problems.filter((p) => p.severity === 'warning').length,
    problems: ds.problems,
  };
}

export interface PreviewToken {
  id: number;
  /** The token's text; the texts of a row's tokens concatenate to `PreviewRow.text`. */
  text: string;
  /** true: the token is a target (its label is kept); false: prompt / masked. */
  trained: boolean;
}

export interface PreviewRow {
  file: string;
  line: number;
  /** The example decoded with its special tokens. */
  text: string;
  tokens: PreviewToken[];
  /** Runs of consecutive tokens with the same flag, merged: what a UI colours. */
  spans: { text: string; trained: boolean }[];
  targets: number;
}

/**
 * The first `k` rows (before packing / splitting) as text with a per-token trained flag. Token texts
 * come from decoding growing prefixes, so a character split over several byte tokens shows once, on
 * the token that completes it; O(T²) decoding per row, meant for a handful of rows.
 */
export function previewExamples(ds: Dataset | readonly Example[], tok: TokenizerLike, k = 5): PreviewRow[] {
  const list = Array.isArray(ds) ? (ds as readonly Example[]) : (ds as Dataset).head;
  return list.slice(0, k).map((ex) => {
    const ids = Array.from(ex.inputIds);
    const tokens: PreviewToken[] = [];
    let prev = '';
    for (let t = 0; t < ids.length; t++) {
      const cur = tok.decode(ids.slice(0, t + 1), false);
      let text: string;
      if (cur.startsWith(prev) && !cur.endsWith('\ufffd')) {
        text = cur.slice(prev.length);
        prev = cur;
      } else if (cur.endsWith('\ufffd') && t + 1 < ids.length) {
        text = ''; // an incomplete character: shown with the token that completes it
      } else {
        text = cur.slice(Math.min(prev.length, cur.length));
        prev = cur;
      }
      tokens.push({ id: ids[t], text, trained: ex.labels[t] !== IGNORE_INDEX });
    }
    const spans: { text: string; trained: boolean }[] = [];
    for (const tk of tokens) {
      const last = spans[spans.length - 1];
      if (last && last.trained === tk.trained) last.text += tk.text;
      else spans.push({ text: tk.text, trained: tk.trained });
    }
    return { file: ex.file, line: ex.line, text: prev, tokens, spans, targets: countTargets(ex.labels) };
  });
}
