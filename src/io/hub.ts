// Download a checkpoint from the Hugging Face Hub — or from any static server laid out like it — into a
// cache, then hand it over as ModelFiles. Host-agnostic: the caller injects `fetch` and a DownloadCache
// (disk in Node: cache-node.ts; IndexedDB in the browser: store/models.ts storeDownloadCache), so Node, the browser and
// the tests run this same code.
//
// Hub layout: every file of a model repository is served at
//   <endpoint>/<org>/<name>/resolve/<revision>/<file>
// Small files come straight back; large (LFS) files redirect to a CDN that honours `Range`. For LFS
// files the Hub sends the file's sha256 as `X-Linked-ETag` (and the CDN usually as `ETag`), which we
// check when we can see it.
//
// Streaming: a file's bytes go to the cache piece by piece as they arrive, through an incremental
// sha256 (sha256.ts), and the loaded model reads them back lazily, range by range: no file is ever held
// whole in one buffer, so a 2.5 GB model.safetensors downloads like a 2 KB config.json.
//
// Resume: a download cut mid-way is kept as a *partial* entry, never a complete one. The next attempt
// asks for `Range: bytes=<n>-` (with `If-Range: <etag>` so a changed file is sent whole): a 206 answer
// is appended (the kept bytes are hashed again, so the digest covers the whole file), a 200 answer
// restarts from zero. The length is checked against Content-Length / Content-Range, and the sha256
// against the server's, before anything becomes a complete entry.
import { Chunker, bytesSource, chunkedSource, concatBytes, type ByteSource } from './bytes';
import { MissingFileError, type ModelFiles } from './files';
import { Sha256 } from './sha256';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

// ── Where a model comes from ─────────────────────────────────────────────────────────────────────

export type ModelSource =
  /** A Hub repository at a revision (branch, tag or commit). */
  | { kind: 'hub'; repo: string; revision: string; baseUrl: string }
  /** Any http(s) folder holding the files. */
  | { kind: 'url'; baseUrl: string };

export class InvalidModelSourceError extends Error {
  override name = 'InvalidModelSourceError';
}

// Hub repository names: letters, digits, '-', '_', '.', at most 96 characters, no '--' or '..',
// neither starting nor ending with '-' or '.'.
const REPO_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;

function checkRepoPart(part: string, what: string, source: string): void {
  if (!REPO_PART.test(part) || part.includes('--') || part.includes('..')) {
    throw new InvalidModelSourceError(
      `"${source}": "${part}" is not a valid ${what} (letters, digits, '-', '_', '.'; at most 96 characters; no "--" or "..")`,
    );
  }
}

function hubSource(org: string, name: string, revision: string, endpoint: string, source: string): ModelSource {
  checkRepoPart(org, 'Hub organisation or user name', source);
  checkRepoPart(name, 'Hub model name', source);
  if (org === 'datasets' || org === 'spaces') {
    throw new InvalidModelSourceError(`"${source}" names a Hub ${org.slice(0, -1)}, not a model`);
  }
  if (!revision || /\s/.test(revision) || revision.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new InvalidModelSourceError(`"${source}": "${revision}" is not a valid revision (a branch, tag or commit hash)`);
  }
  const ep = endpoint.replace(/\/+$/, '');
  return {
    kind: 'hub',
    repo: `${org}/${name}`,
    revision,
    // The Hub expects a revision with slashes (refs/pr/1) percent-encoded as one path segment.
    baseUrl: `${ep}/${org}/${name}/resolve/${encodeURIComponent(revision)}/`,
  };
}

/**
 * `org/name`, `org/name@revision` (default `main`), a Hub page URL (`<endpoint>/org/name[/tree/rev]`)
 * or an http(s) URL of a folder holding the files.
 */
