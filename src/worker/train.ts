// The training side of the worker: the dataset (tokenized with the loaded model's tokenizer), the
// memory estimate, and the run itself — a Trainer on the worker's GPU context with pause / resume /
// stop, progress messages batched for the page, a generated sample at every evaluation, and export of
// the result (PEFT adapter or model safetensors). Independent of comlink (worker.ts exposes it).
import type { AdapterSet } from '../model/adapters';
import { generate } from '../model/generate';
import { InferenceSession } from '../model/inference';
import { AdapterError } from '../io/peft';
import { adapterFromPlan, exportPeftAdapter } from '../tune/adapter-io';
import { mergedOnnx, mergeLora, type MergeDType } from '../tune/merge';
import { memoryFiles } from '../io/files';
import { openCheckpoint } from '../model/checkpoint';
import { exportOnnx } from '../model/onnx';
import {
  DatasetError,
  DatasetLineError,
  IGNORE_INDEX,
  datasetStats,
  loadDataset as tokenizeDataset,
  previewExamples,
  type Dataset,
  type DatasetOptions,
  type Example,
} from '../tune/data';
import { checkFit, trainingMemoryPlan, type TrainMemoryOptions } from '../tune/memory-plan';
import type { MethodName, MethodPlan } from '../tune/methods';
import type { GpuContext } from '../gpu/context';
import { getDataset, getRun, loadLatestCheckpoint, RunNotFoundError, type RunRecord, type Store } from '../store';
import { Trainer, type TrainConfig, type TrainData, type TrainEvent, type TrainStateMeta } from '../tune/trainer';
import type {
  DataOptions,
  DatasetRejected,
  DatasetReport,
  DatasetSource,
  ExportedFiles,
  MemoryEstimate,
  TrainApi,
  StoredRunConfig,
  TrainMessage,
  TrainOptions,
  TrainPhase,
  TrainResult,
  TrainSettings,
} from './api';
import type { Loaded, ModelEngine } from './engine';
import { BusyError, NoModelError } from './errors';
import { DEFAULT_AUTOSAVE_SETTINGS, LockedRunError, ResumeError, RunSaver, datasetId, lockHolderLabel, storedConfig, type Stores } from './persist';
import { throttled } from './throttle';
import { exportedFiles } from './transfer';

/** Problems sent to the page at most (the count says how many there are). */
export const PROBLEMS_SHOWN = 500;
/** Preview rows rendered token by token. */
const PREVIEW_ROWS = 6;
/** Reference (forgetting) examples evaluated at most. */
const REFERENCE_EXAMPLES = 16;
/** How often batched progress messages may cross to the page. */
const MESSAGE_MS = 150;
/** Tokens generated for the evaluation sample. */
const SAMPLE_TOKENS = 24;

/** startTraining before a dataset was loaded (or after the model changed). */
export class NoDatasetError extends Error {
  override name = 'NoDatasetError';
  constructor() {
    super('no dataset is loaded for this model: pick a data file or use the demo dataset first');
  }
}

/** A setting out of range (the message names it). */
export class TrainSettingsError extends Error {
  override name = 'TrainSettingsError';
}

/** The memory plan says the run cannot be allocated on this adapter. */
export class OutOfMemoryPlanError extends Error {
  override name = 'OutOfMemoryPlanError';
}

/** The GPU device was lost mid-run and could not be replaced (the message says why and what is kept). */
export class DeviceRecoveryError extends Error {
  override name = 'DeviceRecoveryError';
}

/** Export before any run, or a run that produced nothing to save. */
export class NothingToExportError extends Error {
  override name = 'NothingToExportError';
  constructor() {
    super('there is no trained result yet: start a training run first');
  }
}

interface LoadedData {
  model: Loaded;
  source: DatasetSource;
  name: string;
  text: string;
  options: DataOptions;
  maxLength: number;
  ds: Dataset;
  reference: { name: string; text: string; examples: Example[] } | null;
}

interface ActiveRun {
  model: Loaded;
  trainer: Trainer;
  settings: TrainSettings;
  phase: TrainPhase;
  pauseRequested: boolean;
  stopRequested: boolean;
  /** Set while the loop waits between steps. */
  paused: { resume: () => void } | null;
  finished: Promise<unknown>;
  post: (m: TrainMessage) => void;
  /** The stored run's id (null until known, or when the browser cannot keep runs). */
  runId: string | null;
}

/** A run ready to go: its data, how it is stored, and where it continues from. */
interface PreparedRun {
  data: LoadedData;
  saver: RunSaver | null;
  restore: { meta: TrainStateMeta; tensors: Uint8Array } | null;
}

