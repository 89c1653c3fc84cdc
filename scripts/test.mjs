#!/usr/bin/env node
// The README's test command (`npm test`): type-check, build the app (the e2e tests drive the built
// site), then run every test with the WebGPU environment set, and print one totals line:
//   N passed, N failed, N skipped
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { webgpuEnv } from './webgpu-env.mjs';

const env = webgpuEnv();
const bin = (name) => `node_modules/.bin/${name}`;
const step = (label, cmd, args) => {
  process.stdout.write(`\n== ${label}\n`);
  const r = spawnSync(cmd, args, { env, stdio: 'inherit' });
  return r.status === 0;
};

let setupFailed = 0;
if (!step('type-check', bin('tsc'), ['-p', 'tsconfig.json'])) setupFailed++;
if (!step('svelte-check', bin('svelte-check'), ['--tsconfig', './tsconfig.json', '--threshold', 'error'])) setupFailed++;
if (!step('build', bin('vite'), ['build', '--logLevel', 'warn'])) setupFailed++;

rmSync('.test-results', { recursive: true, force: true });
mkdirSync('.test-results', { recursive: true });
const args = ['run', ...process.argv.slice(2)];
step('tests', bin('vitest'), args);

let passed = 0;
let failed = setupFailed;
let skipped = 0;
const file = '.test-results/vitest.json';
if (existsSync(file)) {
  const r = JSON.parse(readFileSync(file, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  // A file that fails to load has no tests but is a failure.
  for (const suite of r.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).length === 0) failed++;
  }
} else {
  failed++;
  process.stdout.write('vitest wrote no results\n');
}
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