export function resolveSource(source: string, opts: { endpoint?: string } = {}): ModelSource {
  const endpoint = opts.endpoint ?? DEFAULT_ENDPOINT;
  const s = source.trim();
  if (/^https?:\/\//i.test(s)) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new InvalidModelSourceError(`"${source}" is not a valid URL`);
    }
    const ep = endpoint.replace(/\/+$/, '') + '/';
    if (url.href.startsWith(ep) && !url.search) {
      // A model page on the Hub itself: org/name or org/name/tree/<rev>.
      const m = /^([^/]+)\/([^/]+?)\/?(?:tree\/(.+?)\/?)?$/.exec(url.href.slice(ep.length));
      if (m) return hubSource(m[1], m[2], m[3] ? decodeURIComponent(m[3]) : 'main', endpoint, source);
    }
    return { kind: 'url', baseUrl: url.href.endsWith('/') ? url.href : `${url.href}/` };
  }
  const m = /^([^/@\s]+)\/([^/@\s]+)(?:@(.+))?$/.exec(s);
  if (!m) {
    throw new InvalidModelSourceError(
      `"${source}" is not a Hub model id: expected "org/name" or "org/name@revision" (e.g. "HuggingFaceTB/SmolLM2-135M"), or an http(s) URL of a folder`,
    );
  }
  return hubSource(m[1], m[2], m[3] ?? 'main', endpoint, source);
}

/** Shown in messages and as the ModelFiles name. */
export function describeSource(src: ModelSource): string {
  return src.kind === 'hub' ? `${src.repo}@${src.revision}` : src.baseUrl;
}

/** URL of one file below the base (each path segment percent-encoded). */
export function fileUrl(baseUrl: string, file: string): string {
  return baseUrl + file.split('/').map(encodeURIComponent).join('/');
}

/** Cache key of one file: the base URL (which carries the revision) + the file's path. */
export function cacheKey(baseUrl: string, file: string): string {
  return baseUrl + file;
}

// ── Typed errors ─────────────────────────────────────────────────────────────────────────────────

/** The server answered with an HTTP error status. */
export class HubHttpError extends Error {
  override name = 'HubHttpError';
  constructor(
    message: string,
    readonly file: string,
    readonly url: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** 404: the file (or the repository, or the revision) is not there. */
export class HubFileNotFoundError extends HubHttpError {
  override name = 'HubFileNotFoundError';
}

/** 401/403: a gated or private model; needs an access token (and the licence accepted on the Hub). */
export class HubAuthError extends HubHttpError {
  override name = 'HubAuthError';
}

/** The server could not be reached at all (offline, DNS, refused connection, CORS). */
export class HubNetworkError extends Error {
  override name = 'HubNetworkError';
  constructor(
    readonly file: string,
    readonly url: string,
    cause: unknown,
  ) {
    super(
      `${file}: could not reach ${url} (${errorText(cause)}). Check the connection and try again; files already downloaded stay in the cache`,
      { cause },
    );
  }
}

/** The connection dropped (or the body ended) before the whole file arrived. What came is kept for resume. */
export class DownloadInterruptedError extends Error {
  override name = 'DownloadInterruptedError';
  constructor(
    readonly file: string,
    readonly url: string,
    readonly receivedBytes: number,
    readonly totalBytes: number | null,
    readonly kept: boolean,
    cause?: unknown,
  ) {
    super(
      `${file}: the download from ${url} stopped after ${receivedBytes}${totalBytes !== null ? ` of ${totalBytes}` : ''} bytes` +
        `${cause ? ` (${errorText(cause)})` : ''}. ` +
        (kept ? `The ${receivedBytes} bytes are kept; loading again resumes from there` : 'Loading again starts this file over'),
      { cause },
    );
  }
}

/** The bytes that arrived are not the file: wrong length or a sha256 that does not match. Nothing was cached. */
export class DownloadIntegrityError extends Error {
  override name = 'DownloadIntegrityError';
  constructor(
    readonly file: string,
    readonly url: string,
    detail: string,
  ) {
    super(`${file}: ${detail} (from ${url}). The corrupt copy was discarded; load again to download it afresh`);
  }
}

/** The caller's AbortSignal fired. Bytes already received are kept for resume. */
export class DownloadCancelledError extends Error {
  override name = 'DownloadCancelledError';
  constructor(
    readonly file: string,
    readonly receivedBytes: number,
  ) {
    super(`${file}: download cancelled${receivedBytes ? ` after ${receivedBytes} bytes (kept; loading again resumes)` : ''}`);
  }
}

/** A model.safetensors.index.json we cannot use. */
export class HubIndexError extends Error {
  override name = 'HubIndexError';
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: unknown }).cause;
    return cause instanceof Error && cause.message && cause.message !== e.message ? `${e.message}: ${cause.message}` : e.message;
  }
  return String(e);
}