interface RunControl {
  post: (m: TrainMessage) => void;
  phase: (p: TrainPhase, detail?: string) => void;
}

/** Device losses recovered from in one run before giving up (a GPU that keeps resetting needs a person). */
const MAX_RECOVERIES = 3;

/** A run that ended: its trainer is kept (optimizer state freed) for generation and export. */
interface FinishedRun {
  model: Loaded;
  trainer: Trainer;
  /** Its stored run (null: the browser could not keep it). */
  runId: string | null;
}

export class TrainingService implements TrainApi {
  private data: LoadedData | null = null;
  private run: ActiveRun | null = null;
  private last: FinishedRun | null = null;

  constructor(
    private readonly models: ModelEngine,
    private readonly stores: Stores,
  ) {
    models.training = {
      busyReason: () => (this.run ? 'a training run is going: stop it (or stop and save) before loading another model' : null),
      adapters: () => this.adapters(),
      release: () => this.releaseAll(),
    };
  }

  private model(): Loaded {
    const m = this.models.current;
    if (!m) throw new NoModelError();
    if (!m.tokenizer) throw new DatasetError('this model has no tokenizer.json, so text data cannot be tokenized: load a model folder that has one');
    return m;
  }

  // ------------------------------------------------------------------ data

  async loadDataset(source: DatasetSource, options: DataOptions & { maxLength: number }): Promise<DatasetReport | DatasetRejected> {
    if (this.run) throw new BusyError('a training run is going: stop it before changing the dataset');
    const m = this.model();
    const { maxLength, ...opts } = options;
    let name: string;
    let text: string;
    let reference: LoadedData['reference'] = null;
    if (source.kind === 'demo') {
      const base = new URL(source.baseUrl ?? '../demo/', self.location.href).href.replace(/\/?$/, '/');
      name = 'dataset.jsonl';
      text = await fetchText(new URL(name, base).href);
      reference = { name: 'corpus.txt', text: await fetchText(new URL('corpus.txt', base).href), examples: [] };
    } else {
      name = source.name;
      text = source.text;
    }
    try {
      const built = this.build(m, { source, name, text, options: opts, maxLength, reference });
      this.data = built;
      const stats = datasetStats(built.ds, 10);
      return {
        ok: true,
        name,
        info: built.ds.info,
        stats: { ...stats, problems: stats.problems.slice(0, PROBLEMS_SHOWN) },
        preview: previewExamples(built.ds, m.tokenizer!, PREVIEW_ROWS),
        problems: built.ds.problems.slice(0, PROBLEMS_SHOWN),
        problemCount: built.ds.problems.length,
        reference: built.reference ? { name: built.reference.name, examples: built.reference.examples.length } : null,
      };
    } catch (e) {
      if (!(e instanceof DatasetError)) throw e;
      this.data = null;
      const problems = e instanceof DatasetLineError ? e.problems : [];
      return { ok: false, name: e.name, message: e.message, problems: problems.slice(0, PROBLEMS_SHOWN), problemCount: problems.length };
    }
  }

  /** Tokenize (or re-tokenize at another sequence length) with the model's tokenizer. */
  private build(m: Loaded, d: Omit<LoadedData, 'model' | 'ds'>): LoadedData {
    const tok = m.tokenizer!;
    const o: DatasetOptions = {
      maxLength: d.maxLength,
      lossOn: d.options.lossOn,
      skipBadRows: d.options.skipBadRows,
      pack: d.options.pack,
      validation: d.options.validationPercent > 0 ? { fraction: Math.min(0.9, d.options.validationPercent / 100) } : null,
      seed: 0,
    };
    const ds = tokenizeDataset({ train: { name: d.name, text: d.text } }, tok, o);
    let reference = d.reference;
    if (reference) {
      const r = tokenizeDataset({ train: { name: reference.name, text: reference.text } }, tok, { maxLength: d.maxLength, lossOn: 'all', validation: null });
      reference = { ...reference, examples: r.train.slice(0, REFERENCE_EXAMPLES) };
    }
    return { ...d, model: m, ds, reference };
  }

  // ------------------------------------------------------------------ memory

  async planMemory(settings: TrainSettings): Promise<MemoryEstimate> {
    const m = this.models.current;
    if (!m) throw new NoModelError();
    return estimate(m, settings);
  }

  // ------------------------------------------------------------------ the run

  /** The stored run this worker trains now, if any (for the run list). */
  get liveRunId(): string | null {
    return this.run?.runId ?? null;
  }

