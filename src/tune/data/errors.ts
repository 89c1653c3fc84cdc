// Typed errors of the data pipeline. Each sets `name` so it survives the worker boundary (comlink
// serialises name + message) and says what to do next.
import type { Problem } from './types';

/** A dataset cannot be used as given (bad options, a file that cannot be read as its format, …). */
export class DatasetError extends Error {
  override name = 'DatasetError';
}

/**
 * Malformed rows. The message names the first (`train.jsonl:17: not valid JSON (…)`) and how many
 * more there are; `problems` lists them all with their line numbers, for the UI.
 */
export class DatasetLineError extends DatasetError {
  override name = 'DatasetLineError';
  readonly file: string;
  readonly line: number;
  constructor(
    readonly problems: Problem[],
    hint = 'fix the rows, or pass skipBadRows to skip them',
  ) {
    const first = problems[0];
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more bad row${problems.length > 2 ? 's' : ''})` : '';
    super(`${first.message}${more}; ${hint}`);
    this.file = first.file;
    this.line = first.line;
  }
}

/** Nothing to train on: an empty file, or every row skipped or dropped. */
export class EmptyDatasetError extends DatasetError {
  override name = 'EmptyDatasetError';
}

/** A saved data cursor does not belong to this dataset / batch order. */
export class DataCursorError extends DatasetError {
  override name = 'DataCursorError';
}
