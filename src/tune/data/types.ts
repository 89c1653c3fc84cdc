// Types shared by the training-data pipeline (src/tune/data).
//
// The pipeline:  file text → rows (with line numbers) → examples {inputIds, labels} → (split, pack)
//                → seeded epoch order → padded batches (B, T).
//
// Labels follow the Hugging Face convention: `labels` is `inputIds` with IGNORE_INDEX (−100) at the
// positions that are not trained. The shift by one (the label of position t + 1 is the target of
// position t) happens in the loss (src/ref/cross_entropy.ts shiftLabels, peft-spec §8), never here:
// a token is "trained" when its own label is kept, i.e. the model learns to predict it from the
// tokens before it. Position 0 of a sequence is therefore never a target.
import type { ChatMessage } from '../../model/tokenizer';

export type { ChatMessage };

/** The label of a position that is not trained (PyTorch's CrossEntropyLoss ignore_index). */
export const IGNORE_INDEX = -100;

/**
 * The few tokenizer methods the pipeline needs. `TextTokenizer` (src/model/tokenizer.ts) satisfies it;
 * tests may pass a small fake.
 */
export interface TokenizerLike {
  /** Token ids of `text`; `addSpecialTokens` adds BOS etc. as the tokenizer's post-processor says. */
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: readonly number[], skipSpecialTokens: boolean): string;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** BOS / EOS as text, passed to chat templates as `bos_token` / `eos_token` when we render one ourselves. */
  readonly bosToken?: string | null;
  readonly eosToken?: string | null;
  /** When known, pre-tokenized ids are checked against it. */
  readonly vocabSize?: number;
  readonly hasChatTemplate: boolean;
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt: boolean): string;
}

/** A data file's contents and the name used in messages (`train.jsonl:17: …`). Reading bytes is the caller's job. */
export interface DataFile {
  name: string;
  text: string;
}

/** How the file is split into rows. */
export type FileFormat = 'txt' | 'jsonl' | 'json' | 'csv' | 'tsv';

/** What one row holds. */
export type RowFormat = 'text' | 'prompt_completion' | 'alpaca' | 'chat' | 'tokens';

/** The fields each row format reads. `columns` maps these names to the names used in the file. */
export type FieldName = 'text' | 'prompt' | 'completion' | 'instruction' | 'input' | 'output' | 'messages' | 'input_ids' | 'labels';

export interface DatasetOptions {
  /** T: the longest sequence (tokens) an example may have; longer rows are truncated or dropped. */
  maxLength: number;
  /** Override the format chosen from the file extension (and contents). */
  fileFormat?: FileFormat;
  /** Override the row format detected from the first valid row. */
  rowFormat?: RowFormat;
  /** Our field name → the key / CSV column that holds it, e.g. { prompt: 'question', completion: 'answer' }. */
  columns?: Partial<Record<FieldName, string>>;
  /** 'completion' (default): loss on completions, Alpaca outputs and assistant turns only. 'all': every token. */
  lossOn?: 'completion' | 'all';
  /**
   * BOS. undefined (default): as the tokenizer does (`encode(text, true)`; chat: as the template writes it).
   * true: also prepend BOS when the tokenizer/template did not. false: encode without special tokens.
   */
  addBos?: boolean;
  /**
   * Append EOS after each text / completion / Alpaca output / plain-text file (default true), trained
   * like the completion, so the model learns to stop. Chat rows end as the template renders them (the
   * end-of-turn token is part of the assistant turn); pre-tokenized rows are taken verbatim.
   */
  addEos?: boolean;
  /** Rows longer than maxLength: 'truncate' (default, keep the first maxLength tokens) or 'drop'. */
  overflow?: 'truncate' | 'drop';
  /** Concatenate examples (EOS-separated) into blocks of exactly maxLength tokens. */
  pack?: boolean;
  /** .txt files: 'chunk' (default) the whole file into maxLength blocks; 'documents': one example per blank-line-separated document. */
  txtMode?: 'chunk' | 'documents';
  /** A Jinja chat template to use instead of the tokenizer's ('chatml' for the built-in CHATML_TEMPLATE). */
  chatTemplate?: string;
  /** Skip malformed rows and report them (default false: refuse the file, listing every bad row). */
  skipBadRows?: boolean;
  /** Hold out part of the training file for validation (ignored when a validation file is given). */
  validation?: { fraction: number } | { count: number } | null;
  /** Seed of the validation split (default 0). */
  seed?: number;
  /** Called while rows are tokenized (large files take seconds). */
  onProgress?: (done: number, total: number) => void;
}

export type ProblemCode =
  | 'json' // not valid JSON / not an object
  | 'csv' // a CSV record that cannot be read
  | 'columns' // a CSV record with the wrong number of columns
  | 'missing-field'
  | 'field-type'
  | 'empty'
  | 'unknown-fields'
  | 'format' // the row format cannot be told / a row of another format
  | 'template' // the chat template failed or is not prefix-stable
  | 'token-range' // pre-tokenized ids outside the vocabulary
  | 'no-targets' // nothing to train on in this row
  | 'truncated'
  | 'dropped';

/** One thing wrong with one row. `message` is ready to show: `file:line: detail`. */
export interface Problem {
  file: string;
  /** 1-based line where the row starts. */
  line: number;
  severity: 'error' | 'warning';
  code: ProblemCode;
  message: string;
}

/** One training sequence. */
export interface Example {
  /** Token ids, (T_i,) with T_i ≤ maxLength. */
  inputIds: Uint32Array;
  /** (T_i,): inputIds with IGNORE_INDEX where not trained (unshifted). */
  labels: Int32Array;
  file: string;
  /** Line of the row (for a packed block or a text chunk: where its first token comes from). */
  line: number;
}

/** The counts behind the summary. */
export interface DatasetInfo {
  files: string[];
  fileFormat: FileFormat;
  rowFormat: RowFormat;
  /** Rows read from the files (before skipping, dropping, packing). */
  rows: number;
  /** Rows skipped because they were malformed (skipBadRows). */
  skipped: number;
  truncated: number;
  /** Rows dropped: too long with overflow 'drop', or nothing left to train on. */
  dropped: number;
  packed: boolean;
  maxLength: number;
}

export interface Dataset {
  train: Example[];
  /** null when there is no validation set. */
  validation: Example[] | null;
  info: DatasetInfo;
  problems: Problem[];
  /** The first few training rows as examples before packing and splitting (for previews). */
  head: Example[];
}
