// How much the site stores, how much it may, what could be deleted, and QuotaExceededError → a
// StorageQuotaError that says all of that.
//
// navigator.storage.estimate() works in windows and workers; persist() only in a window (call
// requestPersistent from the page, not the worker). Persistent storage protects the data from
// eviction when the disk runs low; some browsers (Firefox) also allow a persistent site more space.
import { defaultStorageManager, formatBytes, type StorageManagerLike, type Store } from './db';
import { StorageQuotaError } from './errors';
import type { CheckpointRecord } from './schema';

export interface StorageUsage {
  usage: number;
  quota: number;
  /** null: unknown (no persisted() here). */
  persisted: boolean | null;
}

/** Usage and quota, or null where the browser cannot tell. */
export async function storageEstimate(storage: StorageManagerLike | null = defaultStorageManager()): Promise<StorageUsage | null> {
  if (!storage) return null;
  try {
    const e = await storage.estimate();
    const persisted = typeof storage.persisted === 'function' ? await storage.persisted().catch(() => null) : null;
    return { usage: e.usage ?? 0, quota: e.quota ?? Infinity, persisted };
  } catch {
    return null;
  }
}

/**
 * Ask the browser to keep this site's data when disk space runs low. Resolves to whether storage is
 * persistent now. Window only (a worker has no persist()): returns false there.
 */
export async function requestPersistent(storage: StorageManagerLike | null = defaultStorageManager()): Promise<boolean> {
  if (!storage || typeof storage.persist !== 'function') return false;
  try {
    if (typeof storage.persisted === 'function' && (await storage.persisted())) return true;
    return await storage.persist();
  } catch {
    return false;
  }
}

export type FreeableKind = 'old-checkpoint' | 'latest-checkpoint' | 'model' | 'partial-download' | 'dataset';

export interface FreeableItem {
  kind: FreeableKind;
  /** Checkpoint id, model cache key, or dataset id: pass to deleteCheckpoint / deleteModelFile / deleteDataset. */
  id: string;
  label: string;
  bytes: number;
  /** What deleting it costs. */
  note: string;
}

/** Everything that could be deleted to make room, largest first. */
export async function listFreeable(store: Store): Promise<FreeableItem[]> {
  const tx = store.db.transaction(['runs', 'checkpoints', 'models', 'datasets'], 'readonly');
  const [runs, checkpoints, models, datasets] = await Promise.all([
    tx.objectStore('runs').getAll(),
    tx.objectStore('checkpoints').getAll(),
    tx.objectStore('models').getAll(),
    tx.objectStore('datasets').getAll(),
  ]);
  await tx.done;
  const runName = new Map(runs.map((r) => [r.id, r.name]));
  const items: FreeableItem[] = [];

  const byRun = new Map<string, CheckpointRecord[]>();
  for (const c of checkpoints) byRun.set(c.runId, [...(byRun.get(c.runId) ?? []), c]);
  for (const [runId, list] of byRun) {
    const latest = latestOf(list);
    const name = runName.get(runId) ?? `(deleted run ${runId})`;
    for (const c of list) {
      const isLatest = c === latest;
      items.push({
        kind: isLatest ? 'latest-checkpoint' : 'old-checkpoint',
        id: c.id,
        label: `checkpoint of run "${name}" at step ${c.step}`,
        bytes: c.byteSize,
        note: isLatest ? `run "${name}" could no longer be resumed (its adapter is lost unless exported)` : 'a newer checkpoint of the same run is kept',
      });
    }
  }
  for (const m of models) {
    items.push({
      kind: m.complete ? 'model' : 'partial-download',
      id: m.key,
      label: m.complete ? `cached model file ${m.file} (${m.source})` : `unfinished download of ${m.file} (${m.source})`,
      bytes: m.size,
      note: m.complete ? 'downloaded again the next time the model is loaded' : 'the download starts over next time',
    });
  }
  const usedBy = new Map<string, string[]>();
  for (const r of runs) for (const d of r.datasetIds) usedBy.set(d, [...(usedBy.get(d) ?? []), r.name]);
  for (const d of datasets) {
    const users = usedBy.get(d.id) ?? [];
    items.push({
      kind: 'dataset',
      id: d.id,
      label: `dataset ${d.name}`,
      bytes: d.size,
      note: users.length ? `runs ${users.map((u) => `"${u}"`).join(', ')} need it again to resume` : 'no run uses it',
    });
  }
  return items.sort((a, b) => b.bytes - a.bytes);
}

