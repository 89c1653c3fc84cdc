// A model folder, wherever it lives: a local directory (Node), files picked or dropped in the
// browser, or a download cache. Files are opened lazily as ByteSources.
import { blobSource, bytesSource, type ByteSource } from './bytes';

export interface ModelFiles {
  /** Shown in messages: a path, a URL or "dropped files". */
  readonly name: string;
  has(file: string): boolean;
  list(): string[];
  open(file: string): Promise<ByteSource>;
}

export class MissingFileError extends Error {
  override name = 'MissingFileError';
  constructor(
    readonly folder: string,
    readonly file: string,
    hint = '',
  ) {
    super(`${folder}: ${file} is missing${hint ? ` (${hint})` : ''}`);
  }
}

export async function readText(files: ModelFiles, file: string): Promise<string> {
  const src = await files.open(file);
  return new TextDecoder().decode(await src.read(0, src.size));
}

export async function readTextIfPresent(files: ModelFiles, file: string): Promise<string | null> {
  return files.has(file) ? readText(files, file) : null;
}

/** Files held in memory (tests, and bytes restored from a cache). */
export function memoryFiles(name: string, entries: Record<string, Uint8Array | string>): ModelFiles {
  const enc = new TextEncoder();
  const map = new Map(Object.entries(entries).map(([k, v]) => [k, typeof v === 'string' ? enc.encode(v) : v]));
  return {
    name,
    has: (f) => map.has(f),
    list: () => [...map.keys()],
    async open(f) {
      const b = map.get(f);
      if (!b) throw new MissingFileError(name, f);
      return bytesSource(f, b);
    },
  };
}

/** Browser: files from a folder picker / drag-and-drop (File objects; paths relative to the folder). */
export function blobFiles(name: string, files: Iterable<File>): ModelFiles {
  const map = new Map<string, File>();
  for (const f of files) {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
    // Keep the path below the picked folder: "folder/model.safetensors" → "model.safetensors".
    const short = rel.includes('/') ? rel.slice(rel.indexOf('/') + 1) : rel;
    map.set(short, f);
  }
  return {
    name,
    has: (f) => map.has(f),
    list: () => [...map.keys()],
    async open(f) {
      const b = map.get(f);
      if (!b) throw new MissingFileError(name, f);
      return blobSource(f, b);
    },
  };
}