function httpError(file: string, url: string, status: number, src: ModelSource, hadToken: boolean): HubHttpError {
  const where = src.kind === 'hub' ? `${src.repo} at revision "${src.revision}"` : src.baseUrl;
  if (status === 404) {
    const what = src.kind === 'hub' ? 'file not found on the Hub' : 'file not found';
    return new HubFileNotFoundError(
      `${file}: ${what} (HTTP 404 at ${url}). Check the model id and revision (${where})`,
      file,
      url,
      status,
    );
  }
  if (status === 401 || status === 403) {
    const why = hadToken
      ? 'the access token was refused: check it has read access and that you accepted the model\'s licence on its Hub page'
      : 'the model is gated or private (or does not exist): pass an access token (hf_…) with read access, after accepting the licence on its Hub page';
    return new HubAuthError(`${file}: HTTP ${status} at ${url}: ${why}`, file, url, status);
  }
  const hint = status === 429 ? ': too many requests, wait a minute and try again' : status >= 500 ? ': the server failed, try again later' : '';
  return new HubHttpError(`${file}: HTTP ${status} at ${url}${hint}`, file, url, status);
}

// ── The cache interface ──────────────────────────────────────────────────────────────────────────
//
// A file is written to the cache as it arrives and read back lazily, range by range: no download is
// ever held whole in one buffer (a 2.5 GB model.safetensors would not fit in one ArrayBuffer). While
// it arrives it is a *partial* entry (kept for resume); the writer's commit turns it into a *complete*
// entry in one step, so a reader sees a whole, verified file or nothing.

export interface CachedFileMeta {
  url: string;
  size: number;
  etag?: string;
  /** sha256 (hex) of the bytes, computed as they arrived (and checked when the server sent one). */
  sha256?: string;
}

export interface PartialMeta {
  url: string;
  /** The server's ETag for the whole file: sent back as If-Range so a changed file is not spliced. */
  etag?: string;
  /** The whole file's size, when the server said. */
  total?: number;
}

export interface PartialEntry extends PartialMeta {
  /** Bytes kept so far (from offset 0). */
  size: number;
  /** Those bytes, read lazily (a resumed download hashes them again). */
  source: ByteSource;
}

/** Where downloads live between loads. A complete entry is only ever a whole, verified file. */
export interface DownloadCache {
  /** A complete file, read lazily; null when there is none. */
  get(key: string): Promise<ByteSource | null>;
  getPartial(key: string): Promise<PartialEntry | null>;
  /**
   * Write a file as it arrives. `from` 0 starts over (whatever the key held is dropped); `from` equal
   * to the partial's size continues it. What is appended is stored as it comes, in pieces.
   */
  write(key: string, meta: PartialMeta, from: number): Promise<DownloadWriter>;
  /** Drop both the complete entry and the partial. */
  delete(key: string): Promise<void>;
}

/** One download being stored. Every writer ends with exactly one of keep, commit or discard. */
export interface DownloadWriter {
  append(bytes: Uint8Array): Promise<void>;
  /** Store what is still buffered and stop: the partial holds every byte appended (a resume point). */
  keep(): Promise<void>;
  /** Store the rest and make the partial the complete entry, atomically. */
  commit(meta: CachedFileMeta): Promise<void>;
  /** Stop and drop the partial. */
  discard(): Promise<void>;
}

/** Store a small file whole (the manifest). */
export async function putCachedBytes(cache: DownloadCache, key: string, bytes: Uint8Array, meta: CachedFileMeta): Promise<void> {
  const w = await cache.write(key, { url: meta.url, etag: meta.etag, total: bytes.byteLength }, 0);
  try {
    await w.append(bytes);
  } catch (e) {
    await w.discard().catch(() => {});
    throw e;
  }
  await w.commit(meta);
}

/** A whole cached file read into one buffer: only for small files (JSON). */
export async function readAll(src: ByteSource): Promise<Uint8Array> {
  return src.read(0, src.size);
}

/** Default chunk size of the caches that store pieces (memory, IndexedDB): 16 MiB. */
export const DEFAULT_CHUNK_BYTES = 16 << 20;

/**
 * A cache that lives as long as the object (the default: still lets automatic retries resume). It
 * keeps files as lists of chunks of at most `chunkBytes`, like the IndexedDB caches.
 */
