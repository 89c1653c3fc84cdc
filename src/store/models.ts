// Cached model files in the store's `models` (+ their bytes in `modelChunks`, or in `blobs` for files
// stored whole), and the DownloadCache over them that the browser's hub downloader keeps its files in.
// A download is stored chunk by chunk as it arrives: each chunk and the partial record that counts it
// are written in one transaction, and files are read back lazily (a Blob of the chunk Blobs, sliced
// per read), so a model larger than one ArrayBuffer never sits in memory whole. A partial download and
// the complete file share one key: completing the file is one put of its record.
import { Chunker, blobSource, bytesSource, type ByteSource } from '../io/bytes';
import { DEFAULT_CHUNK_BYTES, type CachedFileMeta, type DownloadCache, type DownloadWriter, type PartialEntry, type PartialMeta } from '../io/hub';
import { exact, sha256Hex, type Store } from './db';
import { failedWrite } from './quota';
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

/** Every chunk of one file in `modelChunks`. */
const chunkRange = (key: string): IDBKeyRange => IDBKeyRange.bound([key, 0], [key, Infinity]);

async function writeModel(store: Store, rec: ModelRecord, bytes: Uint8Array): Promise<void> {
  const tx = store.db.transaction(['models', 'blobs', 'modelChunks'], 'readwrite', { durability: 'strict' });
  try {
    await Promise.all([
      tx.objectStore('models').put(rec),
      tx.objectStore('blobs').put(bytes, blobKey.model(rec.key)),
      tx.objectStore('modelChunks').delete(chunkRange(rec.key)),
      tx.done,
    ]);
  } catch (e) {
    await failedWrite(store, tx, e, {
      what: `${rec.complete ? 'the model file' : 'the partial download of'} ${rec.file}`,
      neededBytes: bytes.byteLength,
      exclude: new Set([rec.key]),
    });
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

/** A cached file (complete or partial), read lazily; null when absent or when its chunks are missing. */
export async function openModelFile(store: Store, key: string): Promise<{ record: ModelRecord; source: ByteSource } | null> {
  const tx = store.db.transaction(['models', 'blobs', 'modelChunks'], 'readonly');
  const record = await tx.objectStore('models').get(key);
  let source: ByteSource | null = null;
  if (record?.chunks) {
    const sizes = record.chunks;
    const blobs = await tx.objectStore('modelChunks').getAll(chunkRange(key));
    if (blobs.length === sizes.length && blobs.every((b, i) => b.size === sizes[i])) source = blobSource(key, new Blob(blobs));
  } else if (record) {
    const bytes = await tx.objectStore('blobs').get(blobKey.model(key));
    if (bytes) source = bytesSource(key, bytes);
  }
  await tx.done;
  return record && source ? { record, source } : null;
}

/** A cached file's bytes in one buffer (complete or partial), or null: for small files; large ones use openModelFile. */
export async function getModelFile(store: Store, key: string): Promise<{ record: ModelRecord; bytes: Uint8Array } | null> {
  const got = await openModelFile(store, key);
  return got ? { record: got.record, bytes: await got.source.read(0, got.source.size) } : null;
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
  const tx = store.db.transaction(['models', 'blobs', 'modelChunks'], 'readwrite');
  await Promise.all([
    tx.objectStore('models').delete(key),
    tx.objectStore('blobs').delete(blobKey.model(key)),
    tx.objectStore('modelChunks').delete(chunkRange(key)),
    tx.done,
  ]);
}

/** Delete every cached file whose source starts with `prefix` (a whole model: its base URL). */
export async function deleteModelSource(store: Store, prefix: string): Promise<number> {
  const keys = (await store.db.getAll('models')).filter((m) => m.key.startsWith(prefix) || m.source.startsWith(prefix)).map((m) => m.key);
  const tx = store.db.transaction(['models', 'blobs', 'modelChunks'], 'readwrite');
  await Promise.all([
    ...keys.flatMap((k) => [tx.objectStore('models').delete(k), tx.objectStore('blobs').delete(blobKey.model(k)), tx.objectStore('modelChunks').delete(chunkRange(k))]),
    tx.done,
  ]);
  return keys.length;
}

const fileOf = (url: string): string => url.slice(url.lastIndexOf('/') + 1) || url;

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * The hub downloader's cache in the browser, kept in this store (so downloads count in the Storage panel).
 * Downloads are stored in chunks of `chunkBytes` (default 16 MiB) as they arrive.
 */
export function storeDownloadCache(store: Store, opts: { chunkBytes?: number } = {}): DownloadCache {
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  return {
    async get(key) {
      const got = await openModelFile(store, key);
      return got?.record.complete ? got.source : null;
    },
    async getPartial(key): Promise<PartialEntry | null> {
      const got = await openModelFile(store, key);
      if (!got || got.record.complete) return null;
      const r = got.record;
      if (!r.chunks) {
        // A partial kept whole by an older version: start that file over.
        await deleteModelFile(store, key);
        return null;
      }
      return { url: r.source, size: r.size, source: got.source, ...(r.etag ? { etag: r.etag } : {}), ...(r.total !== null ? { total: r.total } : {}) };
    },
    async write(key, meta: PartialMeta, from): Promise<DownloadWriter> {
      const file = fileOf(meta.url);
      let sizes: number[];
      let storedAt = Date.now();
      if (from === 0) {
        await deleteModelFile(store, key);
        sizes = [];
      } else {
        const rec = await store.db.get('models', key);
        if (!rec || rec.complete || !rec.chunks || sum(rec.chunks) !== from) throw new Error(`${key}: no partial download of ${from} bytes to continue`);
        sizes = rec.chunks.slice();
        storedAt = rec.storedAt;
      }
      const record = (complete: boolean, chunks: number[], sha256: string | null, etag: string | null): ModelRecord => {
        const size = sum(chunks);
        return { key, source: meta.url, file, size, sha256, etag, complete, total: complete ? size : (meta.total ?? null), chunks, storedAt, lastUsedAt: Date.now() };
      };
      const chunker = new Chunker(chunkBytes);
      /** One chunk and the partial record that now counts it, in one transaction. */
      const storeChunk = async (pieces: Uint8Array<ArrayBuffer>[]): Promise<void> => {
        const blob = new Blob(pieces);
        const next = [...sizes, blob.size];
        const tx = store.db.transaction(['models', 'modelChunks'], 'readwrite');
        try {
          await Promise.all([tx.objectStore('modelChunks').put(blob, [key, sizes.length]), tx.objectStore('models').put(record(false, next, null, meta.etag ?? null)), tx.done]);
        } catch (e) {
          await failedWrite(store, tx, e, { what: `the download of ${file}`, neededBytes: blob.size, exclude: new Set([key]) });
        }
        sizes = next;
      };
      const flush = async (): Promise<void> => {
        const rest = chunker.rest();
        if (rest) await storeChunk(rest);
      };
      return {
        async append(bytes) {
          for (const full of chunker.push(bytes)) await storeChunk(full);
        },
        keep: flush,
        async commit(fileMeta: CachedFileMeta) {
          await flush();
          await store.db.put('models', record(true, sizes, fileMeta.sha256 ?? null, fileMeta.etag ?? null));
        },
        async discard() {
          await deleteModelFile(store, key);
        },
      };
    },
    async delete(key) {
      await deleteModelFile(store, key);
    },
  };
}
