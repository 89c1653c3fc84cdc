// The training side of the worker: the dataset (tokenized with the loaded model's tokenizer), the
// memory estimate, and the run itself — a Trainer on the worker's GPU context with pause / resume /
// stop, progress messages batched for the page, a generated sample at every evaluation, and export of
// the result (PEFT adapter or model safetensors). Independent of comlink (worker.ts exposes it).
import type { AdapterSet } from '../model/adapters';
import { generate } from '../model/generate';
import { InferenceSession } from '../model/inference';
import { exportPeftAdapter } from '../tune/adapter-io';
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
import { Trainer, type TrainConfig, type TrainEvent } from '../tune/trainer';
import type {
  DataOptions,
  DatasetRejected,
  DatasetReport,
  DatasetSource,
  ExportedFiles,
  MemoryEstimate,
  TrainApi,
  TrainMessage,
  TrainPhase,
  TrainResult,
  TrainSettings,
} from './api';
import type { Loaded, ModelEngine } from './engine';
import { BusyError, NoModelError } from './errors';
import { throttled } from './throttle';

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
  /** Set while the loop waits between steps. */
  paused: { resume: () => void } | null;
  finished: Promise<unknown>;
  post: (m: TrainMessage) => void;
}

/** A run that ended: its trainer is kept (optimizer state freed) for generation and export. */
interface FinishedRun {
  model: Loaded;
  trainer: Trainer;
}

export class TrainingService implements TrainApi {
  private data: LoadedData | null = null;
  private run: ActiveRun | null = null;
  private last: FinishedRun | null = null;

  constructor(private readonly models: ModelEngine) {
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

  async startTraining(settings: TrainSettings, onMessage?: (messages: TrainMessage[]) => void): Promise<TrainResult> {
    if (this.run) throw new BusyError('a run is already going: pause or stop it first');
    const m = this.model();
    checkSettings(settings, m);
    let d = this.data;
    if (!d || d.model !== m) throw new NoDatasetError();

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
    const slot: ActiveRun = { model: m, trainer: null as unknown as Trainer, settings, phase: 'preparing', pauseRequested: false, paused: null, finished: Promise.resolve(), post };
    this.run = slot;
    try {
      phase('preparing', 'checking memory and building the method');
      if (d.maxLength !== settings.seqLen) {
        phase('preparing', `tokenizing the data again at sequence length ${settings.seqLen}`);
        d = this.build(m, { ...d, maxLength: settings.seqLen });
        this.data = d;
      }
      const est = estimate(m, settings);
      if (!est.fit.chosen.fits) throw new OutOfMemoryPlanError(`this run cannot be allocated: ${est.fit.chosen.problems.join('; ')}`);
      // The previous run's adapter and plan go now (a full fine-tune's changes to the weights stay).
      this.releaseLast();
      const config = toTrainConfig(settings, m);
      const trainer = new Trainer(m.model.ctx, m.model, { train: d.ds.train, validation: d.ds.validation, reference: d.reference?.examples ?? null }, config);
      slot.trainer = trainer;
      post({
        kind: 'started',
        totalSteps: trainer.totalSteps,
        trainableParameters: trainer.plan.trainables.reduce((s, t) => s + t.param.shape.reduce((a, b) => a * b, 1), 0),
        trainExamples: d.ds.train.length,
        validationExamples: d.ds.validation?.length ?? 0,
        referenceExamples: d.reference?.examples.length ?? 0,
      });
      phase('compiling', 'compiling GPU kernels for the first step');
      const sample = samplePrompt(d);
      const sampler = sample ? new EvalSampler(m, trainer, sample) : null;
      const running = trainer.run({
        onEvent: (e: TrainEvent) => {
          if (slot.phase === 'compiling') phase('running');
          post({ kind: 'event', event: e });
        },
        afterStep: async (step) => {
          const evalNow = (config.evalEvery > 0 && step % config.evalEvery === 0) || step === trainer.totalSteps;
          if (evalNow && sampler) post({ kind: 'sample', step, prompt: sampler.promptText, text: await sampler.run() });
          if (slot.pauseRequested) {
            phase('paused');
            await new Promise<void>((resume) => (slot.paused = { resume }));
            slot.paused = null;
            if (slot.phase === 'paused') phase('running');
          }
        },
      });
      slot.finished = running.catch(() => {});
      let final: TrainEvent;
      try {
        final = await running;
      } finally {
        sampler?.release();
      }
      const status = final.kind === 'stopped' ? 'stopped' : 'done';
      // Keep the trained tensors (the adapter or the changed weights); free gradients, moments, activations.
      trainer.engine.release();
      this.last = { model: m, trainer };
      phase(status);
      return { status, step: final.step, totalSteps: trainer.totalSteps, final, exportKind: trainer.plan.loraGroups.length ? 'peft' : 'checkpoint' };
    } catch (e) {
      if (slot.trainer) slot.trainer.release();
      const err = e as Error;
      phase('error', `${err.name}: ${err.message}`);
      throw e;
    } finally {
      this.run = null;
      sender.flush();
    }
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

  async exportAdapter(): Promise<ExportedFiles> {
    const src = this.run?.trainer ? { model: this.run.model, trainer: this.run.trainer } : this.last;
    if (!src) throw new NothingToExportError();
    const { model: m, trainer } = src;
    const enc = new TextEncoder();
    const bytes = (x: string | Uint8Array): ArrayBuffer => {
      const u = typeof x === 'string' ? enc.encode(x) : x;
      return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? (u.buffer as ArrayBuffer) : (u.slice().buffer as ArrayBuffer);
    };
    if (trainer.plan.loraGroups.length) {
      const files = await exportPeftAdapter(trainer.ctx, m.ck.config, trainer.plan, m.info.name);
      return {
        kind: 'peft',
        step: trainer.step,
        files: Object.entries(files).map(([name, data]) => ({ name, bytes: bytes(data) })),
      };
    }
    const files: ExportedFiles['files'] = [
      { name: 'model.safetensors', bytes: bytes(await trainer.exportModelSafetensors(m.ck)) },
      { name: 'config.json', bytes: bytes(JSON.stringify(m.ck.rawConfig, null, 2)) },
    ];
    if (m.ck.tokenizerJson) files.push({ name: 'tokenizer.json', bytes: bytes(m.ck.tokenizerJson) });
    if (m.ck.tokenizerConfigJson) files.push({ name: 'tokenizer_config.json', bytes: bytes(m.ck.tokenizerConfigJson) });
    return { kind: 'checkpoint', step: trainer.step, files };
  }

  // ------------------------------------------------------------------ with the model engine

  private adapters(): AdapterSet | null {
    const t = this.run?.trainer ?? this.last?.trainer;
    return t && t.plan.loraGroups.length ? t.plan : null;
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
  const chosen = trainingMemoryPlan(c, memoryOptions(s, s.method));
  const full = trainingMemoryPlan(c, memoryOptions(s, 'full'));
  const lora = trainingMemoryPlan(c, memoryOptions(s, 'lora'));
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
