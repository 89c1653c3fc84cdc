// Browser: the download cache in IndexedDB (via idb), so a model downloaded once loads offline.
// Two stores keyed by the file's cache key (base URL + file): `files` holds complete, verified files;
// `partials` holds what an interrupted download received so far. Storing a complete file and dropping
// its partial happen in one transaction, so a reader sees one or the other, never both or neither.
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { CachedFileMeta, DownloadCache, PartialEntry, PartialMeta } from './hub';

interface HubCacheDB extends DBSchema {
  files: { key: string; value: { bytes: Uint8Array; meta: CachedFileMeta; storedAt: number } };
  partials: { key: string; value: PartialEntry };
}

export const HUB_CACHE_DB = 'webtune-hub-cache';

/** Structured clone copies a view's whole ArrayBuffer: store exactly the bytes in view. */
const exact = (b: Uint8Array): Uint8Array => (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice());

/** QuotaExceededError from IndexedDB, with what to do about it. */
function quotaAware(e: unknown, bytes: number): unknown {
  if (e instanceof DOMException && e.name === 'QuotaExceededError') {
    const err = new Error(
      `the browser refused to store ${bytes} more bytes (storage quota): free space in the site's storage, or pick a smaller model`,
      { cause: e },
    );
    err.name = 'QuotaExceededError';
    return err;
  }
  return e;
}

export function idbDownloadCache(dbName = HUB_CACHE_DB): DownloadCache {
  let dbp: Promise<IDBPDatabase<HubCacheDB>> | null = null;
  const db = (): Promise<IDBPDatabase<HubCacheDB>> =>
    (dbp ??= openDB<HubCacheDB>(dbName, 1, {
      upgrade(d) {
        d.createObjectStore('files');
        d.createObjectStore('partials');
      },
    }));

  return {
    async get(key) {
      return (await (await db()).get('files', key))?.bytes ?? null;
    },

    async getPartial(key) {
      return (await (await db()).get('partials', key)) ?? null;
    },

    async putPartial(key, bytes, meta: PartialMeta) {
      try {
        await (await db()).put('partials', { ...meta, bytes: exact(bytes) }, key);
      } catch (e) {
        throw quotaAware(e, bytes.byteLength);
      }
    },

    async put(key, bytes, meta) {
      const d = await db();
      const tx = d.transaction(['files', 'partials'], 'readwrite');
      try {
        await Promise.all([
          tx.objectStore('files').put({ bytes: exact(bytes), meta, storedAt: Date.now() }, key),
          tx.objectStore('partials').delete(key),
          tx.done,
        ]);
      } catch (e) {
        throw quotaAware(e, bytes.byteLength);
      }
    },

    async delete(key) {
      const d = await db();
      const tx = d.transaction(['files', 'partials'], 'readwrite');
      await Promise.all([tx.objectStore('files').delete(key), tx.objectStore('partials').delete(key), tx.done]);
    },
  };
}
