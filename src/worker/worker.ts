// The webtune worker: owns the GPU device, the model, generation and training. Exposed to the page with comlink.
import * as Comlink from 'comlink';
import { acquireBrowserContext } from '../gpu/browser';
import type { ExportedFiles, WorkerApi } from './api';
import { ModelEngine } from './engine';
import { TrainingService } from './train';

const engine = new ModelEngine(() => acquireBrowserContext({ label: 'webtune-worker' }));
const training = new TrainingService(engine);

/** Close a callback's message channel once its call is over (comlink proxies are not garbage-collected). */
async function releasing<T>(callback: unknown, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } finally {
    const release = (callback as { [Comlink.releaseProxy]?: () => void } | undefined)?.[Comlink.releaseProxy];
    if (typeof release === 'function') release();
  }
}

/** Exported files move to the page without a copy. */
const transferred = async (files: Promise<ExportedFiles>): Promise<ExportedFiles> => {
  const f = await files;
  return Comlink.transfer(f, f.files.map((x) => x.bytes));
};

const api: WorkerApi = {
  probeGpu: () => engine.probeGpu(),
  loadModel: (source, onProgress) => releasing(onProgress, () => engine.loadModel(source, onProgress)),
  cancelLoad: () => engine.cancelLoad(),
  generate: (prompt, options, onToken) => releasing(onToken, () => engine.generate(prompt, options, onToken)),
  stopGeneration: () => engine.stopGeneration(),
  loadDataset: (source, options) => training.loadDataset(source, options),
  planMemory: (settings) => training.planMemory(settings),
  startTraining: (settings, onMessage) => releasing(onMessage, () => training.startTraining(settings, onMessage)),
  pauseTraining: () => training.pauseTraining(),
  resumeTraining: () => training.resumeTraining(),
  stopTraining: () => training.stopTraining(),
  exportAdapter: () => transferred(training.exportAdapter()),
  stopAndSave: () => transferred(training.stopAndSave()),
};

Comlink.expose(api);
