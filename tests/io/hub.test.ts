// Hub / URL loading against a local static server that serves a Hub-shaped tree
// (/<org>/<name>/resolve/<revision>/<file>) from memory: never the real Hub. The server understands
// Range, If-Range and ETag, can demand a token, and can misbehave on purpose (drop the connection after
// N bytes, ignore Range, send corrupt bytes).
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ByteSource } from '../../src/io/bytes';
import { diskDownloadCache, keyPath } from '../../src/io/cache-node';
import type { ModelFiles } from '../../src/io/files';
import {
  DownloadCancelledError,
  DownloadIntegrityError,
  DownloadInterruptedError,
  HubAuthError,
  HubFileNotFoundError,
  HubNetworkError,
  InvalidModelSourceError,
  cacheKey,
  downloadModel,
  memoryDownloadCache,
  readAll,
  resolveSource,
  type DownloadCache,
  type DownloadProgress,
  type HubDownloadOptions,
} from '../../src/io/hub';
import { storeDownloadCache } from '../../src/store/models';
import { freshStore } from '../store/fixtures';
import { openCheckpoint } from '../../src/model/checkpoint';
import { tinyCheckpointFiles, tinyConfigJson, tinyWeights } from '../helpers/tiny-models';

// ── A Hub-shaped static server ───────────────────────────────────────────────────────────────────

interface SeenRequest {
  method: string;
  path: string;
  range?: string;
  ifRange?: string;
  auth?: string;
  status: number;
}

interface HubServer {
  endpoint: string;
  /** "org/name@rev" → file → bytes */
  repos: Map<string, Map<string, Uint8Array>>;
  /** Repos that need `Authorization: Bearer hf_good`. */
  gated: Set<string>;
  requests: SeenRequest[];
  /** Next GET of this file sends `after` bytes of its body, then destroys the socket. */
  dropNext: { file: string; after: number } | null;
  ignoreRange: boolean;
  /** Files whose bytes are served flipped (headers still describe the true file). */
  corrupt: Set<string>;
  close(): Promise<void>;
}

const enc = new TextEncoder();
const toBytes = (v: Uint8Array | string): Uint8Array => (typeof v === 'string' ? enc.encode(v) : v);

/** The Hub's headers: LFS files (safetensors) carry their sha256 as ETag and X-Linked-ETag; git files a sha1. */
function etagOf(file: string, bytes: Uint8Array): { etag: string; linked?: string } {
  if (file.endsWith('.safetensors')) {
    const sha = createHash('sha256').update(bytes).digest('hex');
    return { etag: `"${sha}"`, linked: `"${sha}"` };
  }
  return { etag: `"${createHash('sha1').update(bytes).digest('hex')}"` };
}

async function startHubServer(): Promise<HubServer> {
  const state: Omit<HubServer, 'endpoint' | 'close'> = {
    repos: new Map(),
    gated: new Set(),
    requests: [],
    dropNext: null,
    ignoreRange: false,
    corrupt: new Set(),
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const seen: SeenRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '',
      range: req.headers.range,
      ifRange: req.headers['if-range'] as string | undefined,
      auth: req.headers.authorization,
      status: 0,
    };
    state.requests.push(seen);
    const reply = (status: number, headers: Record<string, string | number> = {}, body?: Uint8Array | string): void => {
      seen.status = status;
      res.writeHead(status, headers);
      res.end(seen.method === 'HEAD' ? undefined : body);
    };
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec((req.url ?? '').split('?')[0]);
    if (!m) return reply(404, { 'X-Error-Code': 'RepoNotFound' }, 'Repository not found');
    const [org, name, rev, file] = [m[1], m[2], decodeURIComponent(m[3]), m[4].split('/').map(decodeURIComponent).join('/')];
    const repo = `${org}/${name}`;
    if (state.gated.has(repo)) {
      if (!req.headers.authorization) return reply(401, {}, 'Access to this model is restricted');
      if (req.headers.authorization !== 'Bearer hf_good') return reply(403, {}, 'Forbidden');
    }
    const bytes = state.repos.get(`${repo}@${rev}`)?.get(file);
    if (!bytes) return reply(404, { 'X-Error-Code': 'EntryNotFound' }, 'Entry not found');
    const { etag, linked } = etagOf(file, bytes);
    const headers: Record<string, string | number> = { ETag: etag, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    if (linked) headers['X-Linked-ETag'] = linked;
    let body = state.corrupt.has(file) ? bytes.map((b) => b ^ 0xff) : bytes;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    if (range && !state.ignoreRange && (!ifRange || ifRange === etag)) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), bytes.byteLength - 1) : bytes.byteLength - 1;
      if (start >= bytes.byteLength) return reply(416, { 'Content-Range': `bytes */${bytes.byteLength}` });
      headers['Content-Range'] = `bytes ${start}-${end}/${bytes.byteLength}`;
      body = body.subarray(start, end + 1);
      status = 206;
    }
    headers['Content-Length'] = body.byteLength;
    const drop = state.dropNext;
    if (drop && drop.file === file && seen.method === 'GET') {
      state.dropNext = null;
      seen.status = status;
      res.writeHead(status, headers);
      res.write(body.subarray(0, drop.after), () => setTimeout(() => res.socket?.destroy(), 30));
      return;
    }
    reply(status, headers, body);
  };
  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}