export function memoryDownloadCache(opts: { chunkBytes?: number } = {}): DownloadCache & { chunks(key: string): Uint8Array[] } {
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const complete = new Map<string, Uint8Array[]>();
  const partial = new Map<string, PartialMeta & { chunks: Uint8Array[] }>();
  const sizeOf = (chunks: Uint8Array[]): number => chunks.reduce((n, c) => n + c.byteLength, 0);
  const sourceOf = (key: string, chunks: Uint8Array[]): ByteSource =>
    chunkedSource(
      key,
      chunks.map((c) => bytesSource(key, c)),
    );
  return {
    chunks: (k) => complete.get(k) ?? partial.get(k)?.chunks ?? [],
    get: async (k) => {
      const c = complete.get(k);
      return c ? sourceOf(k, c) : null;
    },
    getPartial: async (k) => {
      const p = partial.get(k);
      if (!p) return null;
      const { chunks, ...meta } = p;
      return { ...meta, size: sizeOf(chunks), source: sourceOf(k, chunks.slice()) };
    },
    async write(k, meta, from) {
      let chunks: Uint8Array[];
      if (from === 0) {
        complete.delete(k);
        chunks = [];
      } else {
        const p = partial.get(k);
        if (!p || sizeOf(p.chunks) !== from) throw new Error(`${k}: no partial download of ${from} bytes to continue`);
        chunks = p.chunks;
      }
      partial.set(k, { ...meta, chunks });
      const chunker = new Chunker(chunkBytes);
      const flush = () => {
        const rest = chunker.rest();
        if (rest) chunks.push(concatBytes(rest));
      };
      return {
        async append(bytes) {
          for (const full of chunker.push(bytes)) chunks.push(concatBytes(full));
        },
        async keep() {
          flush();
        },
        async commit() {
          flush();
          complete.set(k, chunks);
          partial.delete(k);
        },
        async discard() {
          partial.delete(k);
        },
      };
    },
    async delete(k) {
      complete.delete(k);
      partial.delete(k);
    },
  };
}

/** Downloaded files as ModelFiles: each opens as its cached ByteSource, named by the file. */
function cachedFiles(name: string, entries: Record<string, ByteSource>): ModelFiles {
  return {
    name,
    has: (f) => Object.hasOwn(entries, f),
    list: () => Object.keys(entries),
    async open(f) {
      if (!Object.hasOwn(entries, f)) throw new MissingFileError(name, f);
      const src = entries[f];
      return { name: f, size: src.size, read: (offset, length) => src.read(offset, length) };
    },
  };
}

// ── Progress ─────────────────────────────────────────────────────────────────────────────────────

export interface DownloadProgress {
  /** The file this event is about. */
  file: string;
  loadedBytes: number;
  /** null until the server says. */
  totalBytes: number | null;
  /** All files so far: non-decreasing unless a server that ignores Range forces a restart. */
  overallLoadedBytes: number;
  /** null while some file's size is unknown; it grows while the file list is discovered (index → shards). */
  overallTotalBytes: number | null;
  /** Network bytes per second since the first request (cached bytes don't count). */
  bytesPerSec: number;
  etaSec: number | null;
  fromCache: boolean;
  /** True on the event that finishes a file. */
  done: boolean;
}

class ProgressTracker {
  private loaded = new Map<string, number>();
  private totals = new Map<string, number | null>();
  private networkBytes = 0;
  private startedAt: number | null = null;
  private lastEmit = -Infinity;

