// The page's handle on the worker: a comlink proxy typed by WorkerApi.
import * as Comlink from 'comlink';
import type { WorkerApi } from '../worker/api';

let remote: Comlink.Remote<WorkerApi> | null = null;

export function workerApi(): Comlink.Remote<WorkerApi> {
  if (!remote) {
    const worker = new Worker(new URL('../worker/worker.ts', import.meta.url), { type: 'module', name: 'webtune' });
    remote = Comlink.wrap<WorkerApi>(worker);
  }
  return remote;
}
