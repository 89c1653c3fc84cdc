// Where a model's bytes come from in the browser: the demo folder served with the app, files the
// person picked or dropped, or a download from the Hub / any http(s) folder (cached in IndexedDB so
// a second load works offline).
import { blobSource } from '../io/bytes';
import { MissingFileError, type ModelFiles } from '../io/files';
import { downloadModel, memoryDownloadCache, resolveSource, type DownloadCache, type DownloadProgress } from '../io/hub';
import type { ModelSource } from './api';
import { ModelFolderError } from './errors';

export interface ResolvedFiles {
  files: ModelFiles;
  /** Shown to the person: "demo", the folder's name, the Hub id or the URL. */
  name: string;
  fromCache: boolean;
  notes: string[];
}

export interface SourceOptions {
  signal?: AbortSignal;
  onDownload?: (p: DownloadProgress) => void;
  /** The download cache for Hub / URL sources (worker.ts passes webtune's IndexedDB store; default: memory only). */
  cache?: () => DownloadCache | Promise<DownloadCache>;
}

/** The files of the built-in demo model (public/demo/); anything else is answered 404 without asking. */
export const DEMO_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];

export async function resolveModelFiles(source: ModelSource, o: SourceOptions = {}): Promise<ResolvedFiles> {
  switch (source.kind) {
    case 'files':
      return { ...pickedFiles(source.files, source.paths), fromCache: false, notes: [] };
    case 'demo': {
      const baseUrl = new URL(source.baseUrl ?? '../demo/', self.location.href).href.replace(/\/?$/, '/');
      // A static host may answer unknown paths with index.html (SPA fallback): only ask for what is there.
      const demoFetch: typeof fetch = (input, init) => {
        const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
        const file = url.startsWith(baseUrl) ? decodeURIComponent(url.slice(baseUrl.length)) : '';
        if (!DEMO_FILES.includes(file)) return Promise.resolve(new Response(null, { status: 404, statusText: 'Not Found' }));
        return fetch(input, init);
      };
      // The browser's HTTP cache keeps the demo; IndexedDB would keep a stale copy when it is replaced.
      const got = await downloadModel(
        { kind: 'url', baseUrl },
        { fetch: demoFetch, cache: memoryDownloadCache(), signal: o.signal, onProgress: o.onDownload, retries: 1 },
      );
      return { files: got.files, name: 'demo', fromCache: false, notes: [] };
    }
    case 'hub':
    case 'url': {
      const spec = source.kind === 'hub' ? source.id : source.url;
      const src = resolveSource(spec, { endpoint: source.kind === 'hub' ? source.endpoint : undefined });
      const got = await downloadModel(src, {
        cache: await (o.cache ?? memoryDownloadCache)(),
        token: source.kind === 'hub' ? source.token || undefined : undefined,
        signal: o.signal,
        onProgress: o.onDownload,
        retries: 2,
      });
      const notes = got.absent.includes('tokenizer.json') ? ['no tokenizer.json on the server: prompts must be given as token ids'] : [];
      return { files: got.files, name: src.kind === 'hub' ? src.repo + (src.revision === 'main' ? '' : `@${src.revision}`) : src.baseUrl, fromCache: got.fromCache, notes };
    }
  }
}

/**
 * Picked or dropped files → ModelFiles, paths relative to the model folder. A folder pick gives
 * "folder/config.json": when every path shares one first segment, it is the folder and is dropped.
 * Hidden files (".git/…", ".DS_Store") are ignored.
 */
export function pickedFiles(files: readonly File[], paths?: readonly string[]): { files: ModelFiles; name: string } {
  if (files.length === 0) throw new ModelFolderError('no files were given: pick a model folder (config.json, model.safetensors, tokenizer.json)');
  let entries = files.map((f, i) => ({ path: (paths?.[i] || f.name).replace(/^\/+/, ''), file: f }));
  const first = entries[0].path.split('/')[0];
  let name = files.length === 1 ? files[0].name : `${files.length} files`;
  if (entries.every((e) => e.path.includes('/') && e.path.split('/')[0] === first)) {
    entries = entries.map((e) => ({ ...e, path: e.path.slice(first.length + 1) }));
    name = first;
  }
  const map = new Map<string, File>();
  for (const e of entries) {
    if (e.path.split('/').some((seg) => seg.startsWith('.'))) continue;
    map.set(e.path, e.file);
  }
  return {
    name,
    files: {
      name,
      has: (f) => map.has(f),
      list: () => [...map.keys()],
      async open(f) {
        const b = map.get(f);
        if (!b) throw new MissingFileError(name, f);
        return blobSource(f, b);
      },
    },
  };
}
