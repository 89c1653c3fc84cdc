// Node: a model folder on disk, read tensor by tensor through a file handle.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { checkRange, type ByteSource } from './bytes';
import { MissingFileError, type ModelFiles } from './files';

function walk(dir: string, root = dir, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, root, out);
    else out.push(relative(root, p));
  }
  return out;
}

export function fileSource(path: string, name = path): ByteSource {
  const size = statSync(path).size;
  return {
    name,
    size,
    async read(offset, length) {
      checkRange(name, size, offset, length);
      const fh = await open(path, 'r');
      try {
        const buf = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
          if (bytesRead === 0) throw new RangeError(`${name}: file shrank while reading`);
          done += bytesRead;
        }
        return buf;
      } finally {
        await fh.close();
      }
    },
  };
}

export function directoryFiles(dir: string): ModelFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new MissingFileError(dir, '(folder)', 'not a directory');
  const files = new Set(walk(dir));
  return {
    name: dir,
    has: (f) => files.has(f),
    list: () => [...files],
    async open(f) {
      if (!files.has(f)) throw new MissingFileError(dir, f);
      return fileSource(join(dir, f), join(dir, f));
    },
  };
}
