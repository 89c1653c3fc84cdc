// Shared pieces of the command-line front door: usage errors, logging to stderr, number flags.
export class UsageError extends Error {
  override name = 'UsageError';
}

export const log = (line: string): void => void process.stderr.write(`${line}\n`);

export function num(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`);
  return n;
}
