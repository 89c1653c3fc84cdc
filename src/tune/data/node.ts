// Node only (the CLI): read data files from disk and load them. The browser passes File.text()
// contents to loadDataset directly.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { loadDataset } from './dataset';
import { DatasetError } from './errors';
import type { DataFile, Dataset, DatasetOptions, TokenizerLike } from './types';

/** A file's text, named by its base name in messages (`train.jsonl:17: …`). */
export async function readDataFile(path: string): Promise<DataFile> {
  try {
    return { name: basename(path), text: await readFile(path, 'utf8') };
  } catch (e) {
    throw new DatasetError(`cannot read the data file ${path}: ${(e as Error).message}`);
  }
}

/** loadDataset over paths; `options.chatTemplate` may name a file holding a Jinja template. */
export async function loadDatasetFiles(train: string, validation: string | null, tokenizer: TokenizerLike, options: DatasetOptions): Promise<Dataset> {
  const opts = { ...options };
  if (opts.chatTemplate && opts.chatTemplate !== 'chatml' && !opts.chatTemplate.includes('{') && existsSync(opts.chatTemplate)) {
    opts.chatTemplate = await readFile(opts.chatTemplate, 'utf8');
  }
  const files = { train: await readDataFile(train), validation: validation ? await readDataFile(validation) : null };
  return loadDataset(files, tokenizer, opts);
}
