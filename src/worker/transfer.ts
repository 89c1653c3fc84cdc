// Exported files as the page receives them: each file's bytes in an ArrayBuffer of its own, so the
// worker can transfer them (Comlink.transfer) instead of copying.
import type { ExportedFiles } from './api';

/** Bytes in a buffer of their own (a string as UTF-8). */
export function ownBuffer(x: string | Uint8Array): ArrayBuffer {
  const u = typeof x === 'string' ? new TextEncoder().encode(x) : x;
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? (u.buffer as ArrayBuffer) : (u.slice().buffer as ArrayBuffer);
}

/** A folder's files (name → contents) as ExportedFiles. */
export function exportedFiles(kind: ExportedFiles['kind'], step: number, files: Record<string, string | Uint8Array>): ExportedFiles {
  return { kind, step, files: Object.entries(files).map(([name, data]) => ({ name, bytes: ownBuffer(data) })) };
}