  async startTraining(settings: TrainSettings, onMessage?: (messages: TrainMessage[]) => void, options: TrainOptions = {}): Promise<TrainResult> {
    if (this.run) throw new BusyError('a run is already going: pause or stop it first');
    const m = this.model();
    checkSettings(settings, m);
    const first = this.data;
    if (!first || first.model !== m) throw new NoDatasetError();
    const autosave = options.autosave ?? DEFAULT_AUTOSAVE_SETTINGS;

    return this.execute(m, settings, onMessage, async ({ post, phase }) => {
      let d = first;
      phase('preparing', 'checking memory and building the method');
      if (d.maxLength !== settings.seqLen) {
        phase('preparing', `tokenizing the data again at sequence length ${settings.seqLen}`);
        d = this.build(m, { ...d, maxLength: settings.seqLen });
        this.data = d;
      }
      const est = estimate(m, settings);
      if (!est.fit.chosen.fits) throw new OutOfMemoryPlanError(`this run cannot be allocated: ${est.fit.chosen.problems.join('; ')}`);

      // The run, its dataset and its lock in the browser's storage; without them the run still trains.
      phase('preparing', 'storing the run and its dataset in this browser');
      const config: StoredRunConfig = {
        settings,
        data: d.options,
        model: m.source,
        modelName: m.info.name,
        modelParameters: m.info.parameters,
        dataset: { name: d.name, reference: d.reference?.name ?? null },
        autosave,
      };
      let saver: RunSaver | null = null;
      const { store, reason } = await this.stores.tryGet();
      try {
        if (!store) throw new Error(reason ?? 'no storage');
        saver = await RunSaver.create(this.stores, store, { config, train: { name: d.name, text: d.text }, reference: d.reference }, post);
        post({ kind: 'run', id: saver.runId, name: saver.name, createdAt: Date.now(), stored: true, resumedFrom: null });
      } catch (e) {
        const err = e as Error;
        post({ kind: 'run', id: `unsaved-${Date.now()}`, name: 'unsaved run', createdAt: Date.now(), stored: false, resumedFrom: null });
        post({
          kind: 'notice',
          level: 'warning',
          name: err.name,
          message: `this run is not kept in the browser, so it cannot be resumed after a reload (${err.message}); export the adapter to keep the result`,
        });
      }
      return { data: d, saver, restore: null };
    });
  }

  async resumeRun(runId: string, onMessage?: (messages: TrainMessage[]) => void, options: TrainOptions = {}): Promise<TrainResult> {
    if (this.run) throw new BusyError('a run is already going: pause or stop it first');
    const m = this.model();
    const store = await this.stores.get();
    const rec = await getRun(store, runId);
    if (!rec) throw new RunNotFoundError(runId);
    const cfg = storedConfig(rec.config);
    if (!cfg) throw new ResumeError(`run "${rec.name}" was not written by this version of webtune: its settings cannot be read, so it cannot be resumed`);
    if (m.info.name !== cfg.modelName || (cfg.modelParameters > 0 && m.info.parameters !== cfg.modelParameters)) {
      throw new ResumeError(`run "${rec.name}" trains ${describeModel(cfg)}, but ${m.info.name} is loaded: load that model first, then resume`);
    }
    checkSettings(cfg.settings, m);
    // Asked before any work; the lock itself is taken below (a race between two tabs is settled there).
    const holder = await lockHolderLabel(store, runId);
    if (holder) throw new LockedRunError(rec.name, holder);

    return this.execute(m, cfg.settings, onMessage, async ({ post, phase }) => {
      phase('preparing', 'reading the run’s dataset and checkpoint from this browser’s storage');
      const data = await this.storedData(store, rec, cfg, m);
      const ck = await loadLatestCheckpoint<TrainStateMeta>(store, runId);
      const step = ck?.meta.step ?? 0;
      const saver = await RunSaver.reopen(this.stores, store, { id: rec.id, name: rec.name, autosave: options.autosave ?? cfg.autosave, samples: rec.samples }, step, post);
      post({ kind: 'run', id: rec.id, name: rec.name, createdAt: rec.createdAt, stored: true, resumedFrom: step });
      return { data, saver, restore: ck ? { meta: ck.meta, tensors: ck.tensors } : null };
    });
  }

