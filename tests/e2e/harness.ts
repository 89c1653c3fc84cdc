// End-to-end harness: real headless Chromium (Debian's /usr/bin/chromium through playwright-core)
// with real WebGPU on SwiftShader, against the built app (vite preview over dist/) or, for
// in-browser kernel checks, the Vite dev server over the repository.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { createServer, preview, type PreviewServer, type ViteDevServer } from 'vite';

export const root = join(import.meta.dirname, '..', '..');

const CHROMIUM = process.env.WEBTUNE_CHROMIUM ?? '/usr/bin/chromium';

/** Flags from shared/docs/webgpu-on-cpu.md that give headless Chromium a (SwiftShader) WebGPU adapter. */
export const WEBGPU_FLAGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--enable-unsafe-swiftshader',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser(opts: { webgpu?: boolean } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with apt-get install -y chromium (the e2e tests need it)`);
  }
  const args =
    opts.webgpu === false
      ? ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu']
      : WEBGPU_FLAGS;
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/** Serve the production build (dist/, made by `npm test`'s build step) on a free localhost port. */
export async function serveBuild(): Promise<{ url: string; close: () => Promise<void> }> {
  if (!existsSync(join(root, 'dist', 'index.html'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm test does it)');
  }
  const server: PreviewServer = await preview({
    root,
    logLevel: 'warn',
    preview: { port: 0, host: '127.0.0.1', strictPort: false },
  });
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('vite preview did not report a URL');
  return { url, close: () => server.close() };
}

/** Serve the repository through the Vite dev server (for test pages under tests/e2e/pages). */
export async function serveDev(): Promise<{ url: string; close: () => Promise<void> }> {
  const server: ViteDevServer = await createServer({
    root,
    logLevel: 'warn',
    server: { port: 0, host: '127.0.0.1', strictPort: false, hmr: false },
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  await server.listen();
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('vite dev server did not report a URL');
  return { url, close: () => server.close() };
}

/**
 * For one test file: the production build served and a browser with WebGPU launched before its tests,
 * both closed after them. Read `url` and `browser` inside the tests (they exist from beforeAll on).
 */
export function useBuiltSite(): { readonly url: string; readonly browser: Browser } {
  let site: { url: string; close: () => Promise<void> } | null = null;
  let browser: Browser | null = null;
  beforeAll(async () => {
    site = await serveBuild();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });
  const ready = <T>(v: T | null, what: string): T => {
    if (v === null) throw new Error(`useBuiltSite: the ${what} exists only inside tests (after beforeAll)`);
    return v;
  };
  return {
    get url() {
      return ready(site, 'site').url;
    },
    get browser() {
      return ready(browser, 'browser');
    },
  };
}
