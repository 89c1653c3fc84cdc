// Node: the download cache as a directory tree mirroring the URLs, e.g.
//   ~/.cache/webtune/hub/huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/model.safetensors
// next to it, while a download is incomplete:
//   model.safetensors.partial               the bytes received so far (from offset 0), appended as they arrive
//   model.safetensors.partial.meta.json     { length, etag, total, url }
// and once complete, model.safetensors.meta.json ({ url, size, etag, sha256 }).
// Received bytes go straight to the .partial file (never gathered in memory); its meta is rewritten
// after every `checkpointBytes` and when the writer stops, recording how many bytes are good. A partial
// longer than its meta says (a crash between a write and the meta) is cut back to that length; a
// shorter one is thrown away. Completing renames the .partial onto the final name (atomic on one
// filesystem), so a reader sees the whole file or none. Complete files are read lazily, range by range.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileSource } from './files-node';
import type { CachedFileMeta, DownloadCache, DownloadWriter, PartialEntry, PartialMeta } from './hub';

/** $WEBTUNE_HUB_CACHE, else $XDG_CACHE_HOME/webtune/hub, else ~/.cache/webtune/hub. */
export function defaultHubCacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.WEBTUNE_HUB_CACHE) return env.WEBTUNE_HUB_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'webtune', 'hub');
}

/** One path segment, safe on any filesystem: keep [A-Za-z0-9._@+=-], percent-encode the rest. */
function safeSegment(s: string): string {
  if (s === '' || s === '.' || s === '..') return s.replace(/\./g, '%2E') || '%';
  return s.replace(/[^A-Za-z0-9._@+=-]/g, (c) =>
    [...new TextEncoder().encode(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

/** Where a key lives on disk: host/path for plain http(s) URLs, `_keys/<sha256>` for anything else. */
export function keyPath(dir: string, key: string): string {
  let url: URL | null = null;
  try {
    url = new URL(key);
  } catch {
    url = null;
  }
  if (url && (url.protocol === 'http:' || url.protocol === 'https:') && !url.search && !url.hash && !url.username && !url.pathname.endsWith('/')) {
    const segs = url.pathname
      .split('/')
      .filter((s) => s !== '')
      .map((s) => {
        try {
          return safeSegment(decodeURIComponent(s));
        } catch {
          return safeSegment(s);
        }
      });
    return join(dir, safeSegment(url.host), ...segs);
  }
  return join(dir, '_keys', createHash('sha256').update(key).digest('hex'));
}

async function readOrNull(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

async function sizeOrNull(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export interface DiskDownloadCache extends DownloadCache {
  readonly dir: string;
  /** The file a complete entry is stored in. */
  pathOf(key: string): string;
}

export interface DiskCacheOptions {
  /** Rewrite the partial's meta (its resume point) after this many bytes (default 16 MiB). */
  checkpointBytes?: number;
}

export function diskDownloadCache(dir: string = defaultHubCacheDir(), opts: DiskCacheOptions = {}): DiskDownloadCache {
  const checkpointBytes = opts.checkpointBytes ?? 16 << 20;
  const paths = (key: string) => {
    const p = keyPath(dir, key);
    return { data: p, meta: `${p}.meta.json`, partial: `${p}.partial`, partialMeta: `${p}.partial.meta.json` };
  };
  const dropPartial = async (p: ReturnType<typeof paths>) => {
    await rm(p.partialMeta, { force: true });
    await rm(p.partial, { force: true });
  };
  const readPartialMeta = async (p: ReturnType<typeof paths>): Promise<(PartialMeta & { length: number }) | null> => {
    const metaText = await readOrNull(p.partialMeta);
    const size = await sizeOrNull(p.partial);
    if (!metaText || size === null) {
      if (metaText || size !== null) await dropPartial(p);
      return null;
    }
    let meta: Partial<PartialMeta & { length: number }>;
    try {
      meta = JSON.parse(metaText.toString('utf8')) as typeof meta;
    } catch {
      meta = {};
    }
    if (typeof meta.length !== 'number' || typeof meta.url !== 'string' || meta.length > size) {
      // Written out of step, or bytes lost: not safe to resume.
      await dropPartial(p);
      return null;
    }
    // Bytes past the last recorded length may be torn by a crash: resume from the recorded length.
    if (size > meta.length) await truncate(p.partial, meta.length);
    return { url: meta.url, etag: meta.etag, total: meta.total, length: meta.length };
  };

  return {
    dir,
    pathOf: (key) => paths(key).data,

    async get(key) {
      const p = paths(key).data;
      return (await sizeOrNull(p)) === null ? null : fileSource(p, key);
    },

    async getPartial(key): Promise<PartialEntry | null> {
      const p = paths(key);
      const meta = await readPartialMeta(p);
      if (!meta) return null;
      const { length, ...rest } = meta;
      return { ...rest, size: length, source: fileSource(p.partial, `${key} (partial)`) };
    },

    async write(key, meta, from): Promise<DownloadWriter> {
      const p = paths(key);
      await mkdir(dirname(p.data), { recursive: true });
      let fh: FileHandle;
      if (from === 0) {
        await rm(p.data, { force: true });
        await rm(p.meta, { force: true });
        await rm(p.partialMeta, { force: true });
        fh = await open(p.partial, 'w');
      } else {
        const had = await readPartialMeta(p);
        if (!had || had.length !== from) throw new Error(`${key}: no partial download of ${from} bytes to continue`);
        fh = await open(p.partial, 'r+');
      }
      let length = from;
      let recorded = from === 0 ? -1 : from;
      let closed = false;
      const record = async () => {
        if (recorded === length) return;
        await fh.datasync();
        await writeAtomic(p.partialMeta, JSON.stringify({ ...meta, length }));
        recorded = length;
      };
      const close = async () => {
        if (closed) return;
        closed = true;
        await fh.close();
      };
      if (from === 0) await record(); // the partial exists from the start, so a crash leaves it resumable
      return {
        async append(bytes) {
          let done = 0;
          while (done < bytes.byteLength) {
            const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, length);
            done += bytesWritten;
            length += bytesWritten;
          }
          if (length - recorded >= checkpointBytes) await record();
        },
        async keep() {
          try {
            await record();
          } finally {
            await close();
          }
        },
        async commit(fileMeta: CachedFileMeta) {
          try {
            await fh.datasync();
          } finally {
            await close();
          }
          await rename(p.partial, p.data);
          await writeAtomic(p.meta, JSON.stringify({ ...fileMeta, storedAt: new Date().toISOString() }));
          await rm(p.partialMeta, { force: true });
        },
        async discard() {
          await close().catch(() => {});
          await dropPartial(p);
        },
      };
    },

    async delete(key) {
      const p = paths(key);
      await rm(p.data, { force: true });
      await rm(p.meta, { force: true });
      await dropPartial(p);
    },
  };
}
