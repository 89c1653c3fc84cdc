import { afterEach, describe, expect, it } from 'vitest';
import { failWrites, fakeStorage, freshStore, loraSnapshot } from './fixtures';
import { listCheckpoints, loadLatestCheckpoint, saveCheckpoint } from '../../src/store/checkpoints';
import { putDataset } from '../../src/store/datasets';
import { StorageQuotaError } from '../../src/store/errors';
import { putModelFile } from '../../src/store/models';
import { listFreeable, requestPersistent, storageEstimate } from '../../src/store/quota';
import { createRun, updateRun } from '../../src/store/runs';

let restore: (() => void) | null = null;
afterEach(() => {
  restore?.();
  restore = null;
});

describe('quota', () => {
  it('reports usage and quota, and asks for persistent storage', async () => {
    const storage = fakeStorage(1_234_000, 10_000_000_000);
    expect(await storageEstimate(storage)).toEqual({ usage: 1_234_000, quota: 10_000_000_000, persisted: false });
    expect(await requestPersistent(storage)).toBe(true);
    expect(await requestPersistent(storage)).toBe(true);
    expect(storage.persistCalls).toBe(1);
    expect(await storageEstimate(null)).toBeNull();
    expect(await requestPersistent(null)).toBe(false);
    expect(await requestPersistent({ estimate: storage.estimate })).toBe(false); // a worker: no persist()
  });

  async function fullStore() {
    const storage = fakeStorage(1_990_000_000, 2_000_000_000);
    const store = await freshStore({ storage });
    const run = await createRun(store, { name: 'smol chat', config: {}, datasetIds: [] });
    const other = await createRun(store, { name: 'older run', config: {} });
    await saveCheckpoint(store, other.id, loraSnapshot(7, { layers: 2 }), { skipEstimate: true });
    const model = await putModelFile(store, { key: 'https://hf.co/x/y/resolve/main/model.safetensors', source: 'https://hf.co/x/y/resolve/main/model.safetensors', file: 'model.safetensors', bytes: new Uint8Array(300_000) });
    const ds = await putDataset(store, { name: 'chat.jsonl', bytes: new TextEncoder().encode('{"a":1}\n'.repeat(1000)) });
    await updateRun(store, run.id, { datasetIds: [ds.id] });
    const first = loraSnapshot(100);
    await saveCheckpoint(store, run.id, first, { skipEstimate: true });
    return { store, storage, run, other, model, ds, first };
  }

  it('a QuotaExceededError during a save becomes a StorageQuotaError that says how much, how full, and what to delete; the previous checkpoint stays', async () => {
    const { store, run, first } = await fullStore();
    restore = failWrites((s, op) => s === 'blobs' && op === 'put');
    const err = (await saveCheckpoint(store, run.id, loraSnapshot(150), { skipEstimate: true }).catch((e: unknown) => e)) as StorageQuotaError;
    restore();
    restore = null;

    expect(err).toBeInstanceOf(StorageQuotaError);
    expect(err.name).toBe('StorageQuotaError');
    expect((err.cause as Error).name).toBe('QuotaExceededError');
    expect(err.neededBytes).toBeGreaterThan(5_500_000);
    expect(err.usage).toBe(1_990_000_000);
    expect(err.quota).toBe(2_000_000_000);
    expect(err.message).toMatch(/^Not enough storage for the checkpoint of run "smol chat" at step 150: it needs 5\.\d+ MB/);
    expect(err.message).toContain('this site already uses 1.99 GB of the 2.00 GB the browser allows it (10.0 MB free)');
    expect(err.message).toContain('Nothing was lost: the previous checkpoint (step 100) is intact');
    expect(err.message).toContain('cached models (1, 300 KB)');
    expect(err.message).toContain("other runs' checkpoints (1, ");
    expect(err.message).toContain('datasets (1, 8.00 KB)');
    // The checkpoint being kept is not offered for deletion.
    const latest = (await listCheckpoints(store, run.id))[0];
    expect(err.freeable.map((f) => f.id)).not.toContain(latest.id);

    const got = await loadLatestCheckpoint(store, run.id);
    expect(got!.info.step).toBe(100);
    expect(Buffer.from(got!.tensors).equals(Buffer.from(first.tensors))).toBe(true);
  });

  it('refuses before writing when the estimate says it cannot fit', async () => {
    const { store, storage, run } = await fullStore();
    storage.set(1_996_000_000, 2_000_000_000); // 4 MB left, 5.6 MB needed
    const err = (await saveCheckpoint(store, run.id, loraSnapshot(150)).catch((e: unknown) => e)) as StorageQuotaError;
    expect(err).toBeInstanceOf(StorageQuotaError);
    expect(err.message).toContain('it needs 5.59 MB, and this site already uses 2.00 GB of the 2.00 GB the browser allows it (4.00 MB free)');
    expect((await listCheckpoints(store, run.id)).map((c) => c.step)).toEqual([100]);
  });

  it('lists what can be freed, largest first, with what deleting it costs', async () => {
    const { store, ds, model } = await fullStore();
    const items = await listFreeable(store);
    expect(items.map((i) => i.bytes)).toEqual([...items.map((i) => i.bytes)].sort((a, b) => b - a));
    expect(items.map((i) => i.kind).sort()).toEqual(['dataset', 'latest-checkpoint', 'latest-checkpoint', 'model']);
    expect(items.find((i) => i.id === ds.id)!.note).toBe('runs "smol chat" need it again to resume');
    expect(items.find((i) => i.id === model.key)!.note).toMatch(/downloaded again/);
    expect(items.find((i) => i.label.includes('older run'))!.note).toMatch(/could no longer be resumed/);
  });

  it('a model file that does not fit says so too', async () => {
    const store = await freshStore({ storage: fakeStorage(0, 1e9) });
    restore = failWrites((s) => s === 'blobs');
    const err = (await putModelFile(store, { key: 'k', source: 's', file: 'model.safetensors', bytes: new Uint8Array(10) }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(StorageQuotaError);
    expect(err.message).toMatch(/^Not enough storage for the model file model\.safetensors: it needs 10 bytes/);
    expect(await store.db.count('models')).toBe(0);
  });
});
