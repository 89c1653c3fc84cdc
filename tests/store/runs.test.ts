import { describe, expect, it } from 'vitest';
import { freshStore, loraSnapshot } from './fixtures';
import { listCheckpoints, saveCheckpoint } from '../../src/store/checkpoints';
import { RunNotFoundError } from '../../src/store/errors';
import { createRun, deleteRun, getRun, listRuns, renameRun, updateRun } from '../../src/store/runs';

const tick = () => new Promise((r) => setTimeout(r, 2));

describe('runs', () => {
  it('create, list (most recently updated first), rename, update', async () => {
    const store = await freshStore();
    const a = await createRun(store, { name: 'first', config: { lr: 1 }, baseModel: 'HuggingFaceTB/SmolLM2-135M', datasetIds: ['d1'] });
    await tick();
    const b = await createRun(store, { name: 'second', config: { lr: 2 } });
    expect(a.status).toBe('created');
    expect((await listRuns(store)).map((r) => r.name)).toEqual(['second', 'first']);

    await tick();
    const renamed = await renameRun(store, a.id, '  tuned   on chat  ');
    expect(renamed.name).toBe('tuned on chat');
    expect(renamed.createdAt).toBe(a.createdAt);
    expect(renamed.updatedAt).toBeGreaterThan(a.updatedAt);
    expect((await listRuns(store)).map((r) => r.id)).toEqual([a.id, b.id]);
    await expect(renameRun(store, a.id, '   ')).rejects.toThrow(RangeError);

    const u = await updateRun(store, b.id, { status: 'failed', message: 'device lost', samples: [{ step: 3, prompt: 'hi', text: 'hello' }] });
    expect(u).toMatchObject({ status: 'failed', message: 'device lost', name: 'second', config: { lr: 2 } });
    expect(await getRun(store, b.id)).toEqual(u);
    await expect(renameRun(store, 'nope', 'x')).rejects.toBeInstanceOf(RunNotFoundError);
  });

  it('deleting a run deletes its checkpoints and their bytes, in one go, and nothing else', async () => {
    const store = await freshStore();
    const a = await createRun(store, { name: 'a', config: {} });
    const b = await createRun(store, { name: 'b', config: {} });
    await saveCheckpoint(store, a.id, loraSnapshot(1, { layers: 1 }), { keep: 3 });
    await saveCheckpoint(store, a.id, loraSnapshot(2, { layers: 1 }), { keep: 3 });
    const kept = await saveCheckpoint(store, b.id, loraSnapshot(3, { layers: 1 }));
    const gone = await deleteRun(store, a.id);
    expect(gone.checkpoints).toBe(2);
    expect(gone.bytes).toBeGreaterThan(0);
    expect(await getRun(store, a.id)).toBeNull();
    expect(await listCheckpoints(store, a.id)).toEqual([]);
    expect((await listCheckpoints(store)).map((c) => c.id)).toEqual([kept.id]);
    expect(await store.db.getAllKeys('blobs')).toEqual([`checkpoint/${kept.id}`]);
    await expect(deleteRun(store, a.id)).rejects.toBeInstanceOf(RunNotFoundError);
  });
});