/** The checkpoint a resume starts from: the most recently saved (ties: the higher step). */
export function latestOf<T extends Pick<CheckpointRecord, 'createdAt' | 'step'>>(list: readonly T[]): T | null {
  let best: T | null = null;
  for (const c of list) {
    if (!best || c.createdAt > best.createdAt || (c.createdAt === best.createdAt && c.step > best.step)) best = c;
  }
  return best;
}

/** A QuotaExceededError from IndexedDB, directly or as the reason a transaction aborted. */
export function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  return name === 'QuotaExceededError' || name === 'StorageQuotaError';
}

export interface QuotaContext {
  /** "the checkpoint of run "x" at step 120" */
  what: string;
  neededBytes: number;
  /** What is still safe, e.g. "the previous checkpoint (step 100) is intact". */
  kept?: string;
  /** Items not to suggest (the checkpoint that is being kept, say). */
  exclude?: ReadonlySet<string>;
  cause?: unknown;
}

/** Build the StorageQuotaError for a write that did not fit: how much, how full, what to delete. */
export async function quotaError(store: Store, ctx: QuotaContext): Promise<StorageQuotaError> {
  const est = await storageEstimate(store.storage);
  let freeable: FreeableItem[] = [];
  try {
    freeable = (await listFreeable(store)).filter((f) => !ctx.exclude?.has(f.id));
  } catch {
    // the list is advice; the error must still be reported
  }
  const groups: [string, FreeableKind[]][] = [
    ['cached models', ['model', 'partial-download']],
    ['older checkpoints', ['old-checkpoint']],
    ["other runs' checkpoints", ['latest-checkpoint']],
    ['datasets', ['dataset']],
  ];
  const parts: string[] = [];
  for (const [label, kinds] of groups) {
    const sel = freeable.filter((f) => kinds.includes(f.kind));
    if (sel.length) parts.push(`${label} (${sel.length}, ${formatBytes(sel.reduce((s, f) => s + f.bytes, 0))})`);
  }
  const usage = est && Number.isFinite(est.quota) ? `, and this site already uses ${formatBytes(est.usage)} of the ${formatBytes(est.quota)} the browser allows it (${formatBytes(Math.max(0, est.quota - est.usage))} free)` : '';
  const free = parts.length
    ? ` To make room, delete some of: ${parts.join(', ')}, then continue.`
    : ' Nothing of webtune\'s can be deleted to make room: free disk space, or clear other data of this site in the browser settings, then continue.';
  const msg = `Not enough storage for ${ctx.what}: it needs ${formatBytes(ctx.neededBytes)}${usage}.${ctx.kept ? ` Nothing was lost: ${ctx.kept}.` : ''}${free}`;
  return new StorageQuotaError(msg, ctx.neededBytes, est?.usage ?? null, est && Number.isFinite(est.quota) ? est.quota : null, freeable, { cause: ctx.cause });
}

/**
 * What a failed readwrite transaction throws. It is aborted first (a put that threw synchronously, a
 * DataCloneError say, does not abort it by itself, so nothing may commit), and a full disk becomes a
 * StorageQuotaError that says what did not fit and what can be freed; any other error is rethrown.
 */
export async function failedWrite(store: Store, tx: { abort(): void; done: Promise<void>; error: unknown }, e: unknown, ctx: Omit<QuotaContext, 'cause'>): Promise<never> {
  try {
    tx.abort();
  } catch {
    // already aborted or finished
  }
  await tx.done.catch(() => {});
  if (isQuotaError(e) || isQuotaError(tx.error)) throw await quotaError(store, { ...ctx, cause: e });
  throw e;
}

/**
 * Refuse early, before writing anything, when the estimate says the bytes cannot fit. Estimates are
 * approximate, so this only refuses what is clearly too big; the real guard is the transaction.
 */
export async function checkRoom(store: Store, ctx: QuotaContext): Promise<void> {
  const est = await storageEstimate(store.storage);
  if (est && Number.isFinite(est.quota) && est.quota - est.usage < ctx.neededBytes) throw await quotaError(store, ctx);
}

