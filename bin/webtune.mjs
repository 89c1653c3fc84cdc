#!/usr/bin/env node
// The `webtune` command. Sets the WebGPU environment (SwiftShader fallback on machines without a
// GPU; see scripts/webgpu-env.mjs) before Node starts, then runs the TypeScript CLI through tsx.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { webgpuEnv } from '../scripts/webgpu-env.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// tsx resolved from this checkout (not from the caller's working directory).
const tsx = import.meta.resolve('tsx');
const child = spawn(process.execPath, ['--import', tsx, join(root, 'src', 'cli', 'main.ts'), ...process.argv.slice(2)], {
  env: webgpuEnv({ ...process.env, WEBTUNE_QUIET: process.env.WEBTUNE_QUIET ?? '1' }),
  stdio: 'inherit',
});
// Forward interrupts to the CLI, which saves a resumable state before exiting (a terminal's Ctrl-C
// reaches both processes; the CLI treats signals within a moment of each other as one).
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