  /** The run's dataset: from storage, or (storage lost it) the dataset loaded now when it is the same file. */
  private async storedData(store: Store, rec: RunRecord, cfg: StoredRunConfig, m: Loaded): Promise<LoadedData> {
    const dec = new TextDecoder();
    const [trainId, refId] = rec.datasetIds;
    const text = async (id: string | undefined): Promise<string | null> => {
      if (!id) return null;
      const got = await getDataset(store, id);
      if (got) return dec.decode(got.bytes);
      if (this.data && (await datasetId(this.data.text)) === id) return this.data.text;
      return null;
    };
    const train = await text(trainId);
    if (train === null) {
      throw new ResumeError(
        `the dataset "${cfg.dataset.name}" of run "${rec.name}" is no longer in this browser’s storage: load the same file in the Data panel, then resume`,
      );
    }
    const ref = cfg.dataset.reference ? await text(refId) : null;
    return this.build(m, {
      source: { kind: 'file', name: cfg.dataset.name, text: train },
      name: cfg.dataset.name,
      text: train,
      options: cfg.data,
      maxLength: cfg.settings.seqLen,
      reference: ref !== null && cfg.dataset.reference ? { name: cfg.dataset.reference, text: ref, examples: [] } : null,
    });
  }

  /**
   * The run itself, shared by start and resume: claim the slot, prepare (data, storage, checkpoint),
   * train with autosave, and when the GPU device is lost mid-run, get a new one, reload the model and
   * the last checkpoint and carry on.
   */
  private async execute(
    m: Loaded,
    settings: TrainSettings,
    onMessage: ((messages: TrainMessage[]) => void) | undefined,
    prepare: (control: RunControl) => Promise<PreparedRun>,
  ): Promise<TrainResult> {
    const queue: TrainMessage[] = [];
    const sender = throttled<boolean>(
      onMessage && (() => onMessage(queue.splice(0))),
      MESSAGE_MS,
      (_, urgent) => urgent,
    );
    const post = (msg: TrainMessage): void => {
      queue.push(msg);
      sender.push(msg.kind !== 'event' || msg.event.kind !== 'step' || msg.event.evalLoss !== undefined);
    };
    const phase = (p: TrainPhase, detail?: string): void => {
      if (this.run) this.run.phase = p;
      post({ kind: 'phase', phase: p, detail });
    };

    // Claim the run slot before the first await, so a second start is refused.
    if (this.run) throw new BusyError('a run is already going: pause or stop it first');
    const slot: ActiveRun = {
      model: m,
      trainer: null as unknown as Trainer,
      settings,
      phase: 'preparing',
      pauseRequested: false,
      stopRequested: false,
      paused: null,
      finished: Promise.resolve(),
      post,
      runId: null,
    };
    this.run = slot;
    let saver: RunSaver | null = null;
    try {
      const prep = await prepare({ post, phase });
      saver = prep.saver;
      slot.runId = saver?.runId ?? null;
      const d = prep.data;
      // The previous run's adapter and plan go now (a full fine-tune's changes to the weights stay).
      this.releaseLast();
      // The device went away while idle: a new one before the run starts.
      if (m.model.ctx.isLost) await this.models.recoverDevice();
      const config = prep.restore?.meta.config ?? toTrainConfig(settings, m);
      await this.residency(m, config.method.method, phase, post);
      let trainer = new Trainer(m.model.ctx, m.model, trainData(d), config);
      slot.trainer = trainer;
      if (prep.restore) {
        phase('preparing', `restoring the checkpoint of step ${prep.restore.meta.step}`);
        await trainer.restore(prep.restore.meta, prep.restore.tensors);
      }
      const lockLost = () => {
        post({ kind: 'notice', level: 'error', name: 'RunLockLostError', message: (saver?.signal.reason as Error | undefined)?.message ?? 'another tab took this run over' });
        slot.stopRequested = true;
        slot.trainer.stop();
        slot.paused?.resume();
      };
      saver?.signal.addEventListener('abort', lockLost, { once: true });
      post({
        kind: 'started',
        totalSteps: trainer.totalSteps,
        trainableParameters: trainer.plan.trainables.reduce((s, t) => s + t.param.shape.reduce((a, b) => a * b, 1), 0),
        trainExamples: d.ds.train.length,
        validationExamples: d.ds.validation?.length ?? 0,
        referenceExamples: d.reference?.examples.length ?? 0,
      });
      if (prep.restore) post({ kind: 'restored', step: trainer.step, history: [...trainer.history], samples: saver?.samplesUpTo(trainer.step) ?? [] });
      phase('compiling', 'compiling GPU kernels for the first step');

      let recoveries = 0;
      let final: TrainEvent;
      for (;;) {
        const sample = samplePrompt(d);
        const sampler = sample ? new EvalSampler(m, trainer, sample) : null;
        const running = trainer.run(this.hooks(slot, trainer, config, sampler, saver, phase));
        slot.finished = running.catch(() => {});
        try {
          final = await running;
          break;
        } catch (e) {
          const lost = await deviceLoss(e, trainer.ctx);
          if (!lost) throw e;
          if (++recoveries > MAX_RECOVERIES) {
            throw new DeviceRecoveryError(`the GPU device was lost ${recoveries} times during this run; the last checkpoint is kept: reload the page and resume the run (${lost.message})`);
          }
          trainer = await this.recover(slot, trainer, d, config, saver, lost, phase);
        } finally {
          sampler?.release();
        }
      }
      const status = final.kind === 'stopped' ? 'stopped' : 'done';
      if (saver) {
        const why = saver.due(status === 'stopped' ? 'stop' : 'done', trainer.step);
        if (!why || (await saver.save(trainer, why, status)) !== 'saved') await saver.setStatus(status);
      }
      // Keep the trained tensors (the adapter or the changed weights); free gradients, moments, activations.
      trainer.engine.release();
      this.last = { model: m, trainer, runId: slot.runId };
      phase(status);
      return { status, step: final.step, totalSteps: trainer.totalSteps, final, exportKind: trainer.plan.loraGroups.length ? 'peft' : 'checkpoint' };
    } catch (e) {
      if (slot.trainer) slot.trainer.release();
      const err = e as Error;
      await saver?.setStatus('failed', `${err.name}: ${err.message}`);
      phase('error', `${err.name}: ${err.message}`);
      throw e;
    } finally {
      await saver?.release();
      this.run = null;
      sender.flush();
    }
  }

