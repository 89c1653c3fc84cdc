// One trainer per run across tabs. Two tabs training the same run would interleave checkpoints and
// each "resume" would silently drop the other's steps, so a tab must hold the run's lock to train it.
//
// Where the browser has the Web Locks API (navigator.locks, in windows and workers), the lock is a
// Web Lock named `webtune-run:<runId>`, asked for with ifAvailable (refused at once, never queued);
// the browser frees it when the tab or worker dies, so a crashed tab never blocks a resume. A lease
// record in the `locks` store says who holds it (Web Locks do not tell), for the message.
// Without Web Locks the lease record IS the lock: taken in a readwrite transaction (IndexedDB runs
// overlapping readwrite transactions one after another, across tabs, so two tabs cannot both see it
// free), valid until `expiresAt`, renewed by a heartbeat. A dead tab stops renewing and another may
// take over after expiry; if the old tab was only frozen, its next renewal finds the lease gone and
// aborts `lock.signal`, and the trainer must stop (RunLockLostError) before saving again.
import { newId, type Store } from './db';
import { RunLockLostError } from './errors';
import type { LeaseRecord, LockHolder } from './schema';

/** The part of navigator.locks used here. */
export interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean }, callback: (lock: unknown) => unknown): Promise<unknown>;
  query?(): Promise<{ held?: { name?: string }[] }>;
}

export interface RunLockOptions {
  store: Store;
  /** Web Locks (default: navigator.locks where present); null uses the lease fallback. */
  locks?: LockManagerLike | null;
  /**
   * This tab's id. A lease of the same client id that this JavaScript context does not hold (the
   * same tab after a reload, when the page keeps its id in sessionStorage) is taken over at once.
   */
  clientId?: string;
  /** Shown to the other tab. */
  label?: string;
  /** Lease validity without renewal (default 30 s). */
  leaseMs?: number;
  /** Renewal period (default 5 s; 0: no timer, call renew() yourself). */
  heartbeatMs?: number;
  now?: () => number;
}

export interface RunLock {
  readonly runId: string;
  readonly holder: LockHolder;
  /** Aborted (reason: RunLockLostError) when the lease was taken over: stop training at once. */
  readonly signal: AbortSignal;
  /** Extend the lease now; false when it was lost. (Web Locks: always true until released.) */
  renew(): Promise<boolean>;
  release(): Promise<void>;
}

export type AcquireResult = { ok: true; lock: RunLock } | { ok: false; heldBy: LockHolder | null };

const TAB_ID = newId();
/** Tokens of the locks this JavaScript context holds (a lease of ours not in here is from before a reload). */
const live = new Set<string>();

const lockName = (runId: string) => `webtune-run:${runId}`;
const leaseKey = (runId: string) => `run:${runId}`;

function defaultLocks(): LockManagerLike | null {
  const nav = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator;
  return nav?.locks && typeof nav.locks.request === 'function' ? nav.locks : null;
}

function settings(o: RunLockOptions) {
  return {
    locks: o.locks === undefined ? defaultLocks() : o.locks,
    clientId: o.clientId ?? TAB_ID,
    label: o.label ?? `tab opened at ${new Date().toLocaleTimeString()}`,
    leaseMs: o.leaseMs ?? 30_000,
    heartbeatMs: o.heartbeatMs ?? 5_000,
    now: o.now ?? Date.now,
  };
}

/** Try to take the run's lock without waiting: the lock, or who holds it. */
export async function acquireRunLock(runId: string, options: RunLockOptions): Promise<AcquireResult> {
  const s = settings(options);
  const { db } = options.store;
  const t = s.now();
  const holder: LockHolder = { clientId: s.clientId, label: s.label, token: newId(), acquiredAt: t, heartbeatAt: t, mode: s.locks ? 'web-locks' : 'lease' };
  const key = leaseKey(runId);
  const lost = new AbortController();
  let released = false;

  const dropRecord = async () => {
    const tx = db.transaction('locks', 'readwrite');
    const rec = await tx.store.get(key);
    await Promise.all([rec?.holder.token === holder.token ? tx.store.delete(key) : null, tx.done]);
  };

  if (s.locks) {
    let unlock!: () => void;
    const held = new Promise<void>((r) => (unlock = r));
    const granted = await new Promise<boolean>((resolve, reject) => {
      s.locks!.request(lockName(runId), { ifAvailable: true }, async (lock) => {
        resolve(lock != null);
        if (lock != null) await held;
      }).catch(reject);
    });
    if (!granted) return { ok: false, heldBy: (await db.get('locks', key))?.holder ?? null };
    await db.put('locks', { name: key, holder, expiresAt: null });
    live.add(holder.token);
    return {
      ok: true,
      lock: {
        runId,
        holder,
        signal: lost.signal,
        renew: async () => !released,
        async release() {
          if (released) return;
          released = true;
          live.delete(holder.token);
          try {
            await dropRecord();
          } finally {
            unlock();
          }
        },
      },
    };
  }

  // Lease fallback: read and claim in one transaction.
  const tx = db.transaction('locks', 'readwrite', { durability: 'strict' });
  const current = await tx.store.get(key);
  const busy =
    current &&
    current.expiresAt !== null &&
    current.expiresAt > t &&
    (current.holder.clientId !== s.clientId || live.has(current.holder.token));
  if (busy) {
    await tx.done;
    return { ok: false, heldBy: current.holder };
  }
  const record: LeaseRecord = { name: key, holder, expiresAt: t + s.leaseMs };
  await Promise.all([tx.store.put(record), tx.done]);
  live.add(holder.token);

  let timer: ReturnType<typeof setInterval> | null = null;
  const stop = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
    live.delete(holder.token);
  };
  const renew = async (): Promise<boolean> => {
    if (released || lost.signal.aborted) return false;
    const now = s.now();
    const rtx = db.transaction('locks', 'readwrite');
    const rec = await rtx.store.get(key);
    if (rec?.holder.token !== holder.token) {
      await rtx.done;
      stop();
      lost.abort(new RunLockLostError(runId, rec ? rec.holder.label : null));
      return false;
    }
    holder.heartbeatAt = now;
    await Promise.all([rtx.store.put({ name: key, holder: { ...holder }, expiresAt: now + s.leaseMs }), rtx.done]);
    return true;
  };
  if (s.heartbeatMs > 0) {
    timer = setInterval(() => void renew().catch(() => {}), s.heartbeatMs);
    (timer as { unref?: () => void }).unref?.();
  }
  return {
    ok: true,
    lock: {
      runId,
      holder,
      signal: lost.signal,
      renew,
      async release() {
        if (released) return;
        released = true;
        stop();
        await dropRecord();
      },
    },
  };
}

/** Who holds the run's lock now, or null when it is free (a run marked 'training' but free was interrupted). */
export async function runLockHolder(runId: string, options: RunLockOptions): Promise<LockHolder | null> {
  const s = settings(options);
  const rec = await options.store.db.get('locks', leaseKey(runId));
  if (s.locks) {
    if (typeof s.locks.query !== 'function') return rec?.holder ?? null;
    const state = await s.locks.query();
    const held = (state.held ?? []).some((l) => l.name === lockName(runId));
    return held ? (rec?.holder ?? { clientId: '?', label: 'another tab', token: '', acquiredAt: 0, heartbeatAt: 0, mode: 'web-locks' }) : null;
  }
  return rec && rec.expiresAt !== null && rec.expiresAt > s.now() ? rec.holder : null;
}
