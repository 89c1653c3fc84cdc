import { describe, expect, it } from 'vitest';
import { freshStore, loraSnapshot } from './fixtures';
import { blobSource, bytesSource } from '../../src/io/bytes';
import { openSafetensors, readTensorBytes, writeSafetensors } from '../../src/io/safetensors';
import { archiveParts, exportRunArchive, importRunArchive, readArchive } from '../../src/store/archive';
import { loadLatestCheckpoint, saveCheckpoint } from '../../src/store/checkpoints';
import { ArchiveFormatError } from '../../src/store/errors';
import { createRun, getRun, listRuns, updateRun } from '../../src/store/runs';
import type { TrainStateMeta } from '../../src/tune/trainer';

const adapter = {
  'adapter_config.json': '{"peft_type": "LORA", "r": 8}',
  'adapter_model.safetensors': writeSafetensors([{ name: 'base_model.model.x.lora_A.weight', dtype: 'F32', shape: [2], data: new Uint8Array(8).fill(7) }]),
};

async function runWithCheckpoint() {
  const store = await freshStore();
  const run = await createRun(store, { name: 'smol / chat v2', config: { lr: 2e-4, method: 'lora' }, baseModel: 'HuggingFaceTB/SmolLM2-135M', datasetIds: ['d1'] });
  await updateRun(store, run.id, { history: [{ step: 1, loss: Number.NaN }, { step: 2, loss: 1.5 }], samples: [{ step: 2, prompt: 'hi', text: 'hello' }] });
  const snap = loraSnapshot(200);
  await saveCheckpoint(store, run.id, snap, { reason: 'pause', run: { status: 'paused' } });
  return { store, run, snap };
}

describe('archive', () => {
  it('exports a run (checkpoint + adapter) to one file and imports it into another browser as a new run', async () => {
    const { store, run, snap } = await runWithCheckpoint();
    const out = await exportRunArchive(store, run.id, { adapter });
    expect(out.fileName).toBe('smol-chat-v2-step200.webtune');
    expect(out.entries).toEqual(['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'checkpoint.json', 'checkpoint.safetensors', 'run.json']);
    expect(out.blob.size).toBeGreaterThan(snap.tensors.byteLength);

    // Any safetensors reader opens it; entries are U8 bytes.
    const st = await openSafetensors(blobSource('x.webtune', out.blob));
    expect(st.metadata).toMatchObject({ format: 'webtune-archive', version: '1', kind: 'run' });
    expect(Buffer.from(await readTensorBytes(st, 'checkpoint.safetensors')).equals(Buffer.from(snap.tensors))).toBe(true);

    const elsewhere = await freshStore();
    const imported = await importRunArchive(elsewhere, out.blob);
    expect(imported.run.id).not.toBe(run.id);
    expect(imported.run).toMatchObject({ name: 'smol / chat v2', status: 'paused', baseModel: 'HuggingFaceTB/SmolLM2-135M', datasetIds: ['d1'], config: { lr: 2e-4, method: 'lora' } });
    expect(Number.isNaN((imported.run.history[0] as { loss: number }).loss)).toBe(true);
    expect(imported.run.samples).toEqual([{ step: 2, prompt: 'hi', text: 'hello' }]);
    expect(await getRun(elsewhere, imported.run.id)).toEqual(imported.run);
    expect(imported.checkpoint).toMatchObject({ runId: imported.run.id, step: 200, reason: 'import', byteSize: snap.tensors.byteLength });

    const got = await loadLatestCheckpoint<TrainStateMeta>(elsewhere, imported.run.id);
    expect(Buffer.from(got!.tensors).equals(Buffer.from(snap.tensors))).toBe(true);
    expect(got!.meta).toEqual(snap.meta); // NaN loss in the history included
    expect(new TextDecoder().decode(imported.adapter!['adapter_config.json'])).toBe(adapter['adapter_config.json']);
    expect(Buffer.from(imported.adapter!['adapter_model.safetensors']).equals(Buffer.from(adapter['adapter_model.safetensors']))).toBe(true);

    // Importing into the same browser again makes a second run, never overwriting the first.
    const again = await importRunArchive(store, new Uint8Array(await out.blob.arrayBuffer()), { name: 'copy' });
    expect((await listRuns(store)).map((r) => r.name).sort()).toEqual(['copy', 'smol / chat v2']);
    expect(again.run.id).not.toBe(run.id);
  });

  it('an adapter-only archive (no checkpoint) imports as a stopped run', async () => {
    const { store, run } = await runWithCheckpoint();
    const out = await exportRunArchive(store, run.id, { checkpointId: null, adapter });
    expect(out.entries).toEqual(['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'run.json']);
    const imported = await importRunArchive(await freshStore(), out.blob);
    expect(imported.checkpoint).toBeNull();
    expect(imported.run.status).toBe('stopped');
    expect(Object.keys(imported.adapter!).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });

  it('a finished run (or an imported adapter, status done) stays finished after the round trip', async () => {
    const { store, run } = await runWithCheckpoint();
    await updateRun(store, run.id, { status: 'done' });
    const imported = await importRunArchive(await freshStore(), (await exportRunArchive(store, run.id)).blob);
    expect(imported.run.status).toBe('done');
    expect(imported.checkpoint).toMatchObject({ step: 200 });
  });

  it('refuses files that are not webtune archives, damaged ones, and newer versions', async () => {
    const store = await freshStore();
    const notOurs = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [1], data: new Uint8Array(4) }], { format: 'pt' });
    await expect(importRunArchive(store, notOurs)).rejects.toThrow(/not a webtune archive.*adapter import/);
    await expect(importRunArchive(store, new TextEncoder().encode('hello world, not safetensors'))).rejects.toBeInstanceOf(ArchiveFormatError);

    const { store: s2, run } = await runWithCheckpoint();
    const good = new Uint8Array(await (await exportRunArchive(s2, run.id)).blob.arrayBuffer());
    await expect(importRunArchive(store, good.subarray(0, good.byteLength - 100))).rejects.toBeInstanceOf(ArchiveFormatError);

    const future = new Uint8Array(await new Blob(archiveParts([{ name: 'run.json', bytes: new Uint8Array(2) }], { format: 'webtune-archive', version: '9' }) as BlobPart[]).arrayBuffer());
    await expect(readArchive(bytesSource('f', future))).rejects.toThrow(/version 9, newer than this webtune reads/);

    const noRun = new Uint8Array(await new Blob(archiveParts([{ name: 'other.json', bytes: new TextEncoder().encode('{}') }], { format: 'webtune-archive', version: '1' }) as BlobPart[]).arrayBuffer());
    await expect(importRunArchive(store, noRun)).rejects.toThrow(/has no entry "run.json"/);
    expect(await listRuns(store)).toEqual([]);
  });
});
