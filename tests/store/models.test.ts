import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { freshStore } from './fixtures';
import { deleteDataset, getDataset, listDatasets, putDataset } from '../../src/store/datasets';
import { deleteModelSource, findModelFilesByHash, getModelFile, listModelFiles, putModelFile, storeDownloadCache } from '../../src/store/models';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('cached models', () => {
  it('the download cache stores chunks as they arrive, keeps partials apart from complete files and replaces one with the other atomically', async () => {
    const store = await freshStore();
    const cache = storeDownloadCache(store, { chunkBytes: 1024 });
    const key = 'https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/model.safetensors';
    const url = key;
    const whole = new Uint8Array(4096).map((_, i) => i % 251);

    expect(await cache.get(key)).toBeNull();
    const w = await cache.write(key, { url, etag: '"abc"', total: 4096 }, 0);
    await w.append(whole.subarray(0, 700));
    await w.append(whole.subarray(700, 1000));
    await w.keep();
    expect(await cache.get(key)).toBeNull();
    const partial = await cache.getPartial(key);
    expect(partial).toMatchObject({ url, etag: '"abc"', total: 4096, size: 1000 });
    expect(Buffer.from(await partial!.source.read(0, 1000)).equals(Buffer.from(whole.subarray(0, 1000)))).toBe(true);
    expect((await listModelFiles(store))[0]).toMatchObject({ complete: false, file: 'model.safetensors', size: 1000, sha256: null, chunks: [1000] });

    const more = await cache.write(key, { url, etag: '"abc"', total: 4096 }, 1000);
    await more.append(whole.subarray(1000));
    expect(await cache.get(key)).toBeNull(); // chunks stored, but not complete until the commit
    await more.commit({ url, size: 4096, etag: '"abc"', sha256: sha(whole) });
    expect(await cache.getPartial(key)).toBeNull();
    const src = (await cache.get(key))!;
    expect(src.size).toBe(4096);
    expect(Buffer.from(await src.read(0, 4096)).equals(Buffer.from(whole))).toBe(true);
    expect(Buffer.from(await src.read(990, 100)).equals(Buffer.from(whole.subarray(990, 1090)))).toBe(true);
    const rec = (await getModelFile(store, key))!.record;
    expect(rec).toMatchObject({ complete: true, size: 4096, sha256: sha(whole), etag: '"abc"', chunks: [1000, 1024, 1024, 1024, 24] });
    expect(await store.db.count('modelChunks')).toBe(5);
    expect((await findModelFilesByHash(store, sha(whole))).map((m) => m.key)).toEqual([key]);

    await cache.delete(key);
    expect(await cache.get(key)).toBeNull();
    expect(await store.db.count('blobs')).toBe(0);
    expect(await store.db.count('modelChunks')).toBe(0);
  });

  it('a file stored whole by an older version is read as one chunk; starting its download over drops it', async () => {
    const store = await freshStore();
    const key = 'https://h/o/n/resolve/main/config.json';
    const bytes = new TextEncoder().encode('{"a": 1}');
    await putModelFile(store, { key, source: key, file: 'config.json', bytes });
    const cache = storeDownloadCache(store);
    const src = (await cache.get(key))!;
    expect(new TextDecoder().decode(await src.read(0, src.size))).toBe('{"a": 1}');
    const w = await cache.write(key, { url: key }, 0);
    await w.discard();
    expect(await cache.get(key)).toBeNull();
    expect(await store.db.count('blobs')).toBe(0);
  });

  it('local model files, and deleting a whole model by its base URL', async () => {
    const store = await freshStore();
    for (const f of ['config.json', 'model.safetensors']) {
      await putModelFile(store, { key: `local:smol/${f}`, source: 'local:smol', file: f, bytes: new TextEncoder().encode(f) });
    }
    await putModelFile(store, { key: 'local:other/config.json', source: 'local:other', file: 'config.json', bytes: new Uint8Array(3) });
    expect(await deleteModelSource(store, 'local:smol/')).toBe(2);
    expect((await listModelFiles(store)).map((m) => m.key)).toEqual(['local:other/config.json']);
  });
});

describe('datasets', () => {
  it('are kept by content: the same file twice is stored once', async () => {
    const store = await freshStore();
    const bytes = new TextEncoder().encode('{"messages": []}\n'.repeat(100));
    const a = await putDataset(store, { name: 'chat.jsonl', type: 'application/jsonl', bytes });
    const b = await putDataset(store, { name: 'chat (1).jsonl', bytes: bytes.slice() });
    expect(a.id).toBe(sha(bytes));
    expect(b.id).toBe(a.id);
    expect(b.name).toBe('chat (1).jsonl');
    expect(await listDatasets(store)).toHaveLength(1);
    const got = await getDataset(store, a.id);
    expect(Buffer.from(got!.bytes).equals(Buffer.from(bytes))).toBe(true);
    await deleteDataset(store, a.id);
    expect(await getDataset(store, a.id)).toBeNull();
    expect(await store.db.count('blobs')).toBe(0);
  });
});
