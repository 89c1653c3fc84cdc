// Batches for training: a seeded order per epoch, right padding, and a cursor that resumes exactly.
//
// Letters: B = examples in a batch, T = sequence length of the batch (the longest example in it, or a
// fixed length). Layout: row-major (B, T), example b at [b·T, b·T + T_b), then padding.
//
// Padding is on the right with `padId` and label −100. Under causal attention a real token never
// attends to a later position, so right padding changes no real token's logits, and its −100 labels
// add nothing to the loss; any id works as padId (default 0; the tokenizer's pad or EOS id is tidy).
//
// The cursor is (epoch, index): index = how many examples of this epoch's order have been consumed.
// The order of epoch e is permutation(n, seed, e·n) (src/tune/data/shuffle.ts), a pure function, so a
// restored cursor yields exactly the batches an uninterrupted run would have. The cursor carries the
// dataset's size and fingerprint so it is not applied to another dataset by mistake.
import { countTargets } from './render';
import { epochOrder } from './shuffle';
import { DataCursorError, DatasetError } from './errors';
import { IGNORE_INDEX, type Example } from './types';

export interface DataCursor {
  version: 1;
  seed: number;
  shuffle: boolean;
  /** 0-based epoch of the next batch. */
  epoch: number;
  /** Examples of this epoch's order already consumed. */
  index: number;
  /** Number of examples, and a hash of their ids and labels. */
  size: number;
  fingerprint: string;
}

export interface BatchOptions {
  /** B (the last batch of an epoch may be smaller unless dropLast). */
  batchSize: number;
  /** Seed of the epoch orders (default 0). */
  seed?: number;
  /** Shuffle each epoch (default true); false: file order every epoch. */
  shuffle?: boolean;
  /** 'longest' (default): T = longest example in the batch. A number: always that T (≥ every example). */
  padTo?: 'longest' | number;
  padId?: number;
  /** Skip an epoch's last batch when it has fewer than batchSize examples (default false). */
  dropLast?: boolean;
}

export interface Batch {
  /** (B, T) token ids; padding = padId. */
  inputIds: Uint32Array;
  /** (B, T) labels, unshifted; −100 on masked and padded positions. */
  labels: Int32Array;
  B: number;
  T: number;
  /** Real (non-padding) tokens. */
  tokens: number;
  /** Positions the loss trains on after the shift (Σ_b Σ_{t≥1} labels[b, t] ≠ −100): its N_valid. */
  targets: number;
  /** Epoch and in-epoch index of the batch's first example. */
  epoch: number;
  index: number;
  /** (B,) which examples (indices into the list) make the batch. */
  rows: Uint32Array;
}

/** Pad examples into one (B, T) batch. */
export function collate(examples: readonly Example[], padTo: 'longest' | number = 'longest', padId = 0): Omit<Batch, 'epoch' | 'index' | 'rows'> {
  const B = examples.length;
  if (B === 0) throw new DatasetError('collate: no examples');
  let longest = 0;
  for (const ex of examples) longest = Math.max(longest, ex.inputIds.length);
  let T = longest;
  if (padTo !== 'longest') {
    if (!Number.isInteger(padTo) || padTo < 1) throw new DatasetError(`padTo must be 'longest' or a positive integer, got ${padTo}`);
    if (longest > padTo) throw new DatasetError(`an example has ${longest} tokens, more than padTo = ${padTo}; load the dataset with maxLength ≤ ${padTo}`);
    T = padTo;
  }
  const inputIds = new Uint32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  let tokens = 0;
  let targets = 0;
  examples.forEach((ex, b) => {
    inputIds.set(ex.inputIds, b * T);
    labels.set(ex.labels, b * T);
    tokens += ex.inputIds.length;
    targets += countTargets(ex.labels);
  });
  return { inputIds, labels, B, T, tokens, targets };
}

