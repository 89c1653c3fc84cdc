// The IndexedDB layout of webtune's local storage, and its upgrades.
//
// Stores (schema version 3, the current one):
//   models       one record per cached model file (complete, or a partial download), keyed by the
//                cache key (base URL + file, or `local:<name>/<file>`), indexed by content hash
//   modelChunks  the bytes of downloaded model files, as Blobs of at most 16 MiB keyed
//                [cache key, chunk index]: a download is stored as it arrives and read back range by
//                range, never whole (Chromium keeps large Blobs on disk). A model record with `chunks`
//                has its bytes here; one without has them in `blobs` as one Uint8Array
//   datasets     the user's uploaded data files, keyed by their sha256 (uploading twice keeps one copy)
//   runs         one record per training run: config, metrics history, samples, name, status
//   checkpoints  per run: the trainer's state (step, AdamW step, dropout/RNG offset, data cursor,
//                config, history) and the size of its tensors; indexed by run and by [run, step]
//   blobs        the bytes behind models, datasets and checkpoints (`model/<key>`, `dataset/<id>`,
//                `checkpoint/<id>`). Kept apart so that listing records never reads megabytes of
//                tensors; a record and its blob are always written and deleted in one transaction.
//   locks        lease records: who trains which run (see lock.ts)
//
// Upgrades: MIGRATIONS[v - 1] turns version v − 1 into version v. Opening runs every step from the
// stored version up to the requested one inside the single `versionchange` transaction, so an upgrade
// is all-or-nothing too. Version 1 kept bytes inline in each record (a listing read every tensor);
// version 2 moved them into `blobs` and added run status, checkpoint sizes and the lock store; version 3
// added `modelChunks` (files stored before stay whole in `blobs` and are read as one chunk).
// To change the layout: add a step to MIGRATIONS, bump nothing else (DB_VERSION follows), describe the
// new records below, and add an upgrade test that writes the previous version's records.
import type { DBSchema, IDBPDatabase, IDBPTransaction } from 'idb';

export const DB_NAME = 'webtune';

/** Layout of the bytes inside a checkpoint record + blob (not the trainer's state version). */
export const CHECKPOINT_FORMAT_VERSION = 1;

// ── Records (version 2) ─────────────────────────────────────────────────────────────────────────

export interface ModelRecord {
  /** Cache key: the hub's cacheKey(baseUrl, file), or `local:<folder>/<file>` for a picked file. */
  key: string;
  /** Where the bytes came from: the file's URL, or `local:<folder>`. */
  source: string;
  file: string;
  /** Bytes stored (for a partial download: received so far). */
  size: number;
  /** Content hash (sha256, hex) when known: verified by the download, or computed on store. */
  sha256: string | null;
  etag: string | null;
  /** false: an interrupted download (only its first `size` bytes). */
  complete: boolean;
  /** The whole file's size when the server said (partials). */
  total: number | null;
  /** Byte length of each chunk in `modelChunks`, in order; absent: the bytes are one Uint8Array in `blobs`. */
  chunks?: number[];
  storedAt: number;
  lastUsedAt: number;
}

export interface DatasetRecord {
  /** sha256 of the bytes (hex). */
  id: string;
  name: string;
  /** MIME type as the browser reported it ('' when unknown). */
  type: string;
  size: number;
  createdAt: number;
  lastUsedAt: number;
}

/** created: never trained; training: a tab is (or was, until it crashed) training it; paused/stopped: by the user. */
export type RunStatus = 'created' | 'training' | 'paused' | 'stopped' | 'done' | 'failed';

export interface RunSample {
  step: number;
  prompt: string;
  text: string;
}

