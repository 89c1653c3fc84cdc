// The Playground's LoRA adapters for the loaded model, kept side by side: this page's current or last
// run (its adapter is on the GPU already), every stored LoRA run of the same model, and PEFT adapters
// imported from files. An imported adapter is kept as a run whose status is 'done' and whose
// checkpoint holds the LoRA tensors (named as Trainer.snapshot() names them), so renaming, deleting
// and archive export treat it like any run. Stored adapters go to the GPU on first use; the last few
// used stay there, and all of them go when the model changes. Independent of comlink.
import type { ModelFiles } from '../io/files';
import { blobSource } from '../io/bytes';
import { AdapterError, readPeftAdapter, type PeftAdapter } from '../io/peft';
import { openSafetensors } from '../io/safetensors';
import type { AdapterSet } from '../model/adapters';
import type { GpuModel } from '../model/gpu-model';
import {
  createRun,
  deleteRun,
  getRun,
  latestOf,
  listCheckpoints,
  listRuns,
  loadCheckpoint,
  loadLatestCheckpoint,
  RunNotFoundError,
  saveCheckpoint,
  type CheckpointInfo,
  type RunRecord,
} from '../store';
import {
  adapterFromState,
  adapterStateTensors,
  checkAdapterFits,
  linearModules,
  uploadAdapter,
  writePeftAdapter,
  type UploadedAdapter,
} from '../tune/adapter-io';
import { mergedOnnx, mergeLora } from '../tune/merge';
import { TRAIN_STATE_VERSION } from '../tune/trainer';
import type { AdapterApi, AdapterInfo, ExportedFiles, ModelInfo, StoredRunConfig, TrainSettings } from './api';
import type { AdapterHooks, Loaded, ModelEngine } from './engine';
import { NoModelError } from './errors';
import { DEFAULT_AUTOSAVE_SETTINGS, storedConfig, type Stores } from './persist';
import type { TrainingService } from './train';
import { exportedFiles } from './transfer';

/** Stored adapters kept on the GPU at most (each is small: the demo's all-linear r=8 is 131 KB). */
const CACHED = 3;

/** The dataset name an imported adapter's run shows. */
export const IMPORTED_DATASET = 'imported PEFT adapter';

const CONFIG_FILE = 'adapter_config.json';
const WEIGHTS_FILE = 'adapter_model.safetensors';

interface CachedAdapter {
  runId: string;
  /** The checkpoint it was read from: a newer one (the run was resumed) makes it stale. */
  checkpointId: string;
  /** The model it was uploaded for: a reload (another residency, a new device) makes it stale. */
  model: GpuModel;
  adapter: UploadedAdapter;
}

/** A stored run's config, when it trained LoRA on the loaded model. */
function loraRunOf(r: RunRecord, info: ModelInfo): StoredRunConfig | null {
  const cfg = storedConfig(r.config);
  if (!cfg || !fitsModel(cfg, info)) return null;
  return cfg.settings.method === 'lora' || cfg.settings.method === 'qlora' ? cfg : null;
}

function fitsModel(cfg: StoredRunConfig, info: ModelInfo): boolean {
  return cfg.modelName === info.name && (cfg.modelParameters === 0 || cfg.modelParameters === info.parameters);
}

function describe(id: string, runId: string | null, name: string, step: number, lora: { r: number; alpha: number }, imported: boolean): AdapterInfo {
  return {
    id,
    runId,
    name,
    step,
    label: imported ? `${name} (imported)` : `${name}, step ${step}`,
    kind: imported ? 'imported' : 'trained',
    r: lora.r,
    alpha: lora.alpha,
  };
}

export class AdapterLibrary implements AdapterApi, AdapterHooks {
  /** Uploaded stored adapters, least recently used first. */
  private cache: CachedAdapter[] = [];

  constructor(
    private readonly models: ModelEngine,
    private readonly stores: Stores,
    private readonly training: TrainingService,
  ) {
    models.adapterLibrary = this;
  }

