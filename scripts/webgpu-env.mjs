#!/usr/bin/env node
// Launcher: run a command with the environment Dawn needs to find a Vulkan driver.
//   node scripts/webgpu-env.mjs <command> [args…]
// If a real GPU adapter is found without help, nothing is changed. Otherwise, on machines without
// a GPU, fall back to SwiftShader (the CPU Vulkan driver Debian's `chromium` package ships) and say so.
// The dynamic linker reads LD_LIBRARY_PATH only at process start, hence a launcher and not code.
import { spawnSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export function webgpuEnv(base = process.env) {
  const env = { ...base };
  if (env.WEBTUNE_WEBGPU_ENV === 'done') return env;
  env.WEBTUNE_WEBGPU_ENV = 'done';
  env.XDG_RUNTIME_DIR ??= '/tmp';
  if (env.VK_ICD_FILENAMES) return env;
  const probe = spawnSync(
    process.execPath,
    ['-e', "import('webgpu').then(async m=>{const a=await m.create([]).requestAdapter();process.stdout.write(a?'yes':'no');process.exit(0)}).catch(()=>{process.stdout.write('no');process.exit(0)})"],
    { env, encoding: 'utf8', timeout: 30000 },
  );
  if (probe.stdout === 'yes') return env;
  const dir = ['/usr/lib/chromium', '/usr/lib64/chromium'].find((d) => existsSync(`${d}/vk_swiftshader_icd.json`));
  if (!dir) {
    process.stderr.write(
      'webtune: no WebGPU adapter found and no SwiftShader fallback (install Debian\'s `chromium` package: apt-get install -y chromium)\n',
    );
    return env;
  }
  if (env.WEBTUNE_QUIET !== '1') process.stderr.write(`webtune: no GPU adapter found; using the SwiftShader CPU fallback from ${dir}\n`);
  env.LD_LIBRARY_PATH = env.LD_LIBRARY_PATH ? `${dir}:${env.LD_LIBRARY_PATH}` : dir;
  env.VK_ICD_FILENAMES = `${dir}/vk_swiftshader_icd.json`;
  env.WEBTUNE_WEBGPU_FALLBACK = 'swiftshader';
  return env;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [cmd, ...args] = process.argv.slice(2);
  if (!cmd) {
    process.stderr.write('usage: node scripts/webgpu-env.mjs <command> [args…]\n');
    process.exit(2);
  }
  const child = spawn(cmd, args, { env: webgpuEnv(), stdio: 'inherit' });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
