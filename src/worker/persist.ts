// A training run as the browser keeps it: the run record (config, model source, dataset ids, metrics
// history), its lock (one tab trains a run), and its checkpoints, written by the autosave policy.
//
// A save is two phases, never interleaved: Trainer.snapshot() finishes every GPU read-back, then
// saveCheckpoint writes record + bytes + the run's history in ONE IndexedDB transaction that also drops
// the previous checkpoint (src/store/checkpoints.ts). A save that fails for want of space leaves the
// previous checkpoint as it was; the run then pauses and says what can be freed.
import {
  Autosave,
  acquireRunLock,
  createRun,
  openStore,
  putDataset,
  runLockHolder,
  saveCheckpoint,
  sha256Hex,
  updateRun,
  type AutosavePolicy,
  type CheckpointReason,
  type LockHolder,
  type RunLock,
  type RunStatus,
  type Store,
} from '../store';
import type { Trainer, TrainStateMeta } from '../tune/trainer';
import type { AutosaveSettings, StoredRunConfig, TrainMessage } from './api';

/** Checkpoints kept per run: the newest only (the previous one goes in the same transaction that commits it). */
const KEEP = 1;

export const DEFAULT_AUTOSAVE_SETTINGS: AutosaveSettings = { everySteps: 50, everyMinutes: 5 };

/** The tab's label in lock messages ("the tab opened at 10:02:03"): when this worker started. */
export const TAB_LABEL = `the tab opened at ${new Date().toLocaleTimeString()}`;

/** The run is being trained by another tab. */
export class LockedRunError extends Error {
  override name = 'LockedRunError';
  constructor(runName: string, holder: LockHolder | string | null) {
    const label = typeof holder === 'string' ? holder : holder?.label;
    super(
      `run "${runName}" is being trained in another tab${label ? ` (${label})` : ''}: continue it there, or close that tab and resume it here. ` +
        'Two tabs training one run would overwrite each other’s checkpoints.',
    );
  }
}

/** A stored run cannot be continued here as it is (the message says what to load or do first). */
export class ResumeError extends Error {
  override name = 'ResumeError';
}

/** The one store of this worker, opened on first use; null (with the reason) where IndexedDB cannot be used. */
export class Stores {
  private opening: Promise<Store> | null = null;
  /** Test hook: the next checkpoint write fails as if the disk were full. */
  failNextSave = false;

  get(): Promise<Store> {
    this.opening ??= openStore({ onVersionChange: () => (this.opening = null) }).catch((e) => {
      this.opening = null;
      throw e;
    });
    return this.opening;
  }

  /** The store, or null with the reason (training goes on without persistence). */
  async tryGet(): Promise<{ store: Store | null; reason: string | null }> {
    try {
      return { store: await this.get(), reason: null };
    } catch (e) {
      return { store: null, reason: (e as Error).message };
    }
  }
}

export function lockOptions(store: Store) {
  return { store, label: TAB_LABEL };
}

export async function lockHolderLabel(store: Store, runId: string): Promise<string | null> {
  return (await runLockHolder(runId, lockOptions(store)))?.label ?? null;
}

/** Read a stored run's config written by this version (null when it is something else). */
export function storedConfig(config: unknown): StoredRunConfig | null {
  const c = config as Partial<StoredRunConfig> | null;
  if (!c || typeof c !== 'object' || !c.settings || !c.data || !c.model || typeof c.modelName !== 'string' || !c.dataset) return null;
  return { autosave: DEFAULT_AUTOSAVE_SETTINGS, modelParameters: 0, ...c } as StoredRunConfig;
}

export function autosavePolicy(s: AutosaveSettings): Partial<AutosavePolicy> {
  const steps = Number.isFinite(s.everySteps) ? Math.max(0, Math.floor(s.everySteps)) : DEFAULT_AUTOSAVE_SETTINGS.everySteps;
  const minutes = Number.isFinite(s.everyMinutes) ? Math.max(0, s.everyMinutes) : DEFAULT_AUTOSAVE_SETTINGS.everyMinutes;
  return { everySteps: steps, everyMs: minutes * 60_000 };
}

