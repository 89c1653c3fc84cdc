// The webtune worker: owns the GPU device, the model, generation, training and the browser's store
// (runs, checkpoints, cached models). Exposed to the page with comlink.
import * as Comlink from 'comlink';
import { acquireBrowserContext } from '../gpu/browser';
import { memoryDownloadCache } from '../io/hub';
import { storeDownloadCache } from '../store';
import type { ExportedFiles, TestHooks, WorkerApi } from './api';
import { AdapterLibrary } from './adapters';
import { ModelEngine } from './engine';
import { Stores } from './persist';
import { StoreService } from './storage';
import { TrainingService } from './train';

const stores = new Stores();
/** Download chunk size in the store (a test hook makes it small); undefined: the store's default. */
let downloadChunkBytes: number | undefined;
const engine = new ModelEngine(() => acquireBrowserContext({ label: 'webtune-worker' }), {
  // Hub / URL downloads are kept in the store, so they count in the Storage panel and load offline.
  cache: async () => {
    try {
      return storeDownloadCache(await stores.get(), { chunkBytes: downloadChunkBytes });
    } catch {
      return memoryDownloadCache(); // no IndexedDB here (private mode): downloads are not kept
    }
  },
});
const training = new TrainingService(engine, stores);
const storage = new StoreService(stores, () => training.liveRunId);
const adapters = new AdapterLibrary(engine, stores, training);

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
  startTraining: (settings, onMessage, options) => releasing(onMessage, () => training.startTraining(settings, onMessage, options)),
  resumeRun: (runId, onMessage, options) => releasing(onMessage, () => training.resumeRun(runId, onMessage, options)),
  pauseTraining: () => training.pauseTraining(),
  resumeTraining: () => training.resumeTraining(),
  stopTraining: () => training.stopTraining(),
  exportAdapter: () => transferred(training.exportAdapter()),
  stopAndSave: () => transferred(training.stopAndSave()),
  exportMerged: (options) => transferred(training.exportMerged(options)),
  exportOnnx: () => transferred(training.exportOnnx()),
  listRuns: () => storage.listRuns(),
  renameRun: (id, name) => storage.renameRun(id, name),
  deleteRun: (id) => storage.deleteRun(id),
  exportRun: (id) => storage.exportRun(id),
  importRun: (file) => storage.importRun(file),
  runHolder: (id) => storage.runHolder(id),
  storageReport: () => storage.storageReport(),
  freeStorage: (items) => storage.freeStorage(items),
  listAdapters: () => adapters.listAdapters(),
  importAdapter: (files, name) => adapters.importAdapter(files, name),
  exportRunAdapter: (runId) => transferred(adapters.exportRunAdapter(runId)),
  exportRunMerged: (runId, format) => transferred(adapters.exportRunMerged(runId, format)),
};

// The page names its worker "webtune test-hooks" when opened with ?test-hooks (e2e tests only).
if (self.name.includes('test-hooks')) {
  const hooks: TestHooks = {
    __testDestroyDevice: () => engine.testDestroyDevice(),
    __testFailNextSave: async () => {
      stores.failNextSave = true;
    },
    __testSetDownloadChunkBytes: async (bytes) => {
      downloadChunkBytes = bytes;
    },
  };
  Object.assign(api, hooks);
}

Comlink.expose(api);