  /** What happens after every step: the evaluation sample, autosave, and waiting while paused. */
  private hooks(
    slot: ActiveRun,
    trainer: Trainer,
    config: TrainConfig,
    sampler: EvalSampler | null,
    saver: RunSaver | null,
    phase: RunControl['phase'],
  ): Parameters<Trainer['run']>[0] {
    const post = slot.post;
    return {
      onEvent: (e: TrainEvent) => {
        if (slot.phase === 'compiling' || slot.phase === 'recovering') phase('running');
        post({ kind: 'event', event: e });
      },
      afterStep: async (step) => {
        const evalNow = (config.evalEvery > 0 && step % config.evalEvery === 0) || step === trainer.totalSteps;
        if (evalNow && sampler) {
          const smp = { step, prompt: sampler.promptText, text: await sampler.run() };
          saver?.addSample(smp);
          post({ kind: 'sample', ...smp });
        }
        // A full disk pauses the run: the person frees space, then resumes (the save is tried again).
        let full = false;
        const why = saver?.due('step', step);
        if (saver && why && (await saver.save(trainer, why, 'training')) === 'full') full = slot.pauseRequested = true;
        while (slot.pauseRequested && !slot.stopRequested) {
          if (saver && !full && saver.due('pause', step)) full = (await saver.save(trainer, 'pause', 'paused')) === 'full';
          else await saver?.setStatus('paused', full ? 'paused: the browser’s storage is full' : null);
          phase('paused', full ? 'the browser’s storage is full: free space, then resume' : undefined);
          await new Promise<void>((resume) => (slot.paused = { resume }));
          slot.paused = null;
          if (slot.stopRequested) break;
          full = false;
          if (saver?.owed) {
            full = (await saver.save(trainer, 'auto', 'training')) === 'full';
            if (full) {
              slot.pauseRequested = true;
              continue;
            }
          } else {
            await saver?.setStatus('training');
          }
          if (!slot.pauseRequested && slot.phase === 'paused') phase('running');
        }
      },
    };
  }

  /** The device is gone: a new one, the model uploaded again, the last checkpoint restored. */
  private async recover(
    slot: ActiveRun,
    old: Trainer,
    d: LoadedData,
    config: TrainConfig,
    saver: RunSaver | null,
    cause: Error,
    phase: RunControl['phase'],
  ): Promise<Trainer> {
    slot.post({ kind: 'notice', level: 'warning', name: 'DeviceLostError', message: cause.message });
    phase('recovering', 'the GPU device was lost: acquiring a new one and uploading the model again');
    try {
      old.release();
    } catch {
      // its buffers went with the device
    }
    let m: Loaded;
    try {
      m = await this.models.recoverDevice();
    } catch (e) {
      const err = e as Error;
      throw new DeviceRecoveryError(
        `the GPU device was lost and no new one could be had (${err.name}: ${err.message}). The last checkpoint is kept: reload the page to resume the run`,
      );
    }
    const ck = saver ? await loadLatestCheckpoint<TrainStateMeta>(saver.store, saver.runId) : null;
    phase('recovering', ck ? `restoring the checkpoint of step ${ck.meta.step}` : 'no checkpoint was saved yet: starting again from step 0');
    const trainer = new Trainer(m.model.ctx, m.model, trainData(d), config);
    if (ck) await trainer.restore(ck.meta, ck.tensors);
    slot.trainer = trainer;
    if (slot.stopRequested) trainer.stop();
    saver?.restart(trainer.step);
    slot.post({ kind: 'restored', step: trainer.step, history: [...trainer.history], samples: saver?.samplesUpTo(trainer.step) ?? [] });
    slot.post({
      kind: 'notice',
      level: 'info',
      name: 'DeviceRecovered',
      message: `recovered from the lost GPU device: continuing from ${ck ? `the checkpoint of step ${ck.meta.step}` : 'step 0 (no checkpoint had been saved)'} on a new device`,
    });
    phase('compiling', 'compiling GPU kernels on the new device');
    return trainer;
  }