// ── Fixtures ─────────────────────────────────────────────────────────────────────────────────────

const TOKENIZER_JSON = JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: [] } });
const TOKENIZER_CONFIG = JSON.stringify({ bos_token: '<s>', eos_token: '</s>' });

function llamaRepo(opts: { shards?: number; seed?: number; tokenizer?: boolean } = {}): Map<string, Uint8Array> {
  const files = tinyCheckpointFiles(tinyConfigJson('llama'), { shards: opts.shards, seed: opts.seed });
  if (opts.tokenizer ?? true) {
    files['tokenizer.json'] = TOKENIZER_JSON;
    files['tokenizer_config.json'] = TOKENIZER_CONFIG;
  }
  return new Map(Object.entries(files).map(([k, v]) => [k, toBytes(v)]));
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);

async function expectFiles(files: ModelFiles, want: Map<string, Uint8Array>): Promise<void> {
  expect(files.list().sort()).toEqual([...want.keys()].sort());
  for (const [f, b] of want) {
    const src = await files.open(f);
    expect(bytesEqual(await src.read(0, src.size), b), f).toBe(true);
  }
}

/** A cache that records the size of every buffer handed to it and every buffer read back from it. */
function recording(inner: DownloadCache): { cache: DownloadCache; appended: number[]; reads: number[] } {
  const appended: number[] = [];
  const reads: number[] = [];
  const watch = (src: ByteSource): ByteSource => ({
    name: src.name,
    size: src.size,
    async read(offset, length) {
      const b = await src.read(offset, length);
      reads.push(b.byteLength);
      return b;
    },
  });
  const cache: DownloadCache = {
    get: async (k) => {
      const src = await inner.get(k);
      return src && watch(src);
    },
    getPartial: (k) => inner.getPartial(k),
    async write(k, meta, from) {
      const w = await inner.write(k, meta, from);
      return {
        append: (b) => {
          appended.push(b.byteLength);
          return w.append(b);
        },
        keep: () => w.keep(),
        commit: (m) => w.commit(m),
        discard: () => w.discard(),
      };
    },
    delete: (k) => inner.delete(k),
  };
  return { cache, appended, reads };
}

/** fetch whose bodies arrive in pieces of at most `piece` bytes, as from a real network. */
function piecewiseFetch(piece: number): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    if (!res.body) return res;
    const reader = res.body.getReader();
    let rest: Uint8Array | null = null;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        if (!rest?.byteLength) {
          const { done, value } = await reader.read();
          if (done) return ctrl.close();
          rest = value;
        }
        ctrl.enqueue(rest.slice(0, piece));
        rest = rest.subarray(piece);
      },
      cancel: (why) => reader.cancel(why),
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
}

const rejection = async (p: Promise<unknown>): Promise<Error> =>
  p.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (e: Error) => e,
  );

// ── Tests ────────────────────────────────────────────────────────────────────────────────────────

