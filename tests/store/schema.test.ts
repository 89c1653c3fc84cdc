import { openDB, type IDBPDatabase } from 'idb';
import { describe, expect, it } from 'vitest';
import { freshName, freshStore, loraSnapshot } from './fixtures';
import { loadLatestCheckpoint } from '../../src/store/checkpoints';
import { getDataset } from '../../src/store/datasets';
import { openStore } from '../../src/store/db';
import { StoreOpenError } from '../../src/store/errors';
import { findModelFilesByHash, getModelFile } from '../../src/store/models';
import { listRuns } from '../../src/store/runs';
import { DB_VERSION, type V1Records } from '../../src/store/schema';

/** Open at version 1 (the code's own upgrade steps up to 1) and write version-1 records. */
async function writeV1(name: string, records: { [K in keyof V1Records]?: V1Records[K][] }): Promise<void> {
  const v1 = await openStore({ name, version: 1 });
  const db = v1.db as unknown as IDBPDatabase<unknown>;
  expect([...db.objectStoreNames].sort()).toEqual(['checkpoints', 'datasets', 'models', 'runs']);
  const tx = db.transaction(['models', 'datasets', 'runs', 'checkpoints'], 'readwrite');
  await Promise.all([
    ...Object.entries(records).flatMap(([store, list]) => (list as unknown[]).map((r) => tx.objectStore(store).put(r))),
    tx.done,
  ]);
  v1.close();
}