  async pauseTraining(): Promise<void> {
    const r = this.run;
    if (!r || r.phase === 'stopping') return;
    r.pauseRequested = true;
  }

  async resumeTraining(): Promise<void> {
    const r = this.run;
    if (!r) return;
    r.pauseRequested = false;
    r.paused?.resume();
  }

  async stopTraining(): Promise<void> {
    const r = this.run;
    if (!r) return;
    r.phase = 'stopping';
    r.post({ kind: 'phase', phase: 'stopping', detail: 'finishing the current step' });
    r.stopRequested = true;
    r.trainer?.stop();
    r.pauseRequested = false;
    r.paused?.resume();
  }

  async stopAndSave(): Promise<ExportedFiles> {
    const r = this.run;
    if (r) {
      await this.stopTraining();
      await r.finished;
    }
    return this.exportAdapter();
  }

  /** The current run's trainer, or the last finished one's: what the exports read. */
  private exportSource(): { model: Loaded; trainer: Trainer } {
    const src = this.run?.trainer ? { model: this.run.model, trainer: this.run.trainer } : this.last;
    if (!src) throw new NothingToExportError();
    return src;
  }

  async exportAdapter(): Promise<ExportedFiles> {
    const { model: m, trainer } = this.exportSource();
    if (trainer.plan.loraGroups.length) return exportedFiles('peft', trainer.step, await exportPeftAdapter(trainer.ctx, m.ck.config, trainer.plan, m.info.name));
    return exportedFiles('checkpoint', trainer.step, await trainer.exportCheckpointFiles(m.ck));
  }

  async exportMerged(options: { dtype?: MergeDType } = {}): Promise<ExportedFiles> {
    const { model: m, trainer } = this.exportSource();
    if (!trainer.plan.loraGroups.length) {
      throw new AdapterError('only a LoRA or QLoRA run has an adapter to merge; this run changed the model itself: use "Download model"');
    }
    const adapter = await adapterFromPlan(trainer.ctx, trainer.plan);
    const { files } = await mergeLora(m.weights, adapter, { dtype: options.dtype, nf4Base: trainer.plan.config.method === 'qlora' });
    return exportedFiles('merged', trainer.step, files);
  }

  async exportOnnx(): Promise<ExportedFiles> {
    const { model: m, trainer } = this.exportSource();
    const metadata = { base_model: m.info.name, method: trainer.plan.config.method, step: String(trainer.step) };
    const onnx = trainer.plan.loraGroups.length
      ? await mergedOnnx(m.weights, await adapterFromPlan(trainer.ctx, trainer.plan), { nf4Base: trainer.plan.config.method === 'qlora', metadata })
      : await exportOnnx(await openCheckpoint(memoryFiles(m.info.name, await trainer.exportCheckpointFiles(m.ck))), { metadata });
    return exportedFiles('onnx', trainer.step, { 'model.onnx': onnx });
  }

  // ------------------------------------------------------------------ with the model engine

  /**
   * QLoRA trains on a 4-bit base: the linear weights are quantized to NF4 on upload (bitsandbytes'
   * algorithm, double quantization) and the f32 copy is freed, so the Playground then runs the same
   * quantized base the adapter was trained on. Every other method wants the f32 weights back.
   */
  private async residency(m: Loaded, method: MethodName, phase: RunControl['phase'], post: (msg: TrainMessage) => void): Promise<void> {
    const want = method === 'qlora' || m.prequantized ? 'nf4' : 'f32';
    const had = m.model.weightDType;
    if (had === want) return;
    const before = m.model.ctx.memory.report().liveByRole.weights;
    phase('preparing', want === 'nf4' ? 'quantizing the base model to 4-bit NF4 for QLoRA' : 'uploading the base model in full precision again');
    await this.models.setWeightResidency(want, (p) => phase('preparing', `${want === 'nf4' ? 'quantizing' : 'uploading'} ${p.tensor} (${p.done}/${p.total})`));
    const after = m.model.ctx.memory.report().liveByRole.weights;
    post({
      kind: 'notice',
      level: 'info',
      name: 'WeightResidency',
      message:
        want === 'nf4'
          ? `QLoRA: the base model's linear weights are now held in NF4 (4-bit, double-quantized): the frozen weights take ${mib(after)} of GPU memory instead of ${mib(before)}`
          : `the base model's weights are held in f32 again for ${method}: ${mib(after)} of GPU memory (${mib(before)} in NF4)`,
    });
  }