  constructor(
    private readonly onProgress: ((p: DownloadProgress) => void) | undefined,
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  /** Count a file in the total before its bytes arrive. */
  plan(file: string, total: number | null): void {
    if (!this.loaded.has(file)) this.loaded.set(file, 0);
    if (total !== null || !this.totals.has(file)) this.totals.set(file, total);
  }

  networkStarted(): void {
    this.startedAt ??= this.now();
  }

  update(file: string, loaded: number, total: number | null, o: { fromCache?: boolean; done?: boolean; force?: boolean; netDelta?: number } = {}): void {
    this.networkBytes += o.netDelta ?? 0;
    this.loaded.set(file, loaded);
    if (total !== null || !this.totals.has(file)) this.totals.set(file, total);
    if (!this.onProgress) return;
    const t = this.now();
    if (!o.force && !o.done && t - this.lastEmit < this.intervalMs) return;
    this.lastEmit = t;
    let overallLoaded = 0;
    for (const v of this.loaded.values()) overallLoaded += v;
    let overallTotal: number | null = 0;
    for (const v of this.totals.values()) overallTotal = v === null || overallTotal === null ? null : overallTotal + v;
    const secs = this.startedAt === null ? 0 : (t - this.startedAt) / 1000;
    const bytesPerSec = secs > 0 ? this.networkBytes / secs : 0;
    this.onProgress({
      file,
      loadedBytes: loaded,
      totalBytes: total,
      overallLoadedBytes: overallLoaded,
      overallTotalBytes: overallTotal,
      bytesPerSec,
      etaSec: overallTotal !== null && bytesPerSec > 0 ? Math.max(0, overallTotal - overallLoaded) / bytesPerSec : null,
      fromCache: o.fromCache ?? false,
      done: o.done ?? false,
    });
  }
}

// ── Downloading ──────────────────────────────────────────────────────────────────────────────────

export interface HubDownloadOptions {
  /** Defaults to globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
  /** The Hub (or a mirror, or a test server). Default https://huggingface.co. */
  endpoint?: string;
  /** Bearer token for gated/private models (hf_…). */
  token?: string;
  /** Default: an in-memory cache for this call only. */
  cache?: DownloadCache;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** Automatic resumes after a dropped connection, per file (default 2). */
  retries?: number;
  /** First wait before an automatic resume, doubled each time (default 1000 ms). */
  retryDelayMs?: number;
  /** Check sha256 when the server sends one (default true). */
  verifySha256?: boolean;
  /** Minimum time between progress events within a file (default 100 ms); file starts and ends always report. */
  progressIntervalMs?: number;
}

export interface DownloadedModel {
  source: ModelSource;
  files: ModelFiles;
  /** Optional files the server does not have, e.g. tokenizer.json: the caller decides whether that matters. */
  absent: string[];
  /** Every file came from the cache: no network was used. */
  fromCache: boolean;
}

/** Always wanted; config.json is required, the rest are optional (absence is reported). */
const REQUIRED_FILES = ['config.json'];
const OPTIONAL_FILES = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json'];
const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_WEIGHTS = 'model.safetensors';

/** Written after a complete download, so a later load knows the whole file list without the network. */
interface Manifest {
  version: 1;
  files: Record<string, number>; // file → size
  absent: string[];
}
const MANIFEST = '.webtune-manifest.json';

interface Ctx {
  src: ModelSource;
  fetch: typeof globalThis.fetch;
  cache: DownloadCache;
  token?: string;
  signal?: AbortSignal;
  retries: number;
  retryDelayMs: number;
  verify: boolean;
  progress: ProgressTracker;
  usedNetwork: boolean;
}

/**
 * Download (or take from the cache) everything a checkpoint needs: config.json, generation_config.json,
 * tokenizer.json, tokenizer_config.json, and model.safetensors or model.safetensors.index.json + shards.
 */
export async function downloadModel(source: string | ModelSource, opts: HubDownloadOptions = {}): Promise<DownloadedModel> {
  const src = typeof source === 'string' ? resolveSource(source, { endpoint: opts.endpoint }) : source;
  const fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const ctx: Ctx = {
    src,
    fetch: fetchFn,
    cache: opts.cache ?? memoryDownloadCache(),
    token: opts.token,
    signal: opts.signal,
    retries: opts.retries ?? 2,
    retryDelayMs: opts.retryDelayMs ?? 1000,
    verify: opts.verifySha256 ?? true,
    progress: new ProgressTracker(opts.onProgress, opts.progressIntervalMs ?? 100, () => performance.now()),
    usedNetwork: false,
  };
  const name = describeSource(src);

  const offline = await fromManifest(ctx);
  if (offline) return { source: src, files: cachedFiles(name, offline.entries), absent: offline.absent, fromCache: true };

  const entries: Record<string, ByteSource> = {};
  const absent: string[] = [];
  for (const f of REQUIRED_FILES) entries[f] = (await getFile(ctx, f, { optional: false }))!;

  // Sharded or single file? The index is small, so ask for it first.
  const index = await getFile(ctx, INDEX_FILE, { optional: true });
  let weights: string[];
  if (index) {
    entries[INDEX_FILE] = index;
    weights = shardsOf(await readAll(index), fileUrl(src.baseUrl, INDEX_FILE));
  } else {
    weights = [SINGLE_WEIGHTS];
  }

  for (const f of OPTIONAL_FILES) {
    const b = await getFile(ctx, f, { optional: true });
    if (b) entries[f] = b;
    else absent.push(f);
  }

  // Size every weight file first so the overall total is known before the long part starts.
  const cached = new Map<string, ByteSource>();
  for (const f of weights) {
    const hit = await ctx.cache.get(cacheKey(src.baseUrl, f));
    if (hit) {
      cached.set(f, hit);
      ctx.progress.plan(f, hit.size);
      continue;
    }
    const partial = await ctx.cache.getPartial(cacheKey(src.baseUrl, f));
    ctx.progress.plan(f, partial?.total ?? (await headSize(ctx, f)));
  }
  for (const f of weights) {
    entries[f] = cached.get(f) ?? (await getFile(ctx, f, { optional: false }))!;
  }

  const manifest: Manifest = {
    version: 1,
    files: Object.fromEntries(Object.entries(entries).map(([f, b]) => [f, b.size])),
    absent,
  };
  const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest));
  await putCachedBytes(ctx.cache, cacheKey(src.baseUrl, MANIFEST), manifestBytes, { url: src.baseUrl, size: manifestBytes.byteLength });
  return { source: src, files: cachedFiles(name, entries), absent, fromCache: !ctx.usedNetwork };
}

