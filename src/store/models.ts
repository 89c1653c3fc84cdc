// Cached model files in the store's `models` + `blobs`, and a DownloadCache over them (so the hub
// downloader can keep its files here instead of in its own database, io/cache-browser.ts).
// A file's record and bytes are written and deleted in one transaction. A partial download and the
// complete file share one key: storing the complete file replaces the partial in the same put.
import type { CachedFileMeta, DownloadCache, PartialEntry, PartialMeta } from '../io/hub';
import { exact, sha256Hex, type Store } from './db';
import { isQuotaError, quotaError } from './quota';
import { blobKey, type ModelRecord } from './schema';

export interface ModelFileInput {
  key: string;
  source: string;
  file: string;
  bytes: Uint8Array;
  /** Known content hash (hex); computed when absent and `hash` is true. */
  sha256?: string | null;
  etag?: string | null;
  complete?: boolean;
  total?: number | null;
  /** Compute sha256 when not given (default true for complete files). */
  hash?: boolean;
}

async function writeModel(store: Store, rec: ModelRecord, bytes: Uint8Array): Promise<void> {
  const tx = store.db.transaction(['models', 'blobs'], 'readwrite', { durability: 'strict' });
  try {
    await Promise.all([tx.objectStore('models').put(rec), tx.objectStore('blobs').put(bytes, blobKey.model(rec.key)), tx.done]);
  } catch (e) {
    try {
      tx.abort();
    } catch {
      // already aborted or finished
    }
    await tx.done.catch(() => {});
    if (isQuotaError(e) || isQuotaError(tx.error)) {
      throw await quotaError(store, {
        what: `${rec.complete ? 'the model file' : 'the partial download of'} ${rec.file}`,
        neededBytes: bytes.byteLength,
        exclude: new Set([rec.key]),
        cause: e,
      });
    }
    throw e;
  }
}

export async function putModelFile(store: Store, input: ModelFileInput): Promise<ModelRecord> {
  const bytes = exact(input.bytes);
  const complete = input.complete ?? true;
  const sha256 = input.sha256 ?? ((input.hash ?? complete) ? await sha256Hex(bytes) : null);
  const now = Date.now();
  const rec: ModelRecord = {
    key: input.key,
    source: input.source,
    file: input.file,
    size: bytes.byteLength,
    sha256,
    etag: input.etag ?? null,
    complete,
    total: input.total ?? (complete ? bytes.byteLength : null),
    storedAt: now,
    lastUsedAt: now,
  };
  await writeModel(store, rec, bytes);
  return rec;
}

/** A complete cached file, or null (a partial download does not count). */
export async function getModelFile(store: Store, key: string): Promise<{ record: ModelRecord; bytes: Uint8Array } | null> {
  const tx = store.db.transaction(['models', 'blobs'], 'readonly');
  const [record, bytes] = await Promise.all([tx.objectStore('models').get(key), tx.objectStore('blobs').get(blobKey.model(key))]);
  await tx.done;
  if (!record || !bytes) return null;
  return { record, bytes };
}

/** Cached files of every source (complete and partial), largest first. */
export async function listModelFiles(store: Store): Promise<ModelRecord[]> {
  return (await store.db.getAll('models')).sort((a, b) => b.size - a.size);
}

/** Files with this content hash (the same weights cached under two sources). */
export async function findModelFilesByHash(store: Store, sha256: string): Promise<ModelRecord[]> {
  return store.db.getAllFromIndex('models', 'by-sha256', sha256);
}

export async function deleteModelFile(store: Store, key: string): Promise<void> {
  const tx = store.db.transaction(['models', 'blobs'], 'readwrite');
  await Promise.all([tx.objectStore('models').delete(key), tx.objectStore('blobs').delete(blobKey.model(key)), tx.done]);
}

/** Delete every cached file whose source starts with `prefix` (a whole model: its base URL). */
export async function deleteModelSource(store: Store, prefix: string): Promise<number> {
  const keys = (await store.db.getAll('models')).filter((m) => m.key.startsWith(prefix) || m.source.startsWith(prefix)).map((m) => m.key);
  const tx = store.db.transaction(['models', 'blobs'], 'readwrite');
  await Promise.all([...keys.flatMap((k) => [tx.objectStore('models').delete(k), tx.objectStore('blobs').delete(blobKey.model(k))]), tx.done]);
  return keys.length;
}

const fileOf = (url: string): string => url.slice(url.lastIndexOf('/') + 1) || url;

/** The hub downloader's cache, kept in this store (drop-in for io/cache-browser's idbDownloadCache). */
export function storeDownloadCache(store: Store): DownloadCache {
  return {
    async get(key) {
      const got = await getModelFile(store, key);
      return got?.record.complete ? got.bytes : null;
    },
    async getPartial(key): Promise<PartialEntry | null> {
      const got = await getModelFile(store, key);
      if (!got || got.record.complete) return null;
      const r = got.record;
      return { url: r.source, bytes: got.bytes, ...(r.etag ? { etag: r.etag } : {}), ...(r.total !== null ? { total: r.total } : {}) };
    },
    async putPartial(key, bytes, meta: PartialMeta) {
      await putModelFile(store, { key, source: meta.url, file: fileOf(meta.url), bytes, etag: meta.etag ?? null, total: meta.total ?? null, complete: false, hash: false });
    },
    async put(key, bytes, meta: CachedFileMeta) {
      // Hash only what the server vouched for; computing sha256 of every small JSON file is cheap too.
      await putModelFile(store, { key, source: meta.url, file: fileOf(meta.url), bytes, sha256: meta.sha256 ?? null, etag: meta.etag ?? null, complete: true });
    },
    async delete(key) {
      await deleteModelFile(store, key);
    },
  };
}