  private adapters(): AdapterSet | null {
    const t = this.run?.trainer ?? this.last?.trainer;
    return t && t.plan.loraGroups.length ? t.plan : null;
  }

  /** The current or last run's LoRA adapter, as the Playground's adapter list shows it; null when there is none. */
  liveAdapter(): { runId: string | null; step: number; plan: MethodPlan; model: Loaded } | null {
    const src = this.run?.trainer ? { model: this.run.model, trainer: this.run.trainer, runId: this.run.runId } : this.last;
    if (!src || !src.trainer.plan.loraGroups.length) return null;
    return { runId: src.runId, step: src.trainer.step, plan: src.trainer.plan, model: src.model };
  }

  private releaseLast(): void {
    if (!this.last) return;
    // The engine was released when the run ended; the plan (LoRA A/B) goes now.
    this.last.trainer.release();
    this.last = null;
  }

  private releaseAll(): void {
    this.releaseLast();
    this.data = null;
  }
}

// ---------------------------------------------------------------------- helpers

function trainData(d: LoadedData): TrainData {
  return { train: d.ds.train, validation: d.ds.validation, reference: d.reference?.examples ?? null };
}

function describeModel(c: StoredRunConfig): string {
  switch (c.model.kind) {
    case 'demo':
      return 'the demo model';
    case 'hub':
      return `the Hub model ${c.model.id}`;
    case 'url':
      return `the model at ${c.model.url}`;
    case 'files':
      return `the model folder "${c.model.name}" from this computer`;
  }
}

/**
 * Whether a failure mid-run was the device going away, as the DeviceLostError that says why (a
 * read-back may fail a moment before `device.lost` settles, so wait for it briefly); null otherwise.
 */
async function deviceLoss(e: unknown, ctx: GpuContext): Promise<Error | null> {
  const soon = new Promise<null>((r) => setTimeout(() => r(null), 1000));
  const lost = await Promise.race([ctx.lost, soon]);
  if (lost) return lost;
  return (e as Error | null)?.name === 'DeviceLostError' ? (e as Error) : null;
}

async function fetchText(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok) throw new DatasetError(`${url}: the server answered ${res.status} ${res.statusText}`);
  return res.text();
}

function memoryOptions(s: TrainSettings, method: TrainMemoryOptions['method']): TrainMemoryOptions {
  return {
    method,
    lora: { r: s.lora.r, dropout: s.lora.dropout, targets: s.lora.targets },
    trainableLayers: s.trainableLayers,
    batchSize: s.batchSize,
    seqLen: s.seqLen,
    gradAccum: s.gradAccum,
  };
}

export function estimate(m: Loaded, s: TrainSettings): MemoryEstimate {
  const c = m.ck.config;
  const limits = { maxBufferSize: m.model.ctx.limits.maxBufferSize, maxStorageBufferBindingSize: m.model.ctx.limits.maxStorageBufferBindingSize };
  // A pre-quantized folder's base is NF4 whichever adapter method trains it.
  const held = (method: TrainSettings['method']): TrainSettings['method'] => (m.prequantized && method === 'lora' ? 'qlora' : method);
  const chosen = trainingMemoryPlan(c, memoryOptions(s, held(s.method)));
  const full = trainingMemoryPlan(c, memoryOptions(s, 'full'));
  const lora = trainingMemoryPlan(c, memoryOptions(s, held('lora')));
  const qlora = trainingMemoryPlan(c, memoryOptions(s, 'qlora'));
  return {
    chosen,
    full,
    lora,
    qlora,
    fit: { chosen: checkFit(chosen, limits), full: checkFit(full, limits), lora: checkFit(lora, limits), qlora: checkFit(qlora, limits) },
    limits,
  };
}

