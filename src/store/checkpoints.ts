// Checkpoints: complete or absent, never partial.
//
// The caller first finishes every GPU read-back (Trainer.snapshot() resolves with plain bytes); only
// then does saveCheckpoint open ONE readwrite transaction over runs + checkpoints + blobs that
//   1. reads the run (it must still exist) and the run's existing checkpoints (idb requests only),
//   2. puts the new checkpoint record, then its tensor bytes, then the run's new updatedAt/status,
//   3. deletes the run's older checkpoints beyond `keep` (default: all of them), records and bytes.
// Why the old checkpoint is deleted in the SAME transaction rather than in a second one after commit:
// an IndexedDB transaction commits all of its requests or none. If anything fails (a put refused for
// quota, the tab closed, the commit itself failing), nothing of it applies: the new record and bytes
// are rolled back and the old checkpoint's deletion never happens, so the old one stays loadable. If it
// commits, the new checkpoint and the deletion become visible together: no reader ever sees zero
// checkpoints, nor a record without its bytes, and no crash can leave two (a second transaction
// would leave an extra copy, and its space, if the tab died between the two). So "the previous one is
// deleted only after the new one is committed" holds in the strongest form: the deletion is part of
// that very commit. The transaction asks for `durability: 'strict'`: `complete` fires only once the
// data is flushed to disk, so a checkpoint reported saved survives a power cut.
// Nothing but idb requests is awaited while the transaction is open (an await on anything else would
// let it auto-commit half-way): ids, sizes and the quota estimate are all computed before it opens.
import type { IDBPTransaction } from 'idb';
import { exact, newId, type Store } from './db';
import { CheckpointNotFoundError, RunNotFoundError, StoreCorruptError } from './errors';
import { checkRoom, failedWrite, latestOf } from './quota';
import type { RunPatch } from './runs';
import { CHECKPOINT_FORMAT_VERSION, blobKey, type CheckpointReason, type CheckpointRecord, type SnapshotMeta, type WebtuneDB } from './schema';

/** What Trainer.snapshot() returns: the trainer's meta and the safetensors bytes of its tensors. */
export interface TrainSnapshot<M extends SnapshotMeta = SnapshotMeta> {
  meta: M;
  tensors: Uint8Array;
}

/** A checkpoint without the trainer's meta (cheap to list). */
export type CheckpointInfo = Omit<CheckpointRecord, 'meta'>;

export interface LoadedCheckpoint<M extends SnapshotMeta = SnapshotMeta> {
  info: CheckpointInfo;
  meta: M;
  tensors: Uint8Array;
}

export interface SaveCheckpointOptions {
  reason?: CheckpointReason;
  /** How many checkpoints of the run to keep, the new one included (default 1). */
  keep?: number;
  /** Also change the run in the same transaction (e.g. status 'paused' with the pause checkpoint, the metrics history). */
  run?: RunPatch;
  /** Skip the navigator.storage.estimate() pre-check (the transaction still guards). */
  skipEstimate?: boolean;
}

const infoOf = ({ meta: _meta, ...info }: CheckpointRecord): CheckpointInfo => info;

/** Rough size of the record besides the tensors (the meta holds the history: can be hundreds of KB). */
function metaBytes(meta: unknown): number {
  try {
    return JSON.stringify(meta)?.length ?? 0;
  } catch {
    return 0;
  }
}

/**
 * Store a checkpoint of `runId` atomically and drop the older ones (see the top of the file). Throws
 * StorageQuotaError (nothing written; the previous checkpoint intact), RunNotFoundError.
 */
