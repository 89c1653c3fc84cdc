// The webtune worker: owns the GPU device, the model and generation. Exposed to the page with comlink.
import * as Comlink from 'comlink';
import { acquireBrowserContext } from '../gpu/browser';
import type { WorkerApi } from './api';
import { ModelEngine } from './engine';

const engine = new ModelEngine(() => acquireBrowserContext({ label: 'webtune-worker' }));

/** Close a callback's message channel once its call is over (comlink proxies are not garbage-collected). */
async function releasing<T>(callback: unknown, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } finally {
    const release = (callback as { [Comlink.releaseProxy]?: () => void } | undefined)?.[Comlink.releaseProxy];
    if (typeof release === 'function') release();
  }
}

const api: WorkerApi = {
  probeGpu: () => engine.probeGpu(),
  loadModel: (source, onProgress) => releasing(onProgress, () => engine.loadModel(source, onProgress)),
  cancelLoad: () => engine.cancelLoad(),
  generate: (prompt, options, onToken) => releasing(onToken, () => engine.generate(prompt, options, onToken)),
  stopGeneration: () => engine.stopGeneration(),
};

Comlink.expose(api);