  async listAdapters(): Promise<AdapterInfo[]> {
    const m = this.models.current;
    if (!m) return [];
    const live = this.training.liveAdapter();
    const found: { createdAt: number; info: AdapterInfo }[] = [];
    let liveRun: RunRecord | null = null;
    const { store } = await this.stores.tryGet();
    if (store) {
      const [runs, checkpoints] = await Promise.all([listRuns(store), listCheckpoints(store)]);
      const byRun = new Map<string, CheckpointInfo[]>();
      for (const c of checkpoints) byRun.set(c.runId, [...(byRun.get(c.runId) ?? []), c]);
      for (const r of runs) {
        if (live && r.id === live.runId) {
          liveRun = r;
          continue; // listed once, as 'live'
        }
        const cfg = loraRunOf(r, m.info);
        const ck = latestOf(byRun.get(r.id) ?? []);
        if (cfg && ck) found.push({ createdAt: r.createdAt, info: describe(r.id, r.id, r.name, ck.step, cfg.settings.lora, !!cfg.imported) });
      }
    }
    if (live && live.model === m) {
      const name = liveRun?.name ?? 'this page’s run (not kept in the browser)';
      found.push({ createdAt: liveRun?.createdAt ?? Date.now(), info: describe('live', live.runId, name, live.step, live.plan.config.lora!, false) });
    }
    return found.sort((a, b) => a.createdAt - b.createdAt).map((f) => f.info);
  }

  /** The adapter with this id on the GPU, for generation with the loaded model `m`. */
  async resolve(id: string, m: Loaded): Promise<AdapterSet> {
    const live = this.training.liveAdapter();
    if (live && live.runId === id && live.model === m) return live.plan;
    const store = await this.stores.get();
    const run = await getRun(store, id);
    if (!run) throw new RunNotFoundError(id);
    const cfg = storedConfig(run.config);
    if (!cfg) throw new AdapterError(`run "${run.name}" was written by another version of webtune: its adapter cannot be read here`);
    if (!fitsModel(cfg, m.info)) {
      throw new AdapterError(`run "${run.name}" was trained on ${cfg.modelName}, but ${m.info.name} is loaded: load that model to generate with its adapter`);
    }
    const info = latestOf(await listCheckpoints(store, id));
    if (!info) throw new AdapterError(`run "${run.name}" has no checkpoint yet, so there is no adapter to generate with`);

    this.dropStale(m.model);
    const hit = this.cache.find((c) => c.runId === id && c.checkpointId === info.id);
    if (hit) {
      this.cache = [...this.cache.filter((c) => c !== hit), hit];
      return hit.adapter;
    }
    const ck = await loadCheckpoint(store, info.id);
    const what = `run "${run.name}" (checkpoint of step ${ck.info.step})`;
    const adapter = await adapterFromState(ck.meta, ck.tensors, what);
    checkAdapterFits(adapter, linearModules(m.model), { config: `the settings of ${what}`, weights: `the tensors of ${what}` });
    // The model may have been reloaded while the checkpoint was read: upload for the one there now.
    this.dropStale(m.model);
    const uploaded = uploadAdapter(m.model.ctx, m.model, adapter, `adapter of run "${run.name}"`);
    this.cache.push({ runId: id, checkpointId: info.id, model: m.model, adapter: uploaded });
    // (A session may still hold an evicted set until its next generate replaces it; it never runs it again.)
    while (this.cache.length > CACHED) free(this.cache.shift()!);
    return uploaded;
  }

  /** The model is going away (or was reloaded): free every uploaded adapter. */
  release(): void {
    for (const c of this.cache.splice(0)) free(c);
  }

  private dropStale(model: GpuModel): void {
    const stale = this.cache.filter((c) => c.model !== model);
    if (!stale.length) return;
    this.cache = this.cache.filter((c) => c.model === model);
    for (const c of stale) free(c);
  }