export async function saveCheckpoint<M extends SnapshotMeta>(
  store: Store,
  runId: string,
  snapshot: TrainSnapshot<M>,
  options: SaveCheckpointOptions = {},
): Promise<CheckpointInfo> {
  const keep = Math.max(1, Math.floor(options.keep ?? 1));
  const tensors = exact(snapshot.tensors);
  const now = Date.now();
  const record: CheckpointRecord = {
    id: newId(),
    runId,
    step: snapshot.meta.step,
    formatVersion: CHECKPOINT_FORMAT_VERSION,
    stateVersion: snapshot.meta.version,
    byteSize: tensors.byteLength,
    createdAt: now,
    reason: options.reason ?? 'auto',
    meta: snapshot.meta,
  };
  const neededBytes = tensors.byteLength + metaBytes(snapshot.meta);

  // Everything not an idb request happens before the transaction opens.
  const [run, previous] = await Promise.all([store.db.get('runs', runId), latestCheckpointInfo(store, runId)]);
  if (!run) throw new RunNotFoundError(runId);
  const quotaCtx = {
    what: `the checkpoint of run "${run.name}" at step ${record.step}`,
    neededBytes,
    kept: previous ? `the previous checkpoint (step ${previous.step}) is intact` : 'no checkpoint of this run was saved before',
    exclude: new Set(previous ? [previous.id] : []),
  };
  if (!options.skipEstimate) await checkRoom(store, quotaCtx);

  const tx = store.db.transaction(['runs', 'checkpoints', 'blobs'], 'readwrite', { durability: 'strict' });
  const runs = tx.objectStore('runs');
  const checkpoints = tx.objectStore('checkpoints');
  const blobs = tx.objectStore('blobs');
  try {
    const [current, older] = await Promise.all([runs.get(runId), checkpoints.index('by-run').getAll(runId)]);
    if (!current) {
      // Deleted from another tab between the check above and now.
      tx.abort();
      throw new RunNotFoundError(runId);
    }
    // The record first, then its bytes: a failure at any point aborts the lot.
    const writes: Promise<unknown>[] = [
      checkpoints.put(record),
      blobs.put(tensors, blobKey.checkpoint(record.id)),
      runs.put({ ...current, ...options.run, id: runId, updatedAt: now }),
    ];
    const newestFirst = [...older].sort((a, b) => b.createdAt - a.createdAt || b.step - a.step);
    for (const old of newestFirst.slice(keep - 1)) {
      writes.push(checkpoints.delete(old.id), blobs.delete(blobKey.checkpoint(old.id)));
    }
    await Promise.all([...writes, tx.done]);
  } catch (e) {
    await failedWrite(store, tx, e, quotaCtx);
  }
  return infoOf(record);
}

/** Checkpoints of one run (or of all runs), oldest first. */
export async function listCheckpoints(store: Store, runId?: string): Promise<CheckpointInfo[]> {
  const all = runId === undefined ? await store.db.getAll('checkpoints') : await store.db.getAllFromIndex('checkpoints', 'by-run', runId);
  return all.map(infoOf).sort((a, b) => a.createdAt - b.createdAt || a.step - b.step);
}

async function latestCheckpointInfo(store: Store, runId: string): Promise<CheckpointInfo | null> {
  return latestOf(await listCheckpoints(store, runId));
}

/** Read a record and its bytes in one transaction, so a concurrent delete cannot split them. */
async function loadWhere<M extends SnapshotMeta>(store: Store, pick: (tx: ReadTx) => Promise<CheckpointRecord | null>): Promise<LoadedCheckpoint<M> | null> {
  const tx = store.db.transaction(['checkpoints', 'blobs'], 'readonly');
  const record = await pick(tx);
  const tensors = record ? await tx.objectStore('blobs').get(blobKey.checkpoint(record.id)) : undefined;
  await tx.done;
  if (!record) return null;
  if (!tensors || tensors.byteLength !== record.byteSize) {
    throw new StoreCorruptError(
      `checkpoint ${record.id} of run ${record.runId} (step ${record.step}) has ${tensors ? `${tensors.byteLength} bytes, expected ${record.byteSize}` : 'no bytes'}: delete it and resume from another checkpoint`,
    );
  }
  return { info: infoOf(record), meta: record.meta as M, tensors };
}
type ReadTx = IDBPTransaction<WebtuneDB, ['checkpoints', 'blobs'], 'readonly'>;

/** The checkpoint a resume starts from (the most recently saved), or null when the run has none. */
export function loadLatestCheckpoint<M extends SnapshotMeta = SnapshotMeta>(store: Store, runId: string): Promise<LoadedCheckpoint<M> | null> {
  return loadWhere<M>(store, async (tx) => latestOf(await tx.objectStore('checkpoints').index('by-run').getAll(runId)));
}

export async function loadCheckpoint<M extends SnapshotMeta = SnapshotMeta>(store: Store, id: string): Promise<LoadedCheckpoint<M>> {
  const got = await loadWhere<M>(store, async (tx) => (await tx.objectStore('checkpoints').get(id)) ?? null);
  if (!got) throw new CheckpointNotFoundError(id);
  return got;
}

/** Delete one checkpoint, record and bytes together. Deleting one that is gone is not an error. */
export async function deleteCheckpoint(store: Store, id: string): Promise<void> {
  const tx = store.db.transaction(['checkpoints', 'blobs'], 'readwrite');
  await Promise.all([tx.objectStore('checkpoints').delete(id), tx.objectStore('blobs').delete(blobKey.checkpoint(id)), tx.done]);
}