export interface RunRecord {
  id: string;
  name: string;
  createdAt: number;
  updatedAt: number;
  status: RunStatus;
  /** The run's full configuration (model source, method, optimiser, data options): structured-cloneable. */
  config: unknown;
  /** Base model's source (what loadModel was given), for the run list and resuming. */
  baseModel: string | null;
  /** Datasets (ids in `datasets`) the run trains on. */
  datasetIds: string[];
  /** Metrics events as the trainer emitted them (for charts). */
  history: unknown[];
  samples: RunSample[];
  /** Why the run failed or stopped, for the run list. */
  message: string | null;
}

/** The trainer state's fields the store reads; the rest of the trainer's meta is carried as is. */
export interface SnapshotMeta {
  /** The trainer's state version (TRAIN_STATE_VERSION). */
  version: number;
  step: number;
}

export type CheckpointReason = 'auto' | 'pause' | 'stop' | 'done' | 'manual' | 'import';

export interface CheckpointRecord {
  id: string;
  runId: string;
  step: number;
  /** CHECKPOINT_FORMAT_VERSION when written. */
  formatVersion: number;
  /** The trainer's state version (meta.version). */
  stateVersion: number;
  /** Bytes of the tensors blob (trainable tensors + AdamW moments, safetensors). */
  byteSize: number;
  createdAt: number;
  reason: CheckpointReason;
  /**
   * The trainer's meta exactly as snapshot() returned it: step, adamStep, dropoutOffset (the RNG
   * position), data cursor, config, history. Structured-cloned, so NaN losses survive.
   */
  meta: SnapshotMeta;
}

export interface LeaseRecord {
  /** `run:<runId>` */
  name: string;
  holder: LockHolder;
  /** ms since epoch; null under Web Locks (the browser releases the lock when the tab dies). */
  expiresAt: number | null;
}

export interface LockHolder {
  clientId: string;
  /** Shown to the user: "Chrome tab opened 10:02", "worker 3". */
  label: string;
  /** One acquisition: a re-acquire by the same client gets a new token. */
  token: string;
  acquiredAt: number;
  heartbeatAt: number;
  mode: 'web-locks' | 'lease';
}

export interface WebtuneDB extends DBSchema {
  models: { key: string; value: ModelRecord; indexes: { 'by-sha256': string } };
  datasets: { key: string; value: DatasetRecord };
  runs: { key: string; value: RunRecord; indexes: { 'by-updated': number } };
  checkpoints: { key: string; value: CheckpointRecord; indexes: { 'by-run': string; 'by-run-step': [string, number] } };
  blobs: { key: string; value: Uint8Array };
  locks: { key: string; value: LeaseRecord };
  modelChunks: { key: [string, number]; value: Blob };
}

export type StoreName = 'models' | 'datasets' | 'runs' | 'checkpoints' | 'blobs' | 'locks' | 'modelChunks';

export const blobKey = {
  model: (key: string) => `model/${key}`,
  dataset: (id: string) => `dataset/${id}`,
  checkpoint: (id: string) => `checkpoint/${id}`,
};

// ── Upgrades ─────────────────────────────────────────────────────────────────────────────────────

type AnyDB = IDBPDatabase<unknown>;
type UpgradeTx = IDBPTransaction<unknown, string[], 'versionchange'>;

/** Version 1's records, for the migration (and the upgrade test that writes them). */
export interface V1Records {
  models: { key: string; source: string; file: string; sha256: string | null; size: number; bytes: Uint8Array; storedAt: number };
  datasets: { id: string; name: string; type: string; size: number; bytes: Uint8Array; createdAt: number };
  runs: { id: string; name: string; createdAt: number; updatedAt: number; config: unknown; history: unknown[]; samples: RunSample[] };
  checkpoints: { id: string; runId: string; step: number; meta: SnapshotMeta; tensors: Uint8Array; createdAt: number };
}

/** Visit every record of a store in the upgrade transaction (only idb requests are awaited). */
async function eachRecord(tx: UpgradeTx, store: string, visit: (value: any, cursor: { update(v: unknown): Promise<unknown> }) => Promise<void>): Promise<void> {
  let cursor = await tx.objectStore(store).openCursor();
  while (cursor) {
    await visit(cursor.value, cursor);
    cursor = await cursor.continue();
  }
}