  async importAdapter(files: File[], name?: string): Promise<AdapterInfo> {
    const m = this.models.current;
    if (!m) throw new NoModelError();
    const picked = pickPeftFiles(files);
    const adapter = await readPeftAdapter(picked.files);
    await checkTensorNames(picked.weightsFile, picked.weightsName);
    checkAdapterFits(adapter, linearModules(m.model), { config: picked.configName, weights: picked.weightsName });

    const store = await this.stores.get();
    const runName = name?.trim() || picked.folder || (await nextImportName(store));
    const config: StoredRunConfig = {
      settings: importedSettings(adapter, m.info.context),
      data: { lossOn: 'completion', validationPercent: 0, skipBadRows: false, pack: false },
      model: m.source,
      modelName: m.info.name,
      modelParameters: m.info.parameters,
      dataset: { name: IMPORTED_DATASET, reference: null },
      autosave: DEFAULT_AUTOSAVE_SETTINGS,
      imported: { files: [picked.configName, picked.weightsName], importedAt: Date.now(), baseModel: adapter.baseModel ?? null },
    };
    const run = await createRun(store, { name: runName, config, baseModel: m.info.name });
    // The tensors as a checkpoint of step 0 whose meta says the LoRA settings (no optimizer state: it
    // cannot be resumed, only generated with and exported). Without it, the run goes again.
    const meta = { version: TRAIN_STATE_VERSION, step: 0, config: { method: { method: 'lora' as const, lora: adapter.lora } }, history: [] };
    try {
      await saveCheckpoint(store, run.id, { meta, tensors: adapterStateTensors(adapter) }, { reason: 'import', run: { status: 'done' } });
    } catch (e) {
      await deleteRun(store, run.id).catch(() => {});
      throw e;
    }
    return describe(run.id, run.id, run.name, 0, adapter.lora, true);
  }

  async exportRunAdapter(runId: string): Promise<ExportedFiles> {
    const store = await this.stores.get();
    const run = await getRun(store, runId);
    if (!run) throw new RunNotFoundError(runId);
    const cfg = storedConfig(run.config);
    const ck = await loadLatestCheckpoint(store, runId);
    if (!ck) throw new AdapterError(`run "${run.name}" has no checkpoint yet, so there is no adapter to export`);
    const adapter = await adapterFromState(ck.meta, ck.tensors, `run "${run.name}" (checkpoint of step ${ck.info.step})`);
    // fan_in_fan_out follows the model: the loaded one's config when it is the run's, else the module names.
    const m = this.models.current;
    const c = m && cfg && fitsModel(cfg, m.info) ? m.ck.config : null;
    // An imported adapter names the base its files named; a trained one, the model it was trained on.
    const files = writePeftAdapter(c, adapter, cfg?.imported?.baseModel ?? cfg?.modelName ?? run.baseModel);
    return exportedFiles('peft', ck.info.step, files);
  }

  /**
   * A stored LoRA / QLoRA run's adapter (trained or imported) merged into the loaded model, which must
   * be the run's base: a plain Hugging Face model folder, or (`onnx`) that model as one model.onnx.
   * A QLoRA run merges into the 4-bit base it was trained on (NF4 as this page quantizes it, dequantized).
   */
  async exportRunMerged(runId: string, format: 'folder' | 'onnx' = 'folder'): Promise<ExportedFiles> {
    const store = await this.stores.get();
    const run = await getRun(store, runId);
    if (!run) throw new RunNotFoundError(runId);
    const cfg = storedConfig(run.config);
    const m = this.models.current;
    const base = cfg?.modelName ?? run.baseModel;
    if (!m) throw new AdapterError(`load the base model of run "${run.name}" (${base}) first: the adapter is merged into its weights`);
    if (!cfg || !fitsModel(cfg, m.info)) {
      throw new AdapterError(`run "${run.name}" was made for ${base}, but ${m.info.name} is loaded: load ${base} to merge this adapter into it`);
    }
    const ck = await loadLatestCheckpoint(store, runId);
    if (!ck) throw new AdapterError(`run "${run.name}" has no checkpoint yet, so there is no adapter to merge`);
    const adapter = await adapterFromState(ck.meta, ck.tensors, `run "${run.name}" (checkpoint of step ${ck.info.step})`);
    const nf4Base = cfg.settings.method === 'qlora';
    if (format === 'folder') return exportedFiles('merged', ck.info.step, (await mergeLora(m.weights, adapter, { nf4Base })).files);
    const onnx = await mergedOnnx(m.weights, adapter, { nf4Base, metadata: { base_model: m.info.name, adapter: run.name, step: String(ck.info.step) } });
    return exportedFiles('onnx', ck.info.step, { 'model.onnx': onnx });
  }
}