export async function datasetId(text: string): Promise<string> {
  return sha256Hex(new TextEncoder().encode(text));
}

export interface NewRunRecord {
  name?: string;
  config: StoredRunConfig;
  train: { name: string; text: string };
  reference: { name: string; text: string } | null;
}

/** The run being trained in this tab, as stored: record, lock, autosave and checkpoints. */
export class RunSaver {
  /** A checkpoint of the current step is owed (the last save failed). */
  owed = false;
  /** The lock was lost to another tab (lease fallback only): no more saves. */
  lost = false;
  private readonly autosave: Autosave;
  private samples: { step: number; prompt: string; text: string }[] = [];

  private constructor(
    readonly store: Store,
    readonly runId: string,
    readonly name: string,
    private readonly lock: RunLock,
    policy: AutosaveSettings,
    startStep: number,
    private readonly stores: Stores,
    private readonly post: (m: TrainMessage) => void,
  ) {
    this.autosave = new Autosave(autosavePolicy(policy), startStep);
  }

  /**
   * Create a run record (its datasets stored first, so a resume after a reload has the data) and take
   * its lock. Throws StorageQuotaError when even that does not fit.
   */
  static async create(stores: Stores, store: Store, init: NewRunRecord, post: (m: TrainMessage) => void): Promise<RunSaver> {
    const enc = new TextEncoder();
    const ids = [(await putDataset(store, { name: init.train.name, type: 'text/plain', bytes: enc.encode(init.train.text) })).id];
    if (init.reference) ids.push((await putDataset(store, { name: init.reference.name, type: 'text/plain', bytes: enc.encode(init.reference.text) })).id);
    // "run N": one more than the most runs there have been (names of deleted runs are not reused at once).
    const names = (await store.db.getAll('runs')).map((r) => Number(/^run (\d+)$/.exec(r.name)?.[1] ?? 0));
    const next = Math.max(names.length, ...names) + 1;
    const run = await createRun(store, {
      name: init.name ?? `run ${next}`,
      config: init.config,
      baseModel: init.config.modelName,
      datasetIds: ids,
    });
    const got = await acquireRunLock(run.id, lockOptions(store));
    if (!got.ok) throw new LockedRunError(run.name, got.heldBy);
    await updateRun(store, run.id, { status: 'training' });
    return new RunSaver(store, run.id, run.name, got.lock, init.config.autosave, 0, stores, post);
  }

  /** Take an existing run's lock to continue it from `step`. */
  static async reopen(
    stores: Stores,
    store: Store,
    run: { id: string; name: string; autosave: AutosaveSettings; samples: { step: number; prompt: string; text: string }[] },
    step: number,
    post: (m: TrainMessage) => void,
  ): Promise<RunSaver> {
    const got = await acquireRunLock(run.id, lockOptions(store));
    if (!got.ok) throw new LockedRunError(run.name, got.heldBy);
    try {
      await updateRun(store, run.id, { status: 'training', message: null });
    } catch (e) {
      await got.lock.release();
      throw e;
    }
    const saver = new RunSaver(store, run.id, run.name, got.lock, run.autosave, step, stores, post);
    saver.samples = run.samples.filter((s) => s.step <= step);
    return saver;
  }

  /** Aborted when another tab took the run over (lease fallback): the caller stops training. */
  get signal(): AbortSignal {
    return this.lock.signal;
  }

  addSample(s: { step: number; prompt: string; text: string }): void {
    this.samples.push(s);
  }

  /** What autosave wants after `step` (null: nothing), without saving. */
  due(kind: 'step' | 'pause' | 'stop' | 'done', step: number): CheckpointReason | null {
    if (this.lost) return null;
    const why = this.autosave.check({ kind, step, now: Date.now() });
    if (!why) return null;
    return why === 'steps' || why === 'time' ? 'auto' : why;
  }

  /** The samples recorded up to `step` (a resume continues from there). */
  samplesUpTo(step: number): { step: number; prompt: string; text: string }[] {
    this.samples = this.samples.filter((s) => s.step <= step);
    return [...this.samples];
  }