const MIGRATIONS: ((db: AnyDB, tx: UpgradeTx) => Promise<void>)[] = [
  // 0 → 1: the first layout, bytes inline.
  async (db) => {
    db.createObjectStore('models', { keyPath: 'key' });
    db.createObjectStore('datasets', { keyPath: 'id' });
    db.createObjectStore('runs', { keyPath: 'id' });
    db.createObjectStore('checkpoints', { keyPath: 'id' }).createIndex('by-run', 'runId');
  },

  // 1 → 2: bytes move to `blobs`; runs get a status (paused when they have a checkpoint to resume);
  // checkpoints get sizes and format versions; models get a hash index; leases get a store.
  async (db, tx) => {
    const blobs = db.createObjectStore('blobs');
    db.createObjectStore('locks', { keyPath: 'name' });
    tx.objectStore('models').createIndex('by-sha256', 'sha256');
    tx.objectStore('runs').createIndex('by-updated', 'updatedAt');
    tx.objectStore('checkpoints').createIndex('by-run-step', ['runId', 'step']);

    const withCheckpoint = new Set<string>();
    await eachRecord(tx, 'checkpoints', async (v: V1Records['checkpoints'], c) => {
      withCheckpoint.add(v.runId);
      const { tensors, ...rest } = v;
      const next: CheckpointRecord = {
        ...rest,
        formatVersion: CHECKPOINT_FORMAT_VERSION,
        stateVersion: v.meta.version,
        byteSize: tensors.byteLength,
        reason: 'auto',
      };
      await Promise.all([blobs.put(tensors, blobKey.checkpoint(v.id)), c.update(next)]);
    });
    await eachRecord(tx, 'models', async (v: V1Records['models'], c) => {
      const { bytes, ...rest } = v;
      const next: ModelRecord = { ...rest, size: bytes.byteLength, etag: null, complete: true, total: bytes.byteLength, lastUsedAt: v.storedAt };
      await Promise.all([blobs.put(bytes, blobKey.model(v.key)), c.update(next)]);
    });
    await eachRecord(tx, 'datasets', async (v: V1Records['datasets'], c) => {
      const { bytes, ...rest } = v;
      const next: DatasetRecord = { ...rest, size: bytes.byteLength, lastUsedAt: v.createdAt };
      await Promise.all([blobs.put(bytes, blobKey.dataset(v.id)), c.update(next)]);
    });
    await eachRecord(tx, 'runs', async (v: V1Records['runs'], c) => {
      const next: RunRecord = {
        ...v,
        status: withCheckpoint.has(v.id) ? 'paused' : 'created',
        baseModel: null,
        datasetIds: [],
        message: null,
      };
      await c.update(next);
    });
  },

  // 2 → 3: downloaded model files are stored in chunks as they arrive. Nothing to convert: a model
  // record without `chunks` keeps its bytes in `blobs`.
  async (db) => {
    db.createObjectStore('modelChunks');
  },
];

/** The newest schema version this code knows. */
export const DB_VERSION = MIGRATIONS.length;

/**
 * Run the upgrade steps from `oldVersion` to `newVersion` in the versionchange transaction. A failing
 * step aborts the transaction, so the database stays at its old version and the open rejects; the
 * returned promise rejects with the step's error (the open itself only says AbortError).
 */
export function upgradeSchema(db: AnyDB, oldVersion: number, newVersion: number, tx: UpgradeTx): Promise<void> {
  tx.done.catch(() => {}); // the open request reports an aborted upgrade
  const run = async () => {
    for (let v = oldVersion; v < newVersion; v++) await MIGRATIONS[v](db, tx);
  };
  return run().catch((e: unknown) => {
    try {
      tx.abort();
    } catch {
      // already finished
    }
    throw e;
  });
}