function checkSettings(s: TrainSettings, m: Loaded): void {
  const bad = (name: string, why: string): never => {
    throw new TrainSettingsError(`${name} ${why}`);
  };
  const int = (name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void => {
    if (!Number.isInteger(v) || v < min || v > max) bad(name, `must be a whole number from ${min} to ${max}, got ${v}`);
  };
  const real = (name: string, v: number, min: number, max: number, openMax = false): void => {
    if (!Number.isFinite(v) || v < min || (openMax ? v >= max : v > max)) bad(name, `must be between ${min} and ${max}, got ${v}`);
  };
  int('Batch size', s.batchSize, 1, 4096);
  int('Gradient accumulation', s.gradAccum, 1, 4096);
  int('Sequence length', s.seqLen, 2, m.ck.config.maxPositions);
  int('Steps', s.steps, 0);
  if (s.steps === 0) real('Epochs', s.epochs, 0.01, 10_000);
  int('Seed', s.seed, 0);
  int('Eval every', s.evalEvery, 0);
  int('Max eval batches', s.maxEvalBatches, 0);
  int('Warmup steps', s.warmupSteps, 0);
  real('Learning rate', s.lr, 0, 10);
  real('Weight decay', s.weightDecay, 0, 10);
  real('Beta 1', s.beta1, 0, 1, true);
  real('Beta 2', s.beta2, 0, 1, true);
  real('Epsilon', s.eps, 0, 1);
  real('Max grad norm', s.maxGradNorm, 0, 1e9);
  if (s.method === 'partial') int('Trainable layers', s.trainableLayers, 1, m.ck.config.numLayers);
  if (m.prequantized && s.method !== 'lora' && s.method !== 'qlora') {
    bad('Method', `${s.method} cannot train ${m.info.name}: it is a pre-quantized 4-bit (bitsandbytes) checkpoint, whose base weights exist only in NF4; use LoRA or QLoRA`);
  }
}

export function toTrainConfig(s: TrainSettings, m: Loaded): TrainConfig {
  return {
    method: {
      method: s.method,
      lora: { r: s.lora.r, alpha: s.lora.alpha, dropout: s.lora.dropout, targets: s.lora.targets.map((t) => t.trim()).filter(Boolean), rslora: s.lora.rslora },
      trainableLayers: s.trainableLayers,
    },
    optimizer: { lr: s.lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: s.weightDecay, maxGradNorm: s.maxGradNorm },
    schedule: s.schedule,
    warmupSteps: s.warmupSteps,
    batchSize: s.batchSize,
    gradAccum: s.gradAccum,
    steps: s.steps > 0 ? s.steps : undefined,
    epochs: s.steps > 0 ? undefined : s.epochs,
    seed: s.seed,
    shuffle: s.shuffle,
    evalEvery: s.evalEvery,
    maxEvalBatches: s.maxEvalBatches > 0 ? s.maxEvalBatches : undefined,
    padId: m.ck.config.padTokenId ?? m.tokenizer?.eosTokenId ?? 0,
  };
}

/** The fixed prompt of the evaluation samples: the untrained start of the first validation (else training) example. */
function samplePrompt(d: LoadedData): number[] | null {
  const ex = d.ds.validation?.[0] ?? d.ds.head[0] ?? d.ds.train[0];
  if (!ex) return null;
  let end = ex.labels.findIndex((l) => l !== IGNORE_INDEX);
  // Loss on every token: take the first half as the prompt.
  if (end <= 0) end = Math.max(1, Math.floor(ex.inputIds.length / 2));
  return Array.from(ex.inputIds.subarray(0, end));
}

/** Greedy samples for a fixed prompt, on a session of their own (the Playground's stays untouched). */
class EvalSampler {
  readonly promptText: string;
  private session: InferenceSession | null = null;

  constructor(
    private readonly m: Loaded,
    private readonly trainer: Trainer,
    private readonly ids: number[],
  ) {
    this.promptText = m.tokenizer!.decode(ids, false);
  }

  async run(): Promise<string> {
    const c = this.m.ck.config;
    const capacity = Math.min(c.maxPositions, this.ids.length + SAMPLE_TOKENS);
    if (this.ids.length >= capacity) return '';
    this.session ??= new InferenceSession(this.m.model, capacity);
    this.session.adapters = this.trainer.plan.loraGroups.length ? this.trainer.plan : null;
    const stops = new Set(this.m.ck.generation.eosTokenIds);
    if (this.m.tokenizer?.eosTokenId != null) stops.add(this.m.tokenizer.eosTokenId);
    const r = await generate(this.session, this.ids, { maxNewTokens: capacity - this.ids.length, temperature: 0, stopTokenIds: [...stops] });
    return this.m.tokenizer!.decode(r.ids, true);
  }

  release(): void {
    this.session?.release();
    this.session = null;
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