describe('schema', () => {
  it('a new database gets every store and index of the current version', async () => {
    const store = await freshStore();
    expect(store.db.version).toBe(DB_VERSION);
    expect([...store.db.objectStoreNames].sort()).toEqual(['blobs', 'checkpoints', 'datasets', 'locks', 'modelChunks', 'models', 'runs']);
    const tx = store.db.transaction(['checkpoints', 'runs', 'models'], 'readonly');
    expect([...tx.objectStore('checkpoints').indexNames].sort()).toEqual(['by-run', 'by-run-step']);
    expect([...tx.objectStore('runs').indexNames]).toEqual(['by-updated']);
    expect([...tx.objectStore('models').indexNames]).toEqual(['by-sha256']);
    await tx.done;
    store.close();
  });

  it('upgrades version 1 data: bytes move to blobs, runs get a status, checkpoints a size', async () => {
    const name = freshName();
    const snap = loraSnapshot(42, { layers: 3 });
    const modelBytes = new Uint8Array([1, 2, 3, 4, 5]);
    const dataBytes = new TextEncoder().encode('{"text": "hello"}\n');
    await writeV1(name, {
      models: [{ key: 'https://hf.co/a/b/resolve/main/config.json', source: 'https://hf.co/a/b/resolve/main/config.json', file: 'config.json', sha256: 'feed', size: 5, bytes: modelBytes, storedAt: 1000 }],
      datasets: [{ id: 'd1', name: 'chat.jsonl', type: 'application/jsonl', size: dataBytes.byteLength, bytes: dataBytes, createdAt: 2000 }],
      runs: [
        { id: 'r1', name: 'with checkpoint', createdAt: 10, updatedAt: 30, config: { lr: 1e-3 }, history: [{ step: 1, loss: 2 }], samples: [] },
        { id: 'r2', name: 'never trained', createdAt: 20, updatedAt: 20, config: {}, history: [], samples: [] },
      ],
      checkpoints: [{ id: 'c1', runId: 'r1', step: 42, meta: snap.meta, tensors: snap.tensors, createdAt: 3000 }],
    });

    const store = await openStore({ name, storage: null });
    expect(store.db.version).toBe(DB_VERSION);
    const runs = await listRuns(store);
    expect(runs.map((r) => [r.id, r.status, r.baseModel, r.datasetIds, r.message])).toEqual([
      ['r1', 'paused', null, [], null],
      ['r2', 'created', null, [], null],
    ]);
    expect(runs[0].history).toEqual([{ step: 1, loss: 2 }]);

    const ck = await store.db.get('checkpoints', 'c1');
    expect(ck).toMatchObject({ byteSize: snap.tensors.byteLength, formatVersion: 1, stateVersion: 1, reason: 'auto', step: 42 });
    expect(ck && 'tensors' in ck).toBe(false);
    const loaded = await loadLatestCheckpoint(store, 'r1');
    expect(Buffer.from(loaded!.tensors).equals(Buffer.from(snap.tensors))).toBe(true);
    expect(loaded!.meta).toEqual(snap.meta);

    const model = await getModelFile(store, 'https://hf.co/a/b/resolve/main/config.json');
    expect(model!.record).toMatchObject({ complete: true, size: 5, etag: null, lastUsedAt: 1000 });
    expect('bytes' in model!.record).toBe(false);
    expect([...model!.bytes]).toEqual([1, 2, 3, 4, 5]);
    expect(await findModelFilesByHash(store, 'feed')).toHaveLength(1);

    const ds = await getDataset(store, 'd1');
    expect(new TextDecoder().decode(ds!.bytes)).toBe('{"text": "hello"}\n');
    expect(ds!.record.lastUsedAt).toBe(2000);
    store.close();
  });

  it('upgrades version 2: model files stored whole stay readable, and downloads get a chunk store', async () => {
    const name = freshName();
    const v2 = await openStore({ name, version: 2, storage: null });
    const key = 'https://hf.co/a/b/resolve/main/model.safetensors';
    const bytes = new Uint8Array(3000).map((_, i) => i % 7);
    // Written raw: today's putModelFile also touches the version-3 store.
    const tx = v2.db.transaction(['models', 'blobs'], 'readwrite');
    const rec = { key, source: key, file: 'model.safetensors', size: 3000, sha256: null, etag: null, complete: true, total: 3000, storedAt: 1, lastUsedAt: 1 };
    await Promise.all([tx.objectStore('models').put(rec), tx.objectStore('blobs').put(bytes, `model/${key}`), tx.done]);
    v2.close();
    const store = await openStore({ name, storage: null });
    expect([...store.db.objectStoreNames]).toContain('modelChunks');
    const got = await getModelFile(store, key);
    expect(got!.record).toMatchObject({ complete: true, size: 3000 });
    expect(got!.record.chunks).toBeUndefined();
    expect(Buffer.from(got!.bytes).equals(Buffer.from(bytes))).toBe(true);
    store.close();
  });

  it('a failing upgrade step leaves the database at its old version with its data', async () => {
    const name = freshName();
    // A version-1 checkpoint without meta: the 1 → 2 step throws on it.
    const broken = { id: 'c1', runId: 'r1', step: 1, tensors: new Uint8Array(4), createdAt: 1 } as unknown as V1Records['checkpoints'];
    await writeV1(name, { checkpoints: [broken] });
    const err = await openStore({ name, storage: null }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreOpenError);
    expect((err as Error).message).toMatch(new RegExp(`from version 1 to ${DB_VERSION} .*reading 'version'.*nothing was changed`));
    const raw = await openDB(name);
    expect(raw.version).toBe(1);
    expect([...raw.objectStoreNames]).not.toContain('blobs');
    expect(((await raw.get('checkpoints', 'c1')) as { tensors: Uint8Array }).tensors.byteLength).toBe(4);
    raw.close();
  });

  it('data from a newer webtune is refused with a clear message, not damaged', async () => {
    const name = freshName();
    const newer = await openDB(name, DB_VERSION + 1, { upgrade: (db) => void db.createObjectStore('future') });
    newer.close();
    const err = (await openStore({ name, storage: null }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(StoreOpenError);
    expect(err.message).toMatch(/newer version of webtune/);
  });

  it('an open connection steps aside when another tab upgrades', async () => {
    const name = freshName();
    let told = 0;
    const old = await openStore({ name, version: 1, storage: null, onVersionChange: () => told++ });
    const current = await openStore({ name, storage: null });
    expect(told).toBe(1);
    expect(current.db.version).toBe(DB_VERSION);
    current.close();
    void old;
  });
});
