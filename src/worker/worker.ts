// The webtune worker: owns the GPU device. Exposed to the page with comlink.
import * as Comlink from 'comlink';
import { acquireBrowserContext } from '../gpu/browser';
import type { GpuContext } from '../gpu/context';
import type { GpuReport, GpuUnavailable, WorkerApi } from './api';

let context: Promise<GpuContext> | null = null;

function gpuContext(): Promise<GpuContext> {
  context ??= acquireBrowserContext({ label: 'webtune-worker' }).catch((e) => {
    context = null;
    throw e;
  });
  return context;
}

const api: WorkerApi = {
  async probeGpu(): Promise<GpuReport | GpuUnavailable> {
    try {
      const ctx = await gpuContext();
      return { ok: true, adapter: ctx.summary };
    } catch (e) {
      const err = e as Error;
      return { ok: false, name: err.name, message: err.message };
    }
  },
};

Comlink.expose(api);
