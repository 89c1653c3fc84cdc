// Runs: create, list, rename, update, delete (with their checkpoints, in one transaction).
import { newId, type Store } from './db';
import { RunNotFoundError } from './errors';
import { blobKey, type RunRecord } from './schema';

export interface NewRun {
  name: string;
  config: unknown;
  baseModel?: string | null;
  datasetIds?: string[];
  /** Default: a fresh id. */
  id?: string;
}

/** What updateRun may change (the name has renameRun; ids and dates are the store's). */
export type RunPatch = Partial<Pick<RunRecord, 'status' | 'config' | 'baseModel' | 'datasetIds' | 'history' | 'samples' | 'message'>>;

const MAX_NAME = 200;

function cleanName(name: string): string {
  const n = name.trim().replace(/\s+/g, ' ');
  if (!n) throw new RangeError('a run name cannot be empty');
  return n.length > MAX_NAME ? n.slice(0, MAX_NAME) : n;
}

export async function createRun(store: Store, init: NewRun): Promise<RunRecord> {
  const now = Date.now();
  const run: RunRecord = {
    id: init.id ?? newId(),
    name: cleanName(init.name),
    createdAt: now,
    updatedAt: now,
    status: 'created',
    config: init.config,
    baseModel: init.baseModel ?? null,
    datasetIds: init.datasetIds ?? [],
    history: [],
    samples: [],
    message: null,
  };
  await store.db.add('runs', run);
  return run;
}

export async function getRun(store: Store, id: string): Promise<RunRecord | null> {
  return (await store.db.get('runs', id)) ?? null;
}

/** All runs, most recently updated first. */
export async function listRuns(store: Store): Promise<RunRecord[]> {
  return (await store.db.getAllFromIndex('runs', 'by-updated')).reverse();
}

/** Read-modify-write of one run in a single transaction (two tabs cannot lose each other's change). */
async function modifyRun(store: Store, id: string, change: (r: RunRecord) => RunRecord): Promise<RunRecord> {
  const tx = store.db.transaction('runs', 'readwrite');
  const run = await tx.store.get(id);
  if (!run) {
    tx.abort();
    await tx.done.catch(() => {});
    throw new RunNotFoundError(id);
  }
  const next = { ...change(run), id, updatedAt: Date.now() };
  await Promise.all([tx.store.put(next), tx.done]);
  return next;
}

export async function renameRun(store: Store, id: string, name: string): Promise<RunRecord> {
  const n = cleanName(name);
  return modifyRun(store, id, (r) => ({ ...r, name: n }));
}

export function updateRun(store: Store, id: string, patch: RunPatch): Promise<RunRecord> {
  return modifyRun(store, id, (r) => ({ ...r, ...patch }));
}

/**
 * Delete a run with all its checkpoints and their bytes, in one transaction: afterwards nothing of the
 * run is left, or (if it fails) all of it is. Hold the run's lock (lock.ts) while deleting, so a tab
 * training it is not pulled from under itself; its next save then fails with RunNotFoundError.
 */
export async function deleteRun(store: Store, id: string): Promise<{ checkpoints: number; bytes: number }> {
  const tx = store.db.transaction(['runs', 'checkpoints', 'blobs'], 'readwrite');
  const [run, checkpoints] = await Promise.all([tx.objectStore('runs').get(id), tx.objectStore('checkpoints').index('by-run').getAll(id)]);
  if (!run) {
    tx.abort();
    await tx.done.catch(() => {});
    throw new RunNotFoundError(id);
  }
  const ops: Promise<unknown>[] = [tx.objectStore('runs').delete(id)];
  for (const c of checkpoints) {
    ops.push(tx.objectStore('checkpoints').delete(c.id), tx.objectStore('blobs').delete(blobKey.checkpoint(c.id)));
  }
  await Promise.all([...ops, tx.done]);
  return { checkpoints: checkpoints.length, bytes: checkpoints.reduce((s, c) => s + c.byteSize, 0) };
}