describe('resolveSource', () => {
  it('turns Hub ids into resolve URLs (revision defaults to main)', () => {
    expect(resolveSource('HuggingFaceTB/SmolLM2-135M')).toEqual({
      kind: 'hub',
      repo: 'HuggingFaceTB/SmolLM2-135M',
      revision: 'main',
      baseUrl: 'https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/',
    });
    expect(resolveSource(' org/name@v1.0 ').baseUrl).toBe('https://huggingface.co/org/name/resolve/v1.0/');
    expect(resolveSource('org/name@refs/pr/1').baseUrl).toBe('https://huggingface.co/org/name/resolve/refs%2Fpr%2F1/');
    expect(resolveSource('org/name', { endpoint: 'http://127.0.0.1:9/' }).baseUrl).toBe('http://127.0.0.1:9/org/name/resolve/main/');
  });

  it('accepts Hub page URLs and plain folder URLs', () => {
    expect(resolveSource('https://huggingface.co/org/my.model')).toMatchObject({ kind: 'hub', repo: 'org/my.model', revision: 'main' });
    expect(resolveSource('https://huggingface.co/org/name/tree/dev')).toMatchObject({ kind: 'hub', revision: 'dev' });
    expect(resolveSource('https://example.com/models/tiny')).toEqual({ kind: 'url', baseUrl: 'https://example.com/models/tiny/' });
    expect(resolveSource('http://example.com/m/')).toEqual({ kind: 'url', baseUrl: 'http://example.com/m/' });
  });

  it('refuses invalid ids with a message that shows the expected form', () => {
    for (const bad of ['gpt2', 'a/b/c', 'org/', '/name', 'org/na me', 'org/-name', 'org/na--me', 'org/name.', 'org/name@', 'org/name@a b', 'org/name@../x']) {
      const e = (() => {
        try {
          resolveSource(bad);
        } catch (err) {
          return err as Error;
        }
        throw new Error(`accepted ${bad}`);
      })();
      expect(e, bad).toBeInstanceOf(InvalidModelSourceError);
      expect(e.message, bad).toContain(bad.trim());
    }
    expect(() => resolveSource('gpt2')).toThrow(/expected "org\/name" or "org\/name@revision"/);
    expect(() => resolveSource('datasets/squad')).toThrow(/dataset, not a model/);
  });
});

