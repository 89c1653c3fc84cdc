// Every compute entry point in shaders/ must be exercised by a kernel test. A test file covers an
// entry point by naming it (the host modules export a KernelSpec per entry point, and the tests
// dispatch them); a new entry point without a test fails here.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

function entryPoints(): { shader: string; entry: string }[] {
  const out: { shader: string; entry: string }[] = [];
  for (const f of readdirSync(join(root, 'shaders')).filter((f) => f.endsWith('.wgsl'))) {
    const src = readFileSync(join(root, 'shaders', f), 'utf8').replace(/\/\/.*$/gm, '');
    for (const m of src.matchAll(/@compute\s*(?:@workgroup_size\([^)]*\)\s*)?fn\s+(\w+)/g)) {
      out.push({ shader: f, entry: m[1] });
    }
  }
  return out;
}

function testSources(): string {
  const dirs = ['tests/kernels', 'tests/e2e'];
  return dirs
    .flatMap((d) =>
      readdirSync(join(root, d))
        .filter((f) => f.endsWith('.ts') && f !== 'coverage.test.ts')
        .map((f) => readFileSync(join(root, d, f), 'utf8')),
    )
    .join('\n');
}

describe('kernel test coverage', () => {
  const eps = entryPoints();
  it('finds the entry points', () => {
    expect(eps.length).toBeGreaterThan(0);
  });
  it('entry points are named <op>_<pass>, never main', () => {
    for (const { shader, entry } of eps) expect(entry, `${shader}: ${entry}`).not.toBe('main');
  });
  it('every entry point in shaders/ is named by a kernel test', () => {
    const tests = testSources();
    const missing = eps.filter(({ entry }) => !new RegExp(`\\b${entry}\\b`).test(tests));
    expect(missing.map((m) => `${m.shader}:${m.entry}`), 'entry points without a test').toEqual([]);
  });
});
