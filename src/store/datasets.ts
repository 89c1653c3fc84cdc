// The user's data files, kept locally so a run can be resumed after a reload without picking the file
// again. Keyed by content hash: the same file uploaded twice is stored once.
import { exact, sha256Hex, type Store } from './db';
import { failedWrite } from './quota';
import { blobKey, type DatasetRecord } from './schema';

export interface DatasetInput {
  name: string;
  /** MIME type ('' when unknown). */
  type?: string;
  bytes: Uint8Array;
}

export async function putDataset(store: Store, input: DatasetInput): Promise<DatasetRecord> {
  const bytes = exact(input.bytes);
  const id = await sha256Hex(bytes);
  const now = Date.now();
  const tx = store.db.transaction(['datasets', 'blobs'], 'readwrite', { durability: 'strict' });
  try {
    const existing = await tx.objectStore('datasets').get(id);
    const rec: DatasetRecord = existing
      ? { ...existing, name: input.name, lastUsedAt: now }
      : { id, name: input.name, type: input.type ?? '', size: bytes.byteLength, createdAt: now, lastUsedAt: now };
    await Promise.all([tx.objectStore('datasets').put(rec), existing ? null : tx.objectStore('blobs').put(bytes, blobKey.dataset(id)), tx.done]);
    return rec;
  } catch (e) {
    return failedWrite(store, tx, e, { what: `the dataset ${input.name}`, neededBytes: bytes.byteLength });
  }
}

export async function getDataset(store: Store, id: string): Promise<{ record: DatasetRecord; bytes: Uint8Array } | null> {
  const tx = store.db.transaction(['datasets', 'blobs'], 'readonly');
  const [record, bytes] = await Promise.all([tx.objectStore('datasets').get(id), tx.objectStore('blobs').get(blobKey.dataset(id))]);
  await tx.done;
  return record && bytes ? { record, bytes } : null;
}

/** Most recently used first. */
export async function listDatasets(store: Store): Promise<DatasetRecord[]> {
  return (await store.db.getAll('datasets')).sort((a, b) => b.lastUsedAt - a.lastUsedAt);
}

export async function deleteDataset(store: Store, id: string): Promise<void> {
  const tx = store.db.transaction(['datasets', 'blobs'], 'readwrite');
  await Promise.all([tx.objectStore('datasets').delete(id), tx.objectStore('blobs').delete(blobKey.dataset(id)), tx.done]);
}