function free(c: CachedAdapter): void {
  try {
    c.adapter.release();
  } catch {
    // its buffers went with a lost device
  }
}

interface PickedPeftFiles {
  files: ModelFiles;
  configName: string;
  weightsName: string;
  weightsFile: File;
  /** The picked folder's name, when the files came from a folder. */
  folder: string | null;
}

/**
 * The two PEFT files among those picked: by their names, or (a browser renames a second download
 * "adapter_config (1).json") the one .json and the one .safetensors.
 */
export function pickPeftFiles(files: File[]): PickedPeftFiles {
  const base = (f: File): string => {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
    return rel.slice(rel.lastIndexOf('/') + 1);
  };
  const listed = files.map(base).join(', ') || 'none';
  const named = (n: string) => files.find((f) => base(f) === n);
  const only = (ext: string): File | undefined => {
    const all = files.filter((f) => base(f).toLowerCase().endsWith(ext));
    return all.length === 1 ? all[0] : undefined;
  };
  const cfg = named(CONFIG_FILE) ?? only('.json');
  const weights = named(WEIGHTS_FILE) ?? only('.safetensors');
  if (!cfg || !weights) {
    const missing = [!cfg && CONFIG_FILE, !weights && WEIGHTS_FILE].filter(Boolean).join(' and ');
    const bin = files.some((f) => base(f).endsWith('.bin')) ? ' (adapter_model.bin is not supported: save the adapter with safetensors)' : '';
    throw new AdapterError(`pick both files of a PEFT adapter: ${missing} ${missing.includes(' and ') ? 'are' : 'is'} missing among the picked files (${listed})${bin}`);
  }
  const rel = (cfg as File & { webkitRelativePath?: string }).webkitRelativePath ?? '';
  const map = new Map<string, File>([
    [CONFIG_FILE, cfg],
    [WEIGHTS_FILE, weights],
  ]);
  const modelFiles: ModelFiles = {
    name: 'the picked adapter',
    has: (f) => map.has(f),
    list: () => [...map.keys()],
    async open(f) {
      const b = map.get(f);
      if (!b) throw new AdapterError(`the picked adapter has no ${f}`);
      return blobSource(base(b), b);
    },
  };
  return { files: modelFiles, configName: base(cfg), weightsName: base(weights), weightsFile: weights, folder: rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : null };
}

/**
 * Every tensor must be a LoRA A or B: anything else (a bias trained with bias="all", modules_to_save
 * such as a retrained lm_head, LoRA on embeddings) would change the model in ways not applied here.
 */
async function checkTensorNames(weights: File, name: string): Promise<void> {
  const st = await openSafetensors(blobSource(name, weights));
  for (const t of st.tensors.keys()) {
    if (!/^base_model\.model\..+\.lora_[AB](?:\.[^.]+)?\.weight$/.test(t)) {
      throw new AdapterError(`${name}: tensor "${t}" is not a LoRA A or B weight (base_model.model.<module>.lora_A.weight): adapters that also train biases, embeddings or other modules are not supported`);
    }
  }
}

/** "imported adapter N": one more than the most there have been. */
async function nextImportName(store: Awaited<ReturnType<Stores['get']>>): Promise<string> {
  const ns = (await listRuns(store)).map((r) => Number(/^imported adapter (\d+)$/.exec(r.name)?.[1] ?? 0));
  return `imported adapter ${Math.max(0, ...ns) + 1}`;
}

/** Run settings for an imported adapter: its LoRA settings; the rest is not about it (nothing was trained here). */
function importedSettings(a: PeftAdapter, context: number): TrainSettings {
  return {
    method: 'lora',
    lora: { r: a.lora.r, alpha: a.lora.alpha, dropout: a.lora.dropout, targets: [...a.lora.targets], rslora: a.lora.rslora },
    trainableLayers: 1,
    lr: 0,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    schedule: 'constant',
    warmupSteps: 0,
    maxGradNorm: 0,
    batchSize: 1,
    gradAccum: 1,
    seqLen: Math.min(context, 256),
    steps: 0,
    epochs: 1,
    seed: 0,
    shuffle: false,
    evalEvery: 0,
    maxEvalBatches: 0,
  };
}