/** Everything from the cache, if a previous load finished and nothing was evicted since. */
async function fromManifest(ctx: Ctx): Promise<{ entries: Record<string, ByteSource>; absent: string[] } | null> {
  const raw = await ctx.cache.get(cacheKey(ctx.src.baseUrl, MANIFEST));
  if (!raw) return null;
  let m: Manifest;
  try {
    m = JSON.parse(new TextDecoder().decode(await readAll(raw))) as Manifest;
    if (m.version !== 1 || typeof m.files !== 'object' || !Array.isArray(m.absent)) return null;
  } catch {
    return null;
  }
  const entries: Record<string, ByteSource> = {};
  for (const [f, size] of Object.entries(m.files)) {
    const b = await ctx.cache.get(cacheKey(ctx.src.baseUrl, f));
    if (!b || b.size !== size) return null;
    entries[f] = b;
  }
  for (const [f, b] of Object.entries(entries)) ctx.progress.update(f, b.size, b.size, { fromCache: true, done: true });
  return { entries, absent: m.absent };
}

function shardsOf(index: Uint8Array, url: string): string[] {
  let idx: { weight_map?: unknown };
  try {
    idx = JSON.parse(new TextDecoder().decode(index)) as typeof idx;
  } catch (e) {
    throw new HubIndexError(`${INDEX_FILE} at ${url} is not valid JSON: ${(e as Error).message}`);
  }
  const map = idx.weight_map;
  if (!map || typeof map !== 'object') throw new HubIndexError(`${INDEX_FILE} at ${url}: field "weight_map" is missing`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    // Shard names become URLs and cache paths: refuse anything that could point outside the folder.
    if (typeof s !== 'string' || !s || s.startsWith('/') || s.includes('\\') || s.includes('://') || s.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw new HubIndexError(`${INDEX_FILE} at ${url}: shard name ${JSON.stringify(s)} is not a plain relative file name`);
    }
  }
  if (!shards.length) throw new HubIndexError(`${INDEX_FILE} at ${url}: "weight_map" lists no files`);
  return (shards as string[]).sort();
}

function authHeaders(ctx: Ctx): Record<string, string> {
  return ctx.token ? { Authorization: `Bearer ${ctx.token}` } : {};
}

function throwIfCancelled(ctx: Ctx, file: string, received = 0): void {
  if (ctx.signal?.aborted) throw new DownloadCancelledError(file, received);
}

