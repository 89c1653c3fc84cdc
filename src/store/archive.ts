// A run in one file: its record, its checkpoint (trainer meta + tensors) and, optionally, its PEFT
// adapter, to move a run to another browser or machine, or keep it outside the browser's storage.
//
// Container: a safetensors file whose "tensors" are the archive's files, each a 1-D U8 tensor named
// by its path; the header's __metadata__ says what the file is. Any safetensors reader opens it
// (Python: `safe_open(path, "np").get_tensor("run.json").tobytes()`), the project's own reader
// validates every offset before anything is used, and entries are read one at a time by range, so
// a large archive never has to sit in memory whole (a File/Blob is sliced).
//
//   u64 LE header length N | N bytes JSON header, space-padded to a multiple of 8 | entry bytes
//   header = { "__metadata__": { "format": "webtune-archive", "version": "1", "kind": "run",
//                                "created": ISO date, "entries": "adapter/…,checkpoint.json,…" },
//              "<path>": { "dtype": "U8", "shape": [bytes], "data_offsets": [begin, end] }, … }
//
// Entries (version 1):
//   run.json                 the run record (name, config, base model, dataset ids, history, samples)
//   checkpoint.json          the checkpoint record: step, versions, sizes, and the trainer's meta
//   checkpoint.safetensors   the trainer's tensors (trainable params + AdamW moments), as saved
//   adapter/<file>           PEFT files (adapter_config.json, adapter_model.safetensors), when given
// JSON entries write NaN and ±Infinity as {"$float": "NaN"} (plain JSON has no such numbers, and a
// history may hold a skipped step's NaN loss).
import { blobSource, bytesSource, type ByteSource } from '../io/bytes';
import { openSafetensors, readTensorBytes, SafetensorsFormatError, type SafetensorsFile } from '../io/safetensors';
import { type CheckpointInfo } from './checkpoints';
import { exact, newId, type Store } from './db';
import { ArchiveFormatError, RunNotFoundError } from './errors';
import { checkRoom, failedWrite, latestOf } from './quota';
import { CHECKPOINT_FORMAT_VERSION, blobKey, type CheckpointRecord, type RunRecord } from './schema';

export const ARCHIVE_FORMAT = 'webtune-archive';
export const ARCHIVE_VERSION = 1;

export interface ArchiveEntry {
  name: string;
  bytes: Uint8Array;
}

// ── The container ───────────────────────────────────────────────────────────────────────────────

/** The archive as chunks (header, then each entry), ready for `new Blob(parts)` without a copy. */
export function archiveParts(entries: readonly ArchiveEntry[], metadata: Record<string, string>): Uint8Array[] {
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: { ...metadata, entries: sorted.map((e) => e.name).join(',') } };
  let offset = 0;
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i];
    if (!e.name || e.name === '__metadata__' || (i > 0 && sorted[i - 1].name === e.name)) throw new ArchiveFormatError(`archive entry name "${e.name}" is empty, reserved or repeated`);
    header[e.name] = { dtype: 'U8', shape: [e.bytes.byteLength], data_offsets: [offset, offset + e.bytes.byteLength] };
    offset += e.bytes.byteLength;
  }
  const enc = new TextEncoder();
  let json = JSON.stringify(header);
  const len = enc.encode(json).byteLength;
  json += ' '.repeat(Math.ceil(len / 8) * 8 - len);
  const hb = enc.encode(json);
  const head = new Uint8Array(8 + hb.byteLength);
  new DataView(head.buffer).setBigUint64(0, BigInt(hb.byteLength), true);
  head.set(hb, 8);
  return [head, ...sorted.map((e) => e.bytes)];
}

export interface Archive {
  readonly metadata: Record<string, string>;
  readonly names: readonly string[];
  has(name: string): boolean;
  read(name: string): Promise<Uint8Array>;
  readJson(name: string): Promise<unknown>;
}

