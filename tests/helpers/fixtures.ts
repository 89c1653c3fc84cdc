// The shared third-party fixtures (../shared/fixtures): read in place, never copied into the repo.
// Tests that need them skip with a clear message when the folder is absent.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const FIXTURES = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures');

export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

export function hasFixture(...parts: string[]): boolean {
  return existsSync(fixture(...parts));
}

export const SKIP_FIXTURES_MESSAGE = `../shared/fixtures not found at ${FIXTURES}: skipping tests on real third-party files`;