describe('downloadModel (local Hub-shaped server)', () => {
  let hub: HubServer;
  let dir: string;
  beforeAll(async () => {
    hub = await startHubServer();
  });
  afterAll(async () => {
    await hub?.close();
  });
  beforeEach(() => {
    hub.repos.clear();
    hub.gated.clear();
    hub.requests.length = 0;
    hub.dropNext = null;
    hub.ignoreRange = false;
    hub.corrupt.clear();
    dir = mkdtempSync(join(tmpdir(), 'webtune-hub-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const opts = (over: HubDownloadOptions = {}): HubDownloadOptions => ({
    endpoint: hub.endpoint,
    cache: diskDownloadCache(dir),
    retries: 0,
    retryDelayMs: 10,
    progressIntervalMs: 0,
    ...over,
  });
  const gets = (file: string) => hub.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/${file}`));

  it('downloads a checkpoint with monotonic progress and opens it', async () => {
    const repo = llamaRepo();
    hub.repos.set('tiny/llama@main', repo);
    const events: DownloadProgress[] = [];
    const got = await downloadModel('tiny/llama', opts({ onProgress: (p) => events.push(p) }));

    expect(got.fromCache).toBe(false);
    expect(got.absent).toEqual(['generation_config.json']);
    expect(got.files.name).toBe('tiny/llama@main');
    await expectFiles(got.files, repo);

    const total = [...repo.values()].reduce((a, b) => a + b.byteLength, 0);
    expect(events.length).toBeGreaterThan(5);
    for (let i = 1; i < events.length; i++) {
      expect(events[i].overallLoadedBytes).toBeGreaterThanOrEqual(events[i - 1].overallLoadedBytes);
    }
    const last = events[events.length - 1];
    expect(last.file).toBe('model.safetensors');
    expect(last.done).toBe(true);
    expect(last.overallLoadedBytes).toBe(total);
    expect(last.overallTotalBytes).toBe(total);
    expect(last.loadedBytes).toBe(repo.get('model.safetensors')!.byteLength);
    // Once the weights are sized (HEAD), the total is fixed for the rest of the download.
    const weightEvents = events.filter((e) => e.file === 'model.safetensors');
    expect(weightEvents.every((e) => e.overallTotalBytes === total)).toBe(true);
    expect(events.every((e) => e.bytesPerSec >= 0 && !e.fromCache)).toBe(true);

    const ck = await openCheckpoint(got.files);
    expect(ck.config.architecture).toBe('llama');
    expect(ck.tokenizerJson).toBe(TOKENIZER_JSON);
    const emb = await ck.readF32('model.embed_tokens.weight');
    expect(Array.from(emb)).toEqual(Array.from(tinyWeights(tinyConfigJson('llama')).get('model.embed_tokens.weight')!.data));
  });

  it('loads a second time from the cache with the server gone (offline)', async () => {
    const second = await startHubServer();
    const repo = llamaRepo();
    second.repos.set('tiny/llama@main', repo);
    await downloadModel('tiny/llama', opts({ endpoint: second.endpoint }));
    await second.close();

    let calls = 0;
    const noNetwork: typeof fetch = async () => {
      calls++;
      throw new TypeError('fetch failed: offline');
    };
    const events: DownloadProgress[] = [];
    const again = await downloadModel('tiny/llama', opts({ endpoint: second.endpoint, fetch: noNetwork, onProgress: (p) => events.push(p) }));
    expect(calls).toBe(0);
    expect(again.fromCache).toBe(true);
    expect(again.absent).toEqual(['generation_config.json']);
    await expectFiles(again.files, repo);
    expect(events.every((e) => e.fromCache && e.done)).toBe(true);
    expect((await openCheckpoint(again.files)).config.architecture).toBe('llama');

    // The real fetch against the closed port also works: nothing is requested.
    const real = await downloadModel('tiny/llama', opts({ endpoint: second.endpoint }));
    expect(real.fromCache).toBe(true);
  });

  it('without a cached copy, an unreachable server is a HubNetworkError naming the URL', async () => {
    const gone = await startHubServer();
    await gone.close();
    const e = await rejection(downloadModel('tiny/llama', opts({ endpoint: gone.endpoint })));
    expect(e).toBeInstanceOf(HubNetworkError);
    expect(e.message).toContain(`${gone.endpoint}/tiny/llama/resolve/main/config.json`);
  });

  it('404 names the file and the URL', async () => {
    const e = await rejection(downloadModel('nobody/nothing@v2', opts()));
    expect(e).toBeInstanceOf(HubFileNotFoundError);
    expect(e.message).toContain('config.json: file not found on the Hub');
    expect(e.message).toContain(`${hub.endpoint}/nobody/nothing/resolve/v2/config.json`);
    expect(e.message).toContain('nobody/nothing at revision "v2"');
    expect((e as HubFileNotFoundError).status).toBe(404);

    // Config present but no weights: the weights file is named.
    const repo = llamaRepo();
    repo.delete('model.safetensors');
    hub.repos.set('tiny/noweights@main', repo);
    const w = await rejection(downloadModel('tiny/noweights', opts()));
    expect(w).toBeInstanceOf(HubFileNotFoundError);
    expect(w.message).toMatch(/^model\.safetensors: file not found on the Hub/);
  });

  it('gated models: 401 without a token, 403 with a wrong one, success with the right one', async () => {
    hub.repos.set('meta/gated@main', llamaRepo());
    hub.gated.add('meta/gated');
    const e401 = await rejection(downloadModel('meta/gated', opts()));
    expect(e401).toBeInstanceOf(HubAuthError);
    expect(e401.message).toMatch(/HTTP 401 .*gated or private.*access token/);
    const e403 = await rejection(downloadModel('meta/gated', opts({ token: 'hf_bad' })));
    expect(e403).toBeInstanceOf(HubAuthError);
    expect(e403.message).toMatch(/HTTP 403 .*token was refused/);
    const ok = await downloadModel('meta/gated', opts({ token: 'hf_good' }));
    expect((await openCheckpoint(ok.files)).config.architecture).toBe('llama');
  });

  it('a dropped connection is a clear error, leaves only a partial, and a retry resumes with Range', async () => {
    const repo = llamaRepo();
    const weights = repo.get('model.safetensors')!;
    hub.repos.set('tiny/llama@main', repo);
    hub.dropNext = { file: 'model.safetensors', after: 30_000 };
    const cache = diskDownloadCache(dir);
    const key = cacheKey(`${hub.endpoint}/tiny/llama/resolve/main/`, 'model.safetensors');

    const e = await rejection(downloadModel('tiny/llama', opts({ cache })));
    expect(e).toBeInstanceOf(DownloadInterruptedError);
    const d = e as DownloadInterruptedError;
    expect(d.file).toBe('model.safetensors');
    expect(d.receivedBytes).toBe(30_000);
    expect(d.totalBytes).toBe(weights.byteLength);
    expect(d.message).toContain(`model.safetensors: the download from ${hub.endpoint}/tiny/llama/resolve/main/model.safetensors stopped after 30000 of ${weights.byteLength} bytes`);
    expect(d.message).toContain('resumes');
    expect(await cache.get(key)).toBeNull();
    expect(existsSync(cache.pathOf(key))).toBe(false);
    const partial = await cache.getPartial(key);
    expect(partial?.size).toBe(30_000);
    expect(bytesEqual(await readAll(partial!.source), weights.subarray(0, 30_000))).toBe(true);
    expect(partial?.total).toBe(weights.byteLength);
    expect(partial?.etag).toBe(etagOf('model.safetensors', weights).etag);

    const events: DownloadProgress[] = [];
    const got = await downloadModel('tiny/llama', opts({ cache, onProgress: (p) => events.push(p) }));
    const last = gets('model.safetensors').at(-1)!;
    expect(last.range).toBe('bytes=30000-');
    expect(last.ifRange).toBe(etagOf('model.safetensors', weights).etag);
    expect(last.status).toBe(206);
    await expectFiles(got.files, repo);
    expect(await cache.getPartial(key)).toBeNull();
    expect(bytesEqual(await readAll((await cache.get(key))!), weights)).toBe(true);
    // Progress on the resumed file starts at the kept bytes.
    expect(events.find((p) => p.file === 'model.safetensors')!.loadedBytes).toBe(30_000);
    expect((await openCheckpoint(got.files)).config.architecture).toBe('llama');
  });

  it('resumes automatically within one call when retries are allowed', async () => {
    const repo = llamaRepo();
    hub.repos.set('tiny/llama@main', repo);
    hub.dropNext = { file: 'model.safetensors', after: 12_345 };
    const got = await downloadModel('tiny/llama', opts({ cache: memoryDownloadCache(), retries: 2 }));
    await expectFiles(got.files, repo);
    expect(gets('model.safetensors').map((r) => r.range)).toEqual([undefined, 'bytes=12345-']);
  });

  it('a server that ignores Range (200) restarts the file cleanly', async () => {
    const repo = llamaRepo();
    hub.repos.set('tiny/llama@main', repo);
    hub.dropNext = { file: 'model.safetensors', after: 20_000 };
    const cache = diskDownloadCache(dir);
    await rejection(downloadModel('tiny/llama', opts({ cache })));

    hub.ignoreRange = true;
    const got = await downloadModel('tiny/llama', opts({ cache }));
    const last = gets('model.safetensors').at(-1)!;
    expect(last.range).toBe('bytes=20000-');
    expect(last.status).toBe(200);
    await expectFiles(got.files, repo);
  });

  it('a file changed on the server between attempts is downloaded whole (If-Range), never spliced', async () => {
    hub.repos.set('tiny/llama@main', llamaRepo({ seed: 1 }));
    hub.dropNext = { file: 'model.safetensors', after: 25_000 };
    const cache = diskDownloadCache(dir);
    await rejection(downloadModel('tiny/llama', opts({ cache })));

    const changed = llamaRepo({ seed: 2 });
    hub.repos.set('tiny/llama@main', changed);
    const got = await downloadModel('tiny/llama', opts({ cache }));
    const last = gets('model.safetensors').at(-1)!;
    expect(last.range).toBe('bytes=25000-');
    expect(last.status).toBe(200);
    await expectFiles(got.files, changed);
  });

  it('a sha256 mismatch is reported and nothing is cached', async () => {
    const repo = llamaRepo();
    hub.repos.set('tiny/llama@main', repo);
    hub.corrupt.add('model.safetensors');
    const cache = diskDownloadCache(dir);
    const key = cacheKey(`${hub.endpoint}/tiny/llama/resolve/main/`, 'model.safetensors');
    const e = await rejection(downloadModel('tiny/llama', opts({ cache })));
    expect(e).toBeInstanceOf(DownloadIntegrityError);
    expect(e.message).toMatch(/^model\.safetensors: sha256 mismatch: the server says [0-9a-f]{64}/);
    expect(await cache.get(key)).toBeNull();
    expect(await cache.getPartial(key)).toBeNull();

    hub.corrupt.clear();
    await expectFiles((await downloadModel('tiny/llama', opts({ cache }))).files, repo);
  });

  it('cancellation keeps the bytes received and the next load resumes', async () => {
    const repo = llamaRepo();
    hub.repos.set('tiny/llama@main', repo);
    const cache = diskDownloadCache(dir);
    const key = cacheKey(`${hub.endpoint}/tiny/llama/resolve/main/`, 'model.safetensors');
    const ac = new AbortController();
    const slowFetch: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!String(input).endsWith('model.safetensors') || init?.method === 'HEAD' || !res.body) return res;
      // Deliver the first 10,000 bytes of the weights, then abort mid-body.
      const reader = res.body.getReader();
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(ctrl) {
          if (sent >= 10_000) {
            ac.abort();
            ctrl.error(new DOMException('aborted', 'AbortError'));
            return;
          }
          const { done, value } = await reader.read();
          if (done) return ctrl.close();
          const part = value.subarray(0, 10_000 - sent);
          sent += part.byteLength;
          ctrl.enqueue(part);
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const e = await rejection(downloadModel('tiny/llama', opts({ cache, fetch: slowFetch, signal: ac.signal })));
    expect(e).toBeInstanceOf(DownloadCancelledError);
    expect(e.message).toMatch(/^model\.safetensors: download cancelled after 10000 bytes/);
    expect((await cache.getPartial(key))?.size).toBe(10_000);
    expect(await cache.get(key)).toBeNull();

    await expectFiles((await downloadModel('tiny/llama', opts({ cache }))).files, repo);
    expect(gets('model.safetensors').at(-1)!.range).toBe('bytes=10000-');
  });

  it('downloads a sharded checkpoint through its index', async () => {
    const repo = llamaRepo({ shards: 3 });
    hub.repos.set('tiny/sharded@main', repo);
    const events: DownloadProgress[] = [];
    const got = await downloadModel('tiny/sharded', opts({ onProgress: (p) => events.push(p) }));
    await expectFiles(got.files, repo);
    expect(got.files.list().filter((f) => f.endsWith('.safetensors'))).toHaveLength(3);
    const total = [...repo.values()].reduce((a, b) => a + b.byteLength, 0);
    expect(events.at(-1)!.overallLoadedBytes).toBe(total);
    expect(events.at(-1)!.overallTotalBytes).toBe(total);
    const ck = await openCheckpoint(got.files);
    expect(ck.tensors.size).toBeGreaterThan(10);
    const emb = await ck.readF32('model.embed_tokens.weight');
    expect(Array.from(emb)).toEqual(Array.from(tinyWeights(tinyConfigJson('llama')).get('model.embed_tokens.weight')!.data));
  });

  // The three caches, each storing pieces of at most 4 KiB, with a way to see how a file was stored.
  const CHUNK = 4096;
  const caches: [string, () => Promise<{ cache: DownloadCache; chunkSizes(key: string): Promise<number[] | null> }>][] = [
    [
      'memory',
      async () => {
        const cache = memoryDownloadCache({ chunkBytes: CHUNK });
        return { cache, chunkSizes: async (k) => cache.chunks(k).map((c) => c.byteLength) };
      },
    ],
    [
      'IndexedDB (webtune store)',
      async () => {
        const store = await freshStore();
        const cache = storeDownloadCache(store, { chunkBytes: CHUNK });
        const chunkSizes = async (k: string) => {
          const blobs = await store.db.getAll('modelChunks', IDBKeyRange.bound([k, 0], [k, Infinity]));
          const rec = await store.db.get('models', k);
          expect(rec?.chunks).toEqual(blobs.map((b) => b.size));
          return blobs.map((b) => b.size);
        };
        return { cache, chunkSizes };
      },
    ],
    ['disk', async () => ({ cache: diskDownloadCache(dir), chunkSizes: async () => null })],
  ];

  for (const [label, make] of caches) {
    it(`${label}: a download is stored piece by piece as it arrives and read back lazily`, async () => {
      const repo = llamaRepo();
      const weights = repo.get('model.safetensors')!;
      hub.repos.set('tiny/llama@main', repo);
      const { cache: inner, chunkSizes } = await make();
      const { cache, appended, reads } = recording(inner);
      const got = await downloadModel('tiny/llama', opts({ cache, fetch: piecewiseFetch(1500) }));
      const key = cacheKey(`${hub.endpoint}/tiny/llama/resolve/main/`, 'model.safetensors');

      // The network's pieces go to the cache as they come (never gathered first), and nothing read
      // back was the whole weights file.
      expect(appended.length).toBeGreaterThan(weights.byteLength / 1500);
      expect(Math.max(...appended)).toBeLessThanOrEqual(1500);
      const sizes = await chunkSizes(key);
      if (sizes) {
        expect(sizes.reduce((a, b) => a + b, 0)).toBe(weights.byteLength);
        expect(sizes.length).toBe(Math.ceil(weights.byteLength / CHUNK));
        expect(Math.max(...sizes)).toBe(CHUNK);
      }
      const ck = await openCheckpoint(got.files);
      const want = tinyWeights(tinyConfigJson('llama'));
      for (const name of ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.norm.weight']) {
        expect(Array.from(await ck.readF32(name)), name).toEqual(Array.from(want.get(name)!.data));
      }
      expect(reads.length).toBeGreaterThan(3);
      expect(Math.max(...reads.filter((n) => n > 0))).toBeLessThan(weights.byteLength);
      // A read across chunk boundaries is exact.
      const src = await got.files.open('model.safetensors');
      expect(bytesEqual(await src.read(CHUNK - 7, 3 * CHUNK + 11), weights.subarray(CHUNK - 7, 4 * CHUNK + 4))).toBe(true);
    });

    it(`${label}: a resume continues the stored chunks, at a chunk boundary or inside one, and verifies the whole file`, async () => {
      const repo = llamaRepo();
      const weights = repo.get('model.safetensors')!;
      hub.repos.set('tiny/llama@main', repo);
      const key = cacheKey(`${hub.endpoint}/tiny/llama/resolve/main/`, 'model.safetensors');
      for (const after of [5 * CHUNK + 1234, 6 * CHUNK]) {
        const { cache, chunkSizes } = await make();
        await cache.delete(key);
        hub.dropNext = { file: 'model.safetensors', after };
        const e = await rejection(downloadModel('tiny/llama', opts({ cache })));
        expect(e, `drop after ${after}`).toBeInstanceOf(DownloadInterruptedError);
        const partial = (await cache.getPartial(key))!;
        expect(partial.size).toBe(after);
        expect(bytesEqual(await readAll(partial.source), weights.subarray(0, after))).toBe(true);
        const kept = await chunkSizes(key);
        if (kept) expect(kept).toEqual(after % CHUNK ? [...Array(Math.floor(after / CHUNK)).fill(CHUNK), after % CHUNK] : Array(after / CHUNK).fill(CHUNK));

        // The server vouches for the sha256 (X-Linked-ETag): the resumed digest must cover the kept bytes too.
        const got = await downloadModel('tiny/llama', opts({ cache }));
        expect(gets('model.safetensors').at(-1)!.range).toBe(`bytes=${after}-`);
        expect(gets('model.safetensors').at(-1)!.status).toBe(206);
        expect(await cache.getPartial(key)).toBeNull();
        await expectFiles(got.files, repo);
        const sizes = await chunkSizes(key);
        if (sizes) {
          expect(sizes.reduce((a, b) => a + b, 0)).toBe(weights.byteLength);
          expect(Math.max(...sizes)).toBeLessThanOrEqual(CHUNK);
        }
        expect((await openCheckpoint(got.files)).config.architecture).toBe('llama');
      }
    });
  }

  it('a resumed download whose kept bytes are corrupt fails the sha256 check, naming the file, and caches nothing', async () => {
    const repo = llamaRepo();
    hub.repos.set('tiny/llama@main', repo);
    const cache = memoryDownloadCache({ chunkBytes: CHUNK });
    const key = cacheKey(`${hub.endpoint}/tiny/llama/resolve/main/`, 'model.safetensors');
    hub.dropNext = { file: 'model.safetensors', after: 3 * CHUNK + 5 };
    await rejection(downloadModel('tiny/llama', opts({ cache })));
    cache.chunks(key)[1][17] ^= 0xff; // damage a kept chunk
    const e = await rejection(downloadModel('tiny/llama', opts({ cache })));
    expect(e).toBeInstanceOf(DownloadIntegrityError);
    expect(e.message).toMatch(/^model\.safetensors: sha256 mismatch/);
    expect(await cache.get(key)).toBeNull();
    expect(await cache.getPartial(key)).toBeNull();
    await expectFiles((await downloadModel('tiny/llama', opts({ cache }))).files, repo);
  });

  it('reports missing tokenizer files instead of failing, and loads from a plain URL base', async () => {
    const repo = llamaRepo({ tokenizer: false });
    hub.repos.set('tiny/notok@rev1', repo);
    const got = await downloadModel(`${hub.endpoint}/tiny/notok/resolve/rev1`, opts());
    expect(got.source).toEqual({ kind: 'url', baseUrl: `${hub.endpoint}/tiny/notok/resolve/rev1/` });
    expect(got.absent).toEqual(['generation_config.json', 'tokenizer.json', 'tokenizer_config.json']);
    await expectFiles(got.files, repo);
    expect((await openCheckpoint(got.files)).tokenizerJson).toBeNull();
  });
});

describe('diskDownloadCache', () => {
  it('maps URL keys to readable paths inside the cache directory', () => {
    expect(keyPath('/c', 'https://huggingface.co/org/name/resolve/refs%2Fpr%2F1/model.safetensors')).toBe(
      '/c/huggingface.co/org/name/resolve/refs%2Fpr%2F1/model.safetensors',
    );
    expect(keyPath('/c', 'http://127.0.0.1:8080/a/../b')).toBe('/c/127.0.0.1%3A8080/b'); // URL parsing normalises ..
    // An encoded slash stays inside one segment: no way out of the cache directory.
    expect(keyPath('/c', 'http://h/a%2F..%2F..%2Fetc/x')).toBe('/c/h/a%2F..%2F..%2Fetc/x');
    expect(keyPath('/c', 'not a url')).toMatch(/^\/c\/_keys\/[0-9a-f]{64}$/);
  });

  it('cuts a partial back to the length its meta records, and discards one shorter than that', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-cache-'));
    try {
      const cache = diskDownloadCache(dir);
      const key = 'https://h/o/n/resolve/main/f.bin';
      const w = await cache.write(key, { url: key, etag: '"x"', total: 10 }, 0);
      await w.append(new Uint8Array([1, 2]));
      await w.append(new Uint8Array([3]));
      await w.keep();
      const p = await cache.getPartial(key);
      expect(p).toMatchObject({ url: key, etag: '"x"', total: 10, size: 3 });
      expect(await readAll(p!.source)).toEqual(new Uint8Array([1, 2, 3]));
      // Bytes past the recorded length (a crash before the meta was written) are not trusted.
      writeFileSync(`${cache.pathOf(key)}.partial`, new Uint8Array([1, 2, 3, 9]));
      expect((await cache.getPartial(key))?.size).toBe(3);
      expect(readFileSync(`${cache.pathOf(key)}.partial`)).toEqual(Buffer.from([1, 2, 3]));
      // Fewer bytes than recorded: not safe to resume.
      writeFileSync(`${cache.pathOf(key)}.partial`, new Uint8Array([1, 2]));
      expect(await cache.getPartial(key)).toBeNull();
      expect(existsSync(`${cache.pathOf(key)}.partial`)).toBe(false);

      const whole = await cache.write(key, { url: key, total: 10 }, 0);
      await whole.append(new Uint8Array(10).fill(7));
      expect(await cache.get(key)).toBeNull(); // not complete until committed
      await whole.commit({ url: key, size: 10 });
      expect(existsSync(`${cache.pathOf(key)}.partial`)).toBe(false);
      const got = (await cache.get(key))!;
      expect(got.size).toBe(10);
      expect(await got.read(8, 2)).toEqual(new Uint8Array([7, 7]));
      await cache.delete(key);
      expect(await cache.get(key)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