  /** The run continues from `step` (restored from its checkpoint after a device loss). */
  restart(step: number): void {
    this.autosave.saved(step, Date.now(), 0);
    this.owed = false;
  }

  /**
   * Snapshot (every read-back first), then one transaction. 'saved': committed. 'full': the browser's
   * storage is full (the caller pauses; a notice says what can be freed). 'failed': not saved for
   * another reason (a notice says why). Either way the previous checkpoint is as it was.
   */
  async save(trainer: Trainer, reason: CheckpointReason, status: RunStatus): Promise<'saved' | 'full' | 'failed'> {
    if (this.lost) return 'failed';
    const t0 = performance.now();
    const snap = await trainer.snapshot(); // device loss surfaces here, to the caller's recovery
    const t1 = performance.now();
    const store = this.stores.failNextSave ? failingWrites(this.store) : this.store;
    this.stores.failNextSave = false;
    try {
      const info = await saveCheckpoint<TrainStateMeta>(store, this.runId, snap, {
        reason,
        keep: KEEP,
        run: { status, history: snap.meta.history, samples: this.samples, message: null },
      });
      const t2 = performance.now();
      this.autosave.saved(snap.meta.step, Date.now(), t2 - t0);
      this.owed = false;
      this.post({ kind: 'checkpoint', step: info.step, bytes: info.byteSize, readMs: t1 - t0, writeMs: t2 - t1, reason });
      return 'saved';
    } catch (e) {
      const err = e as Error;
      this.owed = true;
      // Nothing of this save was written; the previous checkpoint is as it was.
      this.post({ kind: 'notice', level: err.name === 'StorageQuotaError' ? 'error' : 'warning', name: err.name, message: err.message });
      if (err.name === 'RunNotFoundError') this.lost = true; // deleted from another tab: keep training, stop saving
      return err.name === 'StorageQuotaError' ? 'full' : 'failed';
    }
  }

  /** Record the status (and a message) without a checkpoint. */
  async setStatus(status: RunStatus, message: string | null = null): Promise<void> {
    if (this.lost) return;
    await updateRun(this.store, this.runId, { status, message }).catch(() => {});
  }

  async release(): Promise<void> {
    await this.lock.release().catch(() => {});
  }
}

// ---------------------------------------------------------------------- the quota test hook

/**
 * The store seen through a proxy whose `blobs` puts fail as a full disk makes them fail: the request
 * errors with a QuotaExceededError DOMException and its transaction aborts. Used once, by the
 * `__testFailNextSave` hook, so the real save path (and its rollback) is what the test exercises.
 */
function failingWrites(store: Store): Store {
  const bindGet = <T extends object>(target: T, prop: string | symbol): unknown => {
    const v = Reflect.get(target, prop, target) as unknown;
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  };
  const wrapTx = <T extends object>(tx: T): T =>
    new Proxy(tx, {
      get(t, prop) {
        if (prop !== 'objectStore') return bindGet(t, prop);
        return (name: string) => {
          const os = (t as unknown as { objectStore(n: string): object }).objectStore(name);
          if (name !== 'blobs') return os;
          return new Proxy(os, {
            get(o, p) {
              if (p !== 'put') return bindGet(o, p);
              // As a real refusal: the request fails once the store gets to it, then the transaction aborts.
              return (_value: unknown, key: IDBValidKey) =>
                (o as unknown as { get(k: IDBValidKey): Promise<unknown> }).get(key).then(() => {
                  try {
                    (t as unknown as { abort(): void }).abort();
                  } catch {
                    // already finished
                  }
                  throw new DOMException('The quota has been exceeded (simulated by the webtune test hook).', 'QuotaExceededError');
                });
            },
          });
        };
      },
    });
  const db = new Proxy(store.db, {
    get(d, prop) {
      if (prop !== 'transaction') return bindGet(d, prop);
      return (...args: unknown[]) => wrapTx((d.transaction as (...a: unknown[]) => object).apply(d, args));
    },
  });
  return { ...store, db, close: store.close };
}
