import { describe, expect, it, vi } from 'vitest';
import { fakeLockManager, freshName } from './fixtures';
import { openStore, type Store } from '../../src/store/db';
import { RunLockLostError } from '../../src/store/errors';
import { acquireRunLock, runLockHolder, type AcquireResult, type RunLock } from '../../src/store/lock';

/** Two tabs of one origin: two connections to one database. */
async function twoTabs(): Promise<[Store, Store]> {
  const name = freshName();
  return [await openStore({ name, storage: null }), await openStore({ name, storage: null })];
}

function held(r: AcquireResult): RunLock {
  if (!r.ok) throw new Error(`expected the lock, but ${r.heldBy?.label ?? 'someone'} holds it`);
  return r.lock;
}

describe('run lock with Web Locks', () => {
  it('the second tab is refused at once and told who trains the run; after release it gets it', async () => {
    const [tabA, tabB] = await twoTabs();
    const locks = fakeLockManager();
    const a = held(await acquireRunLock('r1', { store: tabA, locks, clientId: 'A', label: 'tab A' }));
    expect(a.holder.mode).toBe('web-locks');

    const b = await acquireRunLock('r1', { store: tabB, locks, clientId: 'B', label: 'tab B' });
    expect(b.ok).toBe(false);
    expect(!b.ok && b.heldBy?.label).toBe('tab A');
    expect((await runLockHolder('r1', { store: tabB, locks }))?.clientId).toBe('A');
    // Another run is free.
    const other = held(await acquireRunLock('r2', { store: tabB, locks, clientId: 'B' }));
    await other.release();

    await a.release();
    expect(await runLockHolder('r1', { store: tabB, locks })).toBeNull();
    const b2 = held(await acquireRunLock('r1', { store: tabB, locks, clientId: 'B', label: 'tab B' }));
    expect((await runLockHolder('r1', { store: tabA, locks }))?.label).toBe('tab B');
    await b2.release();
    await a.release(); // twice: harmless, and does not touch B's record
  });

  it('the same tab cannot take a run twice either', async () => {
    const [tab] = await twoTabs();
    const locks = fakeLockManager();
    const a = held(await acquireRunLock('r1', { store: tab, locks, clientId: 'A' }));
    expect((await acquireRunLock('r1', { store: tab, locks, clientId: 'A' })).ok).toBe(false);
    await a.release();
  });
});

describe('run lock with the lease fallback (no Web Locks)', () => {
  it('refuses a second tab while the lease is valid; takes over a dead tab\'s lease after expiry; the old holder learns it lost', async () => {
    const [tabA, tabB] = await twoTabs();
    let now = 1_000_000;
    const opts = { locks: null, leaseMs: 30_000, heartbeatMs: 0, now: () => now };
    const a = held(await acquireRunLock('r1', { ...opts, store: tabA, clientId: 'A', label: 'tab A' }));
    expect(a.holder.mode).toBe('lease');

    now += 10_000;
    const b = await acquireRunLock('r1', { ...opts, store: tabB, clientId: 'B', label: 'tab B' });
    expect(!b.ok && b.heldBy?.label).toBe('tab A');

    // A renews (its heartbeat) at +20 s: still refused at +40 s.
    now += 10_000;
    expect(await a.renew()).toBe(true);
    now += 20_000;
    expect((await acquireRunLock('r1', { ...opts, store: tabB, clientId: 'B' })).ok).toBe(false);
    expect((await runLockHolder('r1', { ...opts, store: tabB }))?.clientId).toBe('A');

    // A stops renewing (tab frozen or dead); at +51 s the lease has expired and B takes over.
    now += 11_000;
    expect(await runLockHolder('r1', { ...opts, store: tabB })).toBeNull();
    const b2 = held(await acquireRunLock('r1', { ...opts, store: tabB, clientId: 'B', label: 'tab B' }));

    // A wakes up: its renewal fails and its signal tells the trainer to stop.
    expect(a.signal.aborted).toBe(false);
    expect(await a.renew()).toBe(false);
    expect(a.signal.aborted).toBe(true);
    expect(a.signal.reason).toBeInstanceOf(RunLockLostError);
    expect((a.signal.reason as Error).message).toMatch(/tab B/);
    await a.release(); // must not delete B's lease
    expect((await runLockHolder('r1', { ...opts, store: tabA }))?.clientId).toBe('B');
    await b2.release();
    expect(await runLockHolder('r1', { ...opts, store: tabA })).toBeNull();
  });

  it('two tabs racing for a free run: exactly one wins', async () => {
    const [tabA, tabB] = await twoTabs();
    const opts = { locks: null, heartbeatMs: 0 };
    const [a, b] = await Promise.all([
      acquireRunLock('r1', { ...opts, store: tabA, clientId: 'A' }),
      acquireRunLock('r1', { ...opts, store: tabB, clientId: 'B' }),
    ]);
    expect([a.ok, b.ok].filter(Boolean)).toHaveLength(1);
  });

  it('the same tab after a reload (same client id, new page) takes its old lease over at once', async () => {
    const [tab] = await twoTabs();
    const opts = { locks: null, heartbeatMs: 0, clientId: 'tab-1', store: tab };
    held(await acquireRunLock('r1', opts));
    expect((await acquireRunLock('r1', opts)).ok).toBe(false); // same page: refused
    vi.resetModules();
    const reloaded = await import('../../src/store/lock');
    const again = await reloaded.acquireRunLock('r1', opts);
    expect(again.ok).toBe(true);
  });

  it('the heartbeat renews the lease on its own', async () => {
    const [tab] = await twoTabs();
    const lock = held(await acquireRunLock('r1', { store: tab, locks: null, leaseMs: 1000, heartbeatMs: 20 }));
    const first = (await tab.db.get('locks', 'run:r1'))!.expiresAt!;
    await new Promise((r) => setTimeout(r, 80));
    expect((await tab.db.get('locks', 'run:r1'))!.expiresAt!).toBeGreaterThan(first);
    await lock.release();
    expect(await tab.db.get('locks', 'run:r1')).toBeUndefined();
  });
});
