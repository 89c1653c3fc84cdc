// The page's handle on the worker: a comlink proxy typed by WorkerApi, plus what only the page knows
// (its own address, hence the demo folder's; a Hub endpoint given in the page's URL).
import * as Comlink from 'comlink';
import type { TestHooks, WorkerApi } from '../worker/api';

let remote: Comlink.Remote<WorkerApi> | null = null;

/**
 * Test hooks: a page opened with `?test-hooks` names its worker "webtune test-hooks", which makes the
 * worker expose `__testDestroyDevice()` (GPUDevice.destroy(), as a driver reset would) and
 * `__testFailNextSave()` (the next checkpoint write fails with a QuotaExceededError) and
 * `__testSetDownloadChunkBytes(n)` (downloads stored in n-byte chunks), and puts them on
 * `window.__webtuneTestHooks` for the e2e tests (persistence, storage). Without the parameter none exists.
 */
export function testHooksEnabled(): boolean {
  return new URLSearchParams(location.search).has('test-hooks');
}

export function workerApi(): Comlink.Remote<WorkerApi> {
  if (!remote) {
    const hooks = testHooksEnabled();
    const worker = new Worker(new URL('../worker/worker.ts', import.meta.url), { type: 'module', name: hooks ? 'webtune test-hooks' : 'webtune' });
    const api = Comlink.wrap<WorkerApi>(worker);
    remote = api;
    if (hooks) {
      const h = api as unknown as Comlink.Remote<TestHooks>;
      (window as unknown as { __webtuneTestHooks: unknown }).__webtuneTestHooks = {
        destroyDevice: () => h.__testDestroyDevice(),
        failNextSave: () => h.__testFailNextSave(),
        downloadChunkBytes: (bytes: number) => h.__testSetDownloadChunkBytes(bytes),
      };
    }
  }
  return remote;
}

/** The built-in demo model's folder, next to the page (public/demo/ in the repository). */
export function demoBaseUrl(): string {
  return new URL('demo/', document.baseURI).href;
}

/**
 * A Hub endpoint other than https://huggingface.co, from the page's URL: `?hub=http://127.0.0.1:8080`
 * (a mirror, or a local Hub-shaped server in tests). Only http(s) addresses are taken.
 */
export function hubEndpointFromPage(): string | undefined {
  const v = new URLSearchParams(location.search).get('hub');
  if (!v) return undefined;
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href.replace(/\/+$/, '') : undefined;
  } catch {
    return undefined;
  }
}