/** Open an archive written by archiveParts (any version this code knows). */
export async function readArchive(source: ByteSource | Blob | Uint8Array, name = 'archive'): Promise<Archive> {
  const src = source instanceof Uint8Array ? bytesSource(name, source) : source instanceof Blob ? blobSource(name, source) : source;
  let st: SafetensorsFile;
  try {
    st = await openSafetensors(src);
  } catch (e) {
    if (e instanceof SafetensorsFormatError) throw new ArchiveFormatError(`${src.name} is not a webtune archive (${e.message})`, { cause: e });
    throw e;
  }
  if (st.metadata.format !== ARCHIVE_FORMAT) {
    throw new ArchiveFormatError(`${src.name} is a safetensors file but not a webtune archive (format "${st.metadata.format ?? 'none'}"): to load an adapter, use the adapter import instead`);
  }
  const version = Number(st.metadata.version);
  if (!Number.isInteger(version) || version < 1 || version > ARCHIVE_VERSION) {
    throw new ArchiveFormatError(`${src.name} is a webtune archive of version ${st.metadata.version}, newer than this webtune reads (${ARCHIVE_VERSION}): update webtune`);
  }
  for (const t of st.tensors.values()) {
    if (t.dtype !== 'U8' || t.shape.length !== 1) throw new ArchiveFormatError(`${src.name}: entry "${t.name}" is ${t.dtype} [${t.shape.join(', ')}], expected U8 bytes`);
  }
  const read = async (entry: string): Promise<Uint8Array> => {
    if (!st.tensors.has(entry)) throw new ArchiveFormatError(`${src.name} has no entry "${entry}" (it holds: ${[...st.tensors.keys()].join(', ')})`);
    return exact(await readTensorBytes(st, entry));
  };
  return {
    metadata: st.metadata,
    names: [...st.tensors.keys()].sort(),
    has: (entry) => st.tensors.has(entry),
    read,
    async readJson(entry) {
      try {
        return parseJson(new TextDecoder().decode(await read(entry)));
      } catch (e) {
        if (e instanceof ArchiveFormatError) throw e;
        throw new ArchiveFormatError(`${src.name}: entry "${entry}" is not valid JSON (${(e as Error).message})`, { cause: e });
      }
    },
  };
}

export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? { $float: String(v) } : v));
}

export function parseJson(text: string): unknown {
  return JSON.parse(text, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v) && typeof v.$float === 'string' && Object.keys(v).length === 1 ? Number(v.$float) : v,
  );
}

// ── Runs ────────────────────────────────────────────────────────────────────────────────────────

export interface ExportRunOptions {
  /** Which checkpoint (default: the latest); null: none (an adapter-only archive). */
  checkpointId?: string | null;
  /** PEFT files to include, e.g. exportPeftAdapter()'s result. */
  adapter?: Record<string, Uint8Array | string>;
}

/** A run as one archive file (a Blob: hand it to a download link, or write it to disk in Node). */
export async function exportRunArchive(store: Store, runId: string, options: ExportRunOptions = {}): Promise<{ blob: Blob; fileName: string; entries: string[] }> {
  const tx = store.db.transaction(['runs', 'checkpoints', 'blobs'], 'readonly');
  const run = await tx.objectStore('runs').get(runId);
  let checkpoint: CheckpointRecord | null = null;
  if (run && options.checkpointId !== null) {
    checkpoint = options.checkpointId
      ? ((await tx.objectStore('checkpoints').get(options.checkpointId)) ?? null)
      : latestOf(await tx.objectStore('checkpoints').index('by-run').getAll(runId));
  }
  const tensors = checkpoint ? await tx.objectStore('blobs').get(blobKey.checkpoint(checkpoint.id)) : undefined;
  await tx.done;
  if (!run) throw new RunNotFoundError(runId);
  if (options.checkpointId && (!checkpoint || checkpoint.runId !== runId)) {
    throw new ArchiveFormatError(`checkpoint ${options.checkpointId} does not belong to run "${run.name}"`);
  }

  const enc = new TextEncoder();
  const entries: ArchiveEntry[] = [{ name: 'run.json', bytes: enc.encode(stringifyJson(run)) }];
  if (checkpoint) {
    if (!tensors) throw new ArchiveFormatError(`checkpoint ${checkpoint.id} of run "${run.name}" has no bytes: pick another checkpoint`);
    entries.push({ name: 'checkpoint.json', bytes: enc.encode(stringifyJson(checkpoint)) }, { name: 'checkpoint.safetensors', bytes: tensors });
  }
  for (const [file, data] of Object.entries(options.adapter ?? {})) {
    entries.push({ name: `adapter/${file}`, bytes: typeof data === 'string' ? enc.encode(data) : data });
  }
  const parts = archiveParts(entries, { format: ARCHIVE_FORMAT, version: String(ARCHIVE_VERSION), kind: 'run', created: new Date().toISOString() });
  const safe = run.name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'run';
  return {
    blob: new Blob(parts as BlobPart[], { type: 'application/octet-stream' }),
    fileName: `${safe}${checkpoint ? `-step${checkpoint.step}` : ''}.webtune`,
    entries: entries.map((e) => e.name).sort(),
  };
}