/** FNV-1a (32-bit) over the count, lengths, ids and labels: a cheap identity for cursors. */
export function datasetFingerprint(examples: readonly Example[]): string {
  let h = 0x811c9dc5;
  const mix = (x: number): void => {
    h = Math.imul(h ^ (x & 0xff), 0x01000193);
    h = Math.imul(h ^ ((x >>> 8) & 0xff), 0x01000193);
    h = Math.imul(h ^ ((x >>> 16) & 0xff), 0x01000193);
    h = Math.imul(h ^ (x >>> 24), 0x01000193);
  };
  mix(examples.length);
  for (const ex of examples) {
    mix(ex.inputIds.length);
    for (let t = 0; t < ex.inputIds.length; t++) mix(ex.inputIds[t]);
    for (let t = 0; t < ex.labels.length; t++) mix(ex.labels[t]);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

export class BatchIterator {
  readonly size: number;
  readonly fingerprint: string;
  private readonly batchSize: number;
  private readonly seed: number;
  private readonly shuffle: boolean;
  private readonly padTo: 'longest' | number;
  private readonly padId: number;
  private readonly dropLast: boolean;
  private epochIndex = 0;
  private position = 0;
  private order: Uint32Array | null = null;
  private orderEpoch = -1;

  /** `cursor` (an object or its JSON) resumes where it was taken. */
  constructor(
    private readonly examples: readonly Example[],
    options: BatchOptions,
    cursor?: DataCursor | string | null,
  ) {
    const { batchSize } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new DatasetError(`batchSize must be a positive integer, got ${batchSize}`);
    if (examples.length === 0) throw new DatasetError('no examples to batch');
    this.batchSize = batchSize;
    this.seed = options.seed ?? 0;
    this.shuffle = options.shuffle ?? true;
    this.padTo = options.padTo ?? 'longest';
    this.padId = options.padId ?? 0;
    this.dropLast = options.dropLast ?? false;
    if (this.dropLast && examples.length < batchSize) {
      throw new DatasetError(`dropLast with batchSize ${batchSize} and only ${examples.length} examples leaves no batch; lower batchSize or turn off dropLast`);
    }
    this.size = examples.length;
    this.fingerprint = datasetFingerprint(examples);
    if (cursor !== undefined && cursor !== null) this.restore(cursor);
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.size / this.batchSize) : Math.ceil(this.size / this.batchSize);
  }

  get epoch(): number {
    return this.epochIndex;
  }

  /** Where the next batch starts; JSON-serialisable (store it with the checkpoint). */
  get cursor(): DataCursor {
    return { version: 1, seed: this.seed, shuffle: this.shuffle, epoch: this.epochIndex, index: this.position, size: this.size, fingerprint: this.fingerprint };
  }

  private restore(c: DataCursor | string): void {
    let cur: DataCursor;
    try {
      cur = typeof c === 'string' ? (JSON.parse(c) as DataCursor) : c;
    } catch (e) {
      throw new DataCursorError(`the saved data cursor is not valid JSON (${(e as Error).message})`);
    }
    if (!cur || cur.version !== 1) throw new DataCursorError(`unknown data cursor version ${cur?.version}; the checkpoint was written by another webtune version`);
    const why: string[] = [];
    if (cur.size !== this.size) why.push(`${cur.size} examples then, ${this.size} now`);
    if (cur.fingerprint !== this.fingerprint) why.push('the examples differ (file, tokenizer or data options changed)');
    if (cur.seed !== this.seed) why.push(`seed ${cur.seed} then, ${this.seed} now`);
    if (cur.shuffle !== this.shuffle) why.push(`shuffle ${cur.shuffle} then, ${this.shuffle} now`);
    if (why.length) {
      throw new DataCursorError(`the saved data cursor belongs to another dataset or order: ${why.join('; ')}. Load the same data with the same options to resume, or start a new run`);
    }
    if (!Number.isInteger(cur.epoch) || cur.epoch < 0 || !Number.isInteger(cur.index) || cur.index < 0 || cur.index >= this.size) {
      throw new DataCursorError(`the saved data cursor is out of range (epoch ${cur.epoch}, index ${cur.index} of ${this.size})`);
    }
    this.epochIndex = cur.epoch;
    this.position = cur.index;
  }

  private orderOf(epoch: number): Uint32Array {
    if (this.orderEpoch !== epoch || !this.order) {
      this.order = this.shuffle ? epochOrder(this.size, this.seed, epoch) : Uint32Array.from({ length: this.size }, (_, i) => i);
      this.orderEpoch = epoch;
    }
    return this.order;
  }

  /** The next batch; epochs roll over without end (the trainer decides when to stop). */
  next(): Batch {
    const order = this.orderOf(this.epochIndex);
    const epoch = this.epochIndex;
    const index = this.position;
    const end = Math.min(this.size, index + this.batchSize);
    const rows = order.slice(index, end);
    const batch = collate(
      Array.from(rows, (r) => this.examples[r]),
      this.padTo,
      this.padId,
    );
    this.position = end;
    if (this.position >= this.size || (this.dropLast && this.size - this.position < this.batchSize)) {
      this.epochIndex++;
      this.position = 0;
    }
    return { ...batch, epoch, index, rows };
  }
}

/** One pass in file order (validation / evaluation); the last batch may be smaller. */
export function* evalBatches(examples: readonly Example[], batchSize: number, padTo: 'longest' | number = 'longest', padId = 0): Generator<Batch> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new DatasetError(`batchSize must be a positive integer, got ${batchSize}`);
  for (let i = 0; i < examples.length; i += batchSize) {
    const slice = examples.slice(i, i + batchSize);
    yield { ...collate(slice, padTo, padId), epoch: 0, index: i, rows: Uint32Array.from(slice, (_, k) => i + k) };
  }
}
