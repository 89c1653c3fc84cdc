// Node: the download cache as a directory tree mirroring the URLs, e.g.
//   ~/.cache/webtune/hub/huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/model.safetensors
// next to it, while a download is incomplete:
//   model.safetensors.partial               the bytes received so far (from offset 0)
//   model.safetensors.partial.meta.json     { length, etag, total, url }
// and once complete, model.safetensors.meta.json ({ url, size, etag, sha256 }).
// Every write goes to a temporary name first and is renamed into place (atomic on one filesystem), so a
// crash leaves either the old state or the new one; a partial whose meta disagrees with its length is
// thrown away rather than resumed.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CachedFileMeta, DownloadCache, PartialEntry, PartialMeta } from './hub';

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

const asBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

export interface DiskDownloadCache extends DownloadCache {
  readonly dir: string;
  /** The file a complete entry is stored in. */
  pathOf(key: string): string;
}

export function diskDownloadCache(dir: string = defaultHubCacheDir()): DiskDownloadCache {
  const paths = (key: string) => {
    const p = keyPath(dir, key);
    return { data: p, meta: `${p}.meta.json`, partial: `${p}.partial`, partialMeta: `${p}.partial.meta.json` };
  };
  const dropPartial = async (p: ReturnType<typeof paths>) => {
    await rm(p.partialMeta, { force: true });
    await rm(p.partial, { force: true });
  };
  return {
    dir,
    pathOf: (key) => paths(key).data,

    async get(key) {
      const b = await readOrNull(paths(key).data);
      return b ? asBytes(b) : null;
    },

    async getPartial(key): Promise<PartialEntry | null> {
      const p = paths(key);
      const metaText = await readOrNull(p.partialMeta);
      const bytes = await readOrNull(p.partial);
      if (!metaText || !bytes) {
        if (metaText || bytes) await dropPartial(p);
        return null;
      }
      let meta: PartialMeta & { length?: number };
      try {
        meta = JSON.parse(metaText.toString('utf8')) as typeof meta;
      } catch {
        meta = {} as typeof meta;
      }
      if (meta.length !== bytes.byteLength) {
        // Written out of step (a crash between the two renames): not safe to resume.
        await dropPartial(p);
        return null;
      }
      return { bytes: asBytes(bytes), url: meta.url, etag: meta.etag, total: meta.total };
    },

    async putPartial(key, bytes, meta) {
      const p = paths(key);
      await writeAtomic(p.partial, bytes);
      await writeAtomic(p.partialMeta, JSON.stringify({ ...meta, length: bytes.byteLength }));
    },

    async put(key, bytes, meta: CachedFileMeta) {
      const p = paths(key);
      await writeAtomic(p.data, bytes);
      await writeAtomic(p.meta, JSON.stringify({ ...meta, storedAt: new Date().toISOString() }));
      await dropPartial(p);
    },

    async delete(key) {
      const p = paths(key);
      await rm(p.data, { force: true });
      await rm(p.meta, { force: true });
      await dropPartial(p);
    },
  };
}