/** The size of a file from a HEAD request; null if the server won't say. 404/401/403 are thrown early. */
async function headSize(ctx: Ctx, file: string): Promise<number | null> {
  throwIfCancelled(ctx, file);
  const url = fileUrl(ctx.src.baseUrl, file);
  let res: Response;
  try {
    ctx.usedNetwork = true;
    res = await ctx.fetch(url, { method: 'HEAD', headers: authHeaders(ctx), signal: ctx.signal, redirect: 'follow' });
  } catch {
    throwIfCancelled(ctx, file);
    return null; // the GET will report a real failure
  }
  if (res.status === 404 || res.status === 401 || res.status === 403) throw httpError(file, url, res.status, ctx.src, !!ctx.token);
  if (!res.ok || isEncoded(res)) return null;
  const n = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

const isEncoded = (res: Response): boolean => {
  const enc = res.headers.get('content-encoding');
  return !!enc && enc.toLowerCase() !== 'identity';
};

/** One file, from the cache or the network, with automatic resumes. null: optional and absent (404). */
async function getFile(ctx: Ctx, file: string, o: { optional: boolean }): Promise<ByteSource | null> {
  throwIfCancelled(ctx, file);
  const key = cacheKey(ctx.src.baseUrl, file);
  const hit = await ctx.cache.get(key);
  if (hit) {
    ctx.progress.update(file, hit.size, hit.size, { fromCache: true, done: true });
    return hit;
  }
  for (let attempt = 0; ; attempt++) {
    try {
      return await transfer(ctx, file, key, o.optional);
    } catch (e) {
      const transient = e instanceof DownloadInterruptedError || e instanceof HubNetworkError;
      if (!transient || attempt >= ctx.retries || ctx.signal?.aborted) throw e;
      await sleep(ctx.retryDelayMs * 2 ** attempt, ctx.signal);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** `bytes <start>-<end>/<total|*>` → numbers (total null when `*`). */
function parseContentRange(h: string | null): { start: number; end: number; total: number | null } | null {
  const m = h ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(h.trim()) : null;
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

/** A sha256 the server vouches for: the Hub's X-Linked-ETag for LFS files, or an ETag that is one. */
function sha256FromHeaders(res: Response): string | null {
  for (const h of ['x-linked-etag', 'etag']) {
    const v = res.headers.get(h)?.replace(/^W\//, '').replace(/"/g, '').trim().toLowerCase();
    if (v && /^[0-9a-f]{64}$/.test(v)) return v;
  }
  return null;
}

/** Feed a stored partial through the hash again (a resumed download's digest covers the whole file). */
async function hashSource(src: ByteSource, hash: Sha256, ctx: Ctx, file: string): Promise<void> {
  const step = 4 << 20;
  for (let o = 0; o < src.size; o += step) {
    throwIfCancelled(ctx, file, src.size);
    hash.update(await src.read(o, Math.min(step, src.size - o)));
  }
}

/**
 * One HTTP attempt at a file, resuming from the cache's partial entry when there is one. The body goes
 * to the cache chunk by chunk as it arrives, through an incremental sha256; what comes back is the
 * cached file, read lazily.
 */
async function transfer(ctx: Ctx, file: string, key: string, optional: boolean, allowResume = true): Promise<ByteSource | null> {
  const url = fileUrl(ctx.src.baseUrl, file);
  let partial = allowResume ? await ctx.cache.getPartial(key) : null;
  if (partial && (partial.size === 0 || (partial.total !== undefined && partial.size >= partial.total))) {
    partial = null; // nothing to resume, or "partial" but whole: fetch afresh rather than trust it
  }
  const from = partial?.size ?? 0;
  const headers = authHeaders(ctx);
  if (partial) {
    headers.Range = `bytes=${from}-`;
    // If-Range needs a strong validator; with it, a changed file comes back whole (200) instead of spliced.
    if (partial.etag && !partial.etag.startsWith('W/')) headers['If-Range'] = partial.etag;
  }

  ctx.progress.networkStarted();
  ctx.usedNetwork = true;
  let res: Response;
  try {
    res = await ctx.fetch(url, { headers, signal: ctx.signal, redirect: 'follow' });
  } catch (e) {
    throwIfCancelled(ctx, file, from);
    throw new HubNetworkError(file, url, e);
  }

  if (res.status === 416 && partial) {
    // Our partial is not a prefix of what the server has now: drop it and start over.
    await res.body?.cancel().catch(() => {});
    await ctx.cache.delete(key);
    return transfer(ctx, file, key, optional, false);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    if (optional && res.status === 404) return null;
    throw httpError(file, url, res.status, ctx.src, !!ctx.token);
  }

  const etag = res.headers.get('etag') ?? undefined;
  const encoded = isEncoded(res); // decoded by fetch: lengths no longer match the headers, and Range is meaningless
  const contentLength = encoded ? null : Number(res.headers.get('content-length') ?? NaN);
  const bodyLength = contentLength !== null && Number.isFinite(contentLength) ? contentLength : null;

  const hash = new Sha256();
  let received: number;
  let total: number | null;
  if (res.status === 206 && partial) {
    const cr = parseContentRange(res.headers.get('content-range'));
    const sameFile = !partial.etag || !etag || etag === partial.etag;
    if (!cr || cr.start !== from || !sameFile || encoded) {
      // Not the continuation we asked for: never splice; start the file over.
      await res.body?.cancel().catch(() => {});
      return transfer(ctx, file, key, optional, false);
    }
    try {
      await hashSource(partial.source, hash, ctx, file);
    } catch (e) {
      await res.body?.cancel().catch(() => {});
      if (e instanceof DownloadCancelledError) throw e;
      // The kept bytes cannot be read back (evicted, damaged): start the file over.
      await ctx.cache.delete(key);
      return transfer(ctx, file, key, optional, false);
    }
    received = from;
    total = cr.total ?? (bodyLength !== null ? from + bodyLength : null);
  } else if (res.status === 206) {
    // A range we never asked for.
    await res.body?.cancel().catch(() => {});
    throw new HubHttpError(`${file}: unexpected HTTP 206 (partial content) at ${url} for a whole-file request`, file, url, 206);
  } else {
    // 200: the whole file, from zero — also when the server ignored our Range or If-Range said the file changed.
    received = 0;
    total = bodyLength;
  }
  const resumable = !encoded;
  const partialMeta: PartialMeta = { url, etag: etag ?? partial?.etag, total: total ?? undefined };
  let writer: DownloadWriter;
  try {
    writer = await ctx.cache.write(key, partialMeta, received);
  } catch (e) {
    await res.body?.cancel().catch(() => {});
    throw e;
  }
  ctx.progress.update(file, received, total, { force: true });

  /** The download stopped early: keep what arrived for a resume when that makes sense. */
  const keep = async (): Promise<boolean> => {
    if (!resumable || received === 0) {
      await writer.discard();
      return false;
    }
    await writer.keep();
    return true;
  };

  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (e) {
        const kept = await keep();
        if (ctx.signal?.aborted) throw new DownloadCancelledError(file, kept ? received : 0);
        throw new DownloadInterruptedError(file, url, received, total, kept, e);
      }
      if (next.done) break;
      const value = next.value;
      received += value.byteLength;
      if (total !== null && received > total) {
        await reader.cancel().catch(() => {});
        await writer.discard();
        await ctx.cache.delete(key);
        throw new DownloadIntegrityError(file, url, `the server sent more than the ${total} bytes it announced`);
      }
      hash.update(value);
      try {
        await writer.append(value);
      } catch (e) {
        // The cache refused (quota, a closed database): stop, keep what was stored, say why.
        await reader.cancel().catch(() => {});
        await writer.keep().catch(() => writer.discard().catch(() => {}));
        throw e;
      }
      ctx.progress.update(file, received, total, { netDelta: value.byteLength });
    }
  }
  if (total !== null && received < total) {
    // The body ended cleanly but short (a proxy cut it): same as a drop.
    const kept = await keep();
    throw new DownloadInterruptedError(file, url, received, total, kept, new Error('the response ended early'));
  }

  const got = hash.hex();
  const sha = ctx.verify ? sha256FromHeaders(res) : null;
  if (sha && got !== sha) {
    await writer.discard();
    await ctx.cache.delete(key);
    throw new DownloadIntegrityError(file, url, `sha256 mismatch: the server says ${sha}, the ${received} bytes received hash to ${got}`);
  }
  await writer.commit({ url, size: received, etag, sha256: got });
  const stored = await ctx.cache.get(key);
  if (!stored || stored.size !== received) {
    throw new DownloadIntegrityError(file, url, `the download cache did not keep the ${received} bytes it was given`);
  }
  ctx.progress.update(file, received, received, { done: true });
  return stored;
}