export interface ImportedRun {
  run: RunRecord;
  checkpoint: CheckpointInfo | null;
  /** The archive's PEFT files (adapter/ stripped), or null. */
  adapter: Record<string, Uint8Array> | null;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Import an archive as a NEW run (fresh id, so it never overwrites a run of this browser), with its
 * checkpoint, in one transaction: afterwards the run and its checkpoint are both there, or neither.
 */
export async function importRunArchive(store: Store, source: ByteSource | Blob | Uint8Array, options: { name?: string } = {}): Promise<ImportedRun> {
  const ar = await readArchive(source);
  const runJson = await ar.readJson('run.json');
  if (!isObj(runJson) || typeof runJson.name !== 'string' || !('config' in runJson)) throw new ArchiveFormatError('the archive\'s run.json has no run name or config');

  let checkpoint: CheckpointRecord | null = null;
  let tensors: Uint8Array | null = null;
  if (ar.has('checkpoint.json')) {
    const c = await ar.readJson('checkpoint.json');
    const meta = isObj(c) ? c.meta : null;
    if (!isObj(c) || !isObj(meta) || typeof meta.step !== 'number' || typeof meta.version !== 'number') {
      throw new ArchiveFormatError('the archive\'s checkpoint.json has no trainer state (meta with step and version)');
    }
    if (typeof c.formatVersion === 'number' && c.formatVersion > CHECKPOINT_FORMAT_VERSION) {
      throw new ArchiveFormatError(`the archive's checkpoint has format version ${c.formatVersion}, newer than this webtune reads (${CHECKPOINT_FORMAT_VERSION}): update webtune`);
    }
    tensors = await ar.read('checkpoint.safetensors');
    try {
      await openSafetensors(bytesSource('checkpoint.safetensors', tensors));
    } catch (e) {
      throw new ArchiveFormatError(`the archive's checkpoint tensors are damaged (${(e as Error).message})`, { cause: e });
    }
    checkpoint = {
      id: newId(),
      runId: '',
      step: meta.step,
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      stateVersion: meta.version,
      byteSize: tensors.byteLength,
      createdAt: Date.now(),
      reason: 'import',
      meta: meta as unknown as CheckpointRecord['meta'],
    };
  }

  const adapterNames = ar.names.filter((n) => n.startsWith('adapter/'));
  const adapter = adapterNames.length ? Object.fromEntries(await Promise.all(adapterNames.map(async (n) => [n.slice('adapter/'.length), await ar.read(n)] as const))) : null;

  const now = Date.now();
  const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const run: RunRecord = {
    id: newId(),
    name: (options.name ?? runJson.name).trim() || 'imported run',
    createdAt: now,
    updatedAt: now,
    // A finished run (or an imported adapter) stays finished; anything else can be continued from its checkpoint.
    status: runJson.status === 'done' ? 'done' : checkpoint ? 'paused' : 'stopped',
    config: runJson.config,
    baseModel: typeof runJson.baseModel === 'string' ? runJson.baseModel : null,
    datasetIds: arr(runJson.datasetIds).filter((d): d is string => typeof d === 'string'),
    history: arr(runJson.history),
    samples: arr(runJson.samples) as RunRecord['samples'],
    message: null,
  };
  if (checkpoint) checkpoint.runId = run.id;

  const quotaCtx = { what: `the imported run "${run.name}"`, neededBytes: tensors?.byteLength ?? 0, kept: 'nothing of the import was stored' };
  await checkRoom(store, quotaCtx);
  const tx = store.db.transaction(['runs', 'checkpoints', 'blobs'], 'readwrite', { durability: 'strict' });
  try {
    const writes: Promise<unknown>[] = [tx.objectStore('runs').add(run)];
    if (checkpoint && tensors) writes.push(tx.objectStore('checkpoints').add(checkpoint), tx.objectStore('blobs').put(tensors, blobKey.checkpoint(checkpoint.id)));
    await Promise.all([...writes, tx.done]);
  } catch (e) {
    await failedWrite(store, tx, e, quotaCtx);
  }
  const { meta: _meta, ...info } = checkpoint ?? { meta: null };
  return { run, checkpoint: checkpoint ? (info as CheckpointInfo) : null, adapter };
}
