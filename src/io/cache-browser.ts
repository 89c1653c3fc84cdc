// Browser: the download cache in IndexedDB (via idb), so a model downloaded once loads offline.
// Stores, keyed by the file's cache key (base URL + file):
//   files     complete, verified files: their meta and the sizes of their chunks
//   partials  what an interrupted (or running) download received so far: its meta and chunk sizes
//   chunks    the bytes, as Blobs of at most `chunkBytes`, keyed [cache key, chunk index]
// A download is written chunk by chunk as it arrives (each chunk and its partial record in one
// transaction), so no file is ever held whole in memory. Chromium keeps large Blobs on disk, and a
// file is read back as one Blob made of its chunk Blobs, sliced range by range. Completing a file moves
// its record from `partials` to `files` in one transaction, so a reader sees one or the other.
//
// Version 1 kept each file as one Uint8Array inside its record; the upgrade to 2 moves those bytes into
// one chunk each, so files downloaded before still load offline.
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { Chunker, blobSource } from './bytes';
import { DEFAULT_CHUNK_BYTES, type CachedFileMeta, type DownloadCache, type DownloadWriter, type PartialEntry, type PartialMeta } from './hub';

interface FileRecord {
  meta: CachedFileMeta;
  /** Byte length of each chunk, in order. */
  chunks: number[];
  storedAt: number;
}

interface PartialRecord extends PartialMeta {
  chunks: number[];
}

interface HubCacheDB extends DBSchema {
  files: { key: string; value: FileRecord };
  partials: { key: string; value: PartialRecord };
  chunks: { key: [string, number]; value: Blob };
}

export const HUB_CACHE_DB = 'webtune-hub-cache';
export const HUB_CACHE_VERSION = 2;

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

/** Every chunk of one key. */
const chunkRange = (key: string): IDBKeyRange => IDBKeyRange.bound([key, 0], [key, Infinity]);

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

export interface IdbCacheOptions {
  /** Bytes per stored chunk (default 16 MiB). */
  chunkBytes?: number;
}

export function idbDownloadCache(dbName = HUB_CACHE_DB, opts: IdbCacheOptions = {}): DownloadCache {
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  let dbp: Promise<IDBPDatabase<HubCacheDB>> | null = null;
  const db = (): Promise<IDBPDatabase<HubCacheDB>> =>
    (dbp ??= openDB<HubCacheDB>(dbName, HUB_CACHE_VERSION, {
      async upgrade(d, oldVersion, _newVersion, tx) {
        if (oldVersion < 1) {
          d.createObjectStore('files');
          d.createObjectStore('partials');
        }
        if (oldVersion < 2) {
          d.createObjectStore('chunks');
          // Version 1: { bytes: Uint8Array, meta, storedAt } and { bytes, url, etag, total }: one chunk each.
          for (const name of ['files', 'partials'] as const) {
            const os = tx.objectStore(name);
            let cursor = await os.openCursor();
            while (cursor) {
              const { bytes, ...rest } = cursor.value as unknown as { bytes?: Uint8Array } & Record<string, unknown>;
              const key = cursor.key;
              if (bytes instanceof Uint8Array) {
                await Promise.all([
                  tx.objectStore('chunks').put(new Blob([bytes as Uint8Array<ArrayBuffer>]), [key, 0]),
                  cursor.update({ ...rest, chunks: [bytes.byteLength] } as never),
                ]);
              } else {
                await cursor.delete();
              }
              cursor = await cursor.continue();
            }
          }
        }
      },
    }));

  /** The chunks of `key` as one Blob, or null when they do not match the record (then the entry is dropped). */
  const blobOf = async (key: string, sizes: number[]): Promise<Blob | null> => {
    const blobs = await (await db()).getAll('chunks', chunkRange(key));
    if (blobs.length !== sizes.length || blobs.some((b, i) => b.size !== sizes[i])) return null;
    return new Blob(blobs);
  };

  const dropAll = async (key: string): Promise<void> => {
    const d = await db();
    const tx = d.transaction(['files', 'partials', 'chunks'], 'readwrite');
    await Promise.all([tx.objectStore('files').delete(key), tx.objectStore('partials').delete(key), tx.objectStore('chunks').delete(chunkRange(key)), tx.done]);
  };

  const cache: DownloadCache = {
    async get(key) {
      const rec = await (await db()).get('files', key);
      if (!rec) return null;
      const blob = await blobOf(key, rec.chunks);
      if (!blob) {
        await dropAll(key);
        return null;
      }
      return blobSource(key, blob);
    },

    async getPartial(key): Promise<PartialEntry | null> {
      const rec = await (await db()).get('partials', key);
      if (!rec) return null;
      const blob = await blobOf(key, rec.chunks);
      if (!blob) {
        await dropAll(key);
        return null;
      }
      const { chunks, ...meta } = rec;
      return { ...meta, size: sum(chunks), source: blobSource(`${key} (partial)`, blob) };
    },

    async write(key, meta, from): Promise<DownloadWriter> {
      let sizes: number[];
      if (from === 0) {
        await dropAll(key);
        sizes = [];
      } else {
        const rec = await (await db()).get('partials', key);
        if (!rec || sum(rec.chunks) !== from) throw new Error(`${key}: no partial download of ${from} bytes to continue`);
        sizes = rec.chunks.slice();
      }
      const chunker = new Chunker(chunkBytes);
      /** One chunk and the partial record that now counts it, in one transaction. */
      const store = async (pieces: Uint8Array<ArrayBuffer>[]): Promise<void> => {
        const blob = new Blob(pieces);
        const next = [...sizes, blob.size];
        const d = await db();
        const tx = d.transaction(['partials', 'chunks'], 'readwrite');
        try {
          await Promise.all([tx.objectStore('chunks').put(blob, [key, sizes.length]), tx.objectStore('partials').put({ ...meta, chunks: next }, key), tx.done]);
        } catch (e) {
          throw quotaAware(e, blob.size);
        }
        sizes = next;
      };
      const flush = async (): Promise<void> => {
        const rest = chunker.rest();
        if (rest) await store(rest);
      };
      return {
        async append(bytes) {
          for (const full of chunker.push(bytes)) await store(full);
        },
        keep: flush,
        async commit(fileMeta) {
          await flush();
          const d = await db();
          const tx = d.transaction(['files', 'partials'], 'readwrite');
          await Promise.all([
            tx.objectStore('files').put({ meta: fileMeta, chunks: sizes, storedAt: Date.now() }, key),
            tx.objectStore('partials').delete(key),
            tx.done,
          ]);
        },
        async discard() {
          const d = await db();
          const tx = d.transaction(['partials', 'chunks'], 'readwrite');
          await Promise.all([tx.objectStore('partials').delete(key), tx.objectStore('chunks').delete(chunkRange(key)), tx.done]);
        },
      };
    },

    delete: dropAll,
  };
  return cache;
}
