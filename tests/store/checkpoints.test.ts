import { afterEach, describe, expect, it } from 'vitest';
import { failWrites, freshStore, loraSnapshot } from './fixtures';
import { openSafetensors } from '../../src/io/safetensors';
import { bytesSource } from '../../src/io/bytes';
import {
  deleteCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  loadLatestCheckpoint,
  saveCheckpoint,
  type TrainSnapshot,
} from '../../src/store/checkpoints';
import type { Store } from '../../src/store/db';
import { RunNotFoundError, StorageQuotaError } from '../../src/store/errors';
import { createRun, getRun } from '../../src/store/runs';
import type { TrainStateMeta } from '../../src/tune/trainer';

let restore: (() => void) | null = null;
afterEach(() => {
  restore?.();
  restore = null;
});

async function setup(): Promise<{ store: Store; runId: string }> {
  const store = await freshStore();
  const run = await createRun(store, { name: 'smol lora', config: { lr: 2e-4 } });
  return { store, runId: run.id };
}

async function blobKeys(store: Store): Promise<string[]> {
  return (await store.db.getAllKeys('blobs')).sort();
}

describe('checkpoints', () => {
  it('round-trips a 5.5 MB LoRA state byte for byte, with the trainer meta (NaN loss included)', async () => {
    const { store, runId } = await setup();
    const snap = loraSnapshot(120);
    expect(snap.tensors.byteLength).toBeGreaterThan(5_500_000);
    const t0 = performance.now();
    const info = await saveCheckpoint(store, runId, snap, { run: { status: 'training' } });
    const saveMs = performance.now() - t0;
    expect(info).toMatchObject({ runId, step: 120, byteSize: snap.tensors.byteLength, formatVersion: 1, stateVersion: 1, reason: 'auto' });

    const got = await loadLatestCheckpoint<TrainStateMeta>(store, runId);
    expect(got).not.toBeNull();
    expect(got!.info).toEqual(info);
    expect(got!.tensors.byteLength).toBe(snap.tensors.byteLength);
    expect(Buffer.from(got!.tensors).equals(Buffer.from(snap.tensors))).toBe(true);
    expect(got!.meta).toEqual(snap.meta);
    expect(Number.isNaN(got!.meta.history[3].loss)).toBe(true);
    expect(got!.meta.cursor).toEqual(snap.meta.cursor);
    // Still a valid safetensors file, ready for Trainer.restore().
    const st = await openSafetensors(bytesSource('state', got!.tensors));
    expect(st.tensors.size).toBe(30 * 2 * 2 * 3);
    expect((await getRun(store, runId))!.status).toBe('training');
    console.log(`saved a ${(snap.tensors.byteLength / 1e6).toFixed(1)} MB checkpoint in ${saveMs.toFixed(0)} ms (fake-indexeddb)`);
  });

  it('stores exactly the bytes in view of a subarray, not its whole buffer', async () => {
    const { store, runId } = await setup();
    const snap = loraSnapshot(5, { layers: 1 });
    const big = new Uint8Array(snap.tensors.byteLength + 1000);
    big.set(snap.tensors, 500);
    await saveCheckpoint(store, runId, { meta: snap.meta, tensors: big.subarray(500, 500 + snap.tensors.byteLength) });
    const got = await loadLatestCheckpoint(store, runId);
    expect(got!.tensors.buffer.byteLength).toBe(snap.tensors.byteLength);
  });

  it('replaces the previous checkpoint in the same commit (keep = 1), or keeps the newest `keep`', async () => {
    const { store, runId } = await setup();
    const a = await saveCheckpoint(store, runId, loraSnapshot(10, { layers: 2 }));
    const b = await saveCheckpoint(store, runId, loraSnapshot(20, { layers: 2 }));
    expect((await listCheckpoints(store, runId)).map((c) => c.id)).toEqual([b.id]);
    expect(await blobKeys(store)).toEqual([`checkpoint/${b.id}`]);
    expect(a.id).not.toBe(b.id);

    const c = await saveCheckpoint(store, runId, loraSnapshot(30, { layers: 2 }), { keep: 2 });
    const d = await saveCheckpoint(store, runId, loraSnapshot(40, { layers: 2 }), { keep: 2 });
    expect((await listCheckpoints(store, runId)).map((x) => x.step)).toEqual([30, 40]);
    expect((await loadLatestCheckpoint(store, runId))!.info.id).toBe(d.id);
    expect((await loadCheckpoint(store, c.id)).meta.step).toBe(30);
    await deleteCheckpoint(store, d.id);
    expect((await loadLatestCheckpoint(store, runId))!.info.id).toBe(c.id);
    expect(await blobKeys(store)).toEqual([`checkpoint/${c.id}`]);
  });

  it('other runs keep their checkpoints', async () => {
    const { store, runId } = await setup();
    const other = await createRun(store, { name: 'other', config: {} });
    const o = await saveCheckpoint(store, other.id, loraSnapshot(7, { layers: 1 }));
    await saveCheckpoint(store, runId, loraSnapshot(8, { layers: 1 }));
    await saveCheckpoint(store, runId, loraSnapshot(9, { layers: 1 }));
    expect((await loadLatestCheckpoint(store, other.id))!.info.id).toBe(o.id);
    expect(await listCheckpoints(store)).toHaveLength(2);
  });

  // Every write of the save transaction, failed in turn: the transaction has already run the writes
  // before it (the new record, maybe its bytes) when the failure comes, and must roll them back.
  const points: [string, string, 'put' | 'delete', string][] = [
    ['the new record', 'checkpoints', 'put', 'QuotaExceededError'],
    ['the new bytes', 'blobs', 'put', 'QuotaExceededError'],
    ['the run update', 'runs', 'put', 'QuotaExceededError'],
    ['the old record delete', 'checkpoints', 'delete', 'UnknownError'],
    ['the old bytes delete', 'blobs', 'delete', 'UnknownError'],
  ];
  for (const [what, storeName, op, errorName] of points) {
    it(`a failure at ${what} leaves the previous checkpoint complete and loadable, and nothing of the new one`, async () => {
      const { store, runId } = await setup();
      const first = loraSnapshot(100);
      const prev = await saveCheckpoint(store, runId, first, { run: { status: 'training' } });
      const runBefore = await getRun(store, runId);
      const blobsBefore = await blobKeys(store);

      restore = failWrites((s, o) => s === storeName && o === op, errorName);
      const err = await saveCheckpoint(store, runId, loraSnapshot(150), { run: { status: 'paused' } }).catch((e: unknown) => e);
      restore();
      restore = null;

      expect(err).toBeInstanceOf(Error);
      expect((err as Error).name).toBe(errorName === 'QuotaExceededError' ? 'StorageQuotaError' : errorName);
      const list = await listCheckpoints(store, runId);
      expect(list.map((c) => c.id)).toEqual([prev.id]);
      expect(await blobKeys(store)).toEqual(blobsBefore);
      expect(await getRun(store, runId)).toEqual(runBefore);
      const got = await loadLatestCheckpoint<TrainStateMeta>(store, runId);
      expect(got!.info.step).toBe(100);
      expect(Buffer.from(got!.tensors).equals(Buffer.from(first.tensors))).toBe(true);

      // And the next save, once there is room, goes through.
      const next = await saveCheckpoint(store, runId, loraSnapshot(160, { layers: 1 }));
      expect((await listCheckpoints(store, runId)).map((c) => c.id)).toEqual([next.id]);
    });
  }

  it('a save for a run deleted meanwhile fails with RunNotFoundError and writes nothing', async () => {
    const { store } = await setup();
    const err = await saveCheckpoint(store, 'no-such-run', loraSnapshot(3, { layers: 1 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunNotFoundError);
    expect(await store.db.count('checkpoints')).toBe(0);
    expect(await store.db.count('blobs')).toBe(0);
  });

  it('a meta that cannot be cloned aborts the whole transaction', async () => {
    const { store, runId } = await setup();
    const prev = await saveCheckpoint(store, runId, loraSnapshot(1, { layers: 1 }));
    const bad = { meta: { version: 1, step: 2, hook: () => 0 }, tensors: new Uint8Array(8) } as unknown as TrainSnapshot;
    const err = await saveCheckpoint(store, runId, bad).catch((e: unknown) => e);
    expect((err as Error).name).toBe('DataCloneError');
    expect((await listCheckpoints(store, runId)).map((c) => c.id)).toEqual([prev.id]);
    expect(await store.db.count('blobs')).toBe(1);
  });

  it('StorageQuotaError is what a quota failure becomes', async () => {
    const { store, runId } = await setup();
    restore = failWrites((s) => s === 'blobs');
    const err = await saveCheckpoint(store, runId, loraSnapshot(1, { layers: 1 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageQuotaError);
  });
});
