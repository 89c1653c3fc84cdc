// State of a training run as the page sees it: the phase, the latest step's numbers, the curves
// (training, validation, reference loss), the samples generated at each evaluation, the result, the
// exported files and whether there is progress not yet saved. The run itself lives in the worker;
// this class only starts / pauses / stops it and gathers what streams back.
import * as Comlink from 'comlink';
import type { AutosaveSettings, CheckpointReason, ExportedFiles, TrainEvent, TrainMessage, TrainPhase, TrainResult } from '../worker/api';
import { download, type DownloadFile } from './download';
import { friendlyError, type FriendlyError } from './errors';
import { usesLora, type RunConfig } from './run-config';
import { RunsState, type Curve, type RunView } from './runs.svelte';
import { workerApi } from './worker-client';

/** What the Export panel downloads: the run's result (adapter or model), the merged model, or ONNX. */
export type ExportWhat = 'result' | 'merged' | 'onnx';

export interface Curves {
  loss: Curve;
  evalLoss: Curve;
  referenceLoss: Curve;
}

export interface Sample {
  step: number;
  prompt: string;
  text: string;
}

/** Titles and next steps for the training errors (src/ui/errors.ts knows the model-loading ones). */
const TRAIN_ERRORS: Record<string, { title: string; hint: string }> = {
  DeviceRecoveryError: { title: 'The GPU was lost and could not be recovered', hint: 'Reload the page, then resume the run from the Runs panel.' },
  NoDatasetError: { title: 'No dataset', hint: 'Use the demo dataset or pick a data file in the Data panel.' },
  TrainSettingsError: { title: 'A setting is out of range', hint: 'Correct it in the Method panel.' },
  OutOfMemoryPlanError: { title: 'This run cannot fit', hint: 'Lower the batch size or the sequence length, or use LoRA.' },
  MethodConfigError: { title: 'This method cannot be used with this model', hint: 'Change the method or its settings in the Method panel.' },
  NonFiniteLossError: { title: 'The loss stopped being a number', hint: 'Lower the learning rate or keep gradient clipping on, then start again.' },
  NothingToExportError: { title: 'Nothing to save yet', hint: 'Start a training run first.' },
};

function trainError(e: unknown): FriendlyError {
  const f = friendlyError(e);
  const known = TRAIN_ERRORS[f.name];
  return known ? { ...f, ...known } : f;
}

const emptyCurves = (): Curves => ({ loss: { x: [], y: [] }, evalLoss: { x: [], y: [] }, referenceLoss: { x: [], y: [] } });

const ACTIVE: ReadonlySet<TrainPhase> = new Set(['preparing', 'compiling', 'running', 'paused', 'recovering', 'stopping']);

/** A message from the worker that does not end the run (a full disk, a lost GPU, storage unavailable). */
export interface Notice {
  level: 'info' | 'warning' | 'error';
  name: string;
  title: string;
  message: string;
  hint: string;
}

export interface CheckpointNote {
  step: number;
  bytes: number;
  readMs: number;
  writeMs: number;
  reason: CheckpointReason;
}

const NOTICE_TITLES: Record<string, { title: string; hint: string }> = {
  StorageQuotaError: { title: 'The browser’s storage is full: the run is paused', hint: 'Delete something in the Storage panel below, then press Resume.' },
  DeviceLostError: { title: 'The GPU device was lost', hint: 'webtune is getting a new device and continuing from the last checkpoint.' },
  DeviceRecovered: { title: 'Recovered', hint: '' },
  RunLockLostError: { title: 'Another tab took this run over', hint: 'Training stopped here; continue in that tab.' },
  RunNotFoundError: { title: 'This run was deleted (from another tab?)', hint: 'Training goes on, but no more checkpoints are kept: export the adapter to keep the result.' },
};

export class TrainState {
  phase = $state<TrainPhase | 'idle'>('idle');
  detail = $state('');
  totalSteps = $state(0);
  trainableParameters = $state(0);
  examples = $state.raw<{ train: number; validation: number; reference: number } | null>(null);
  latest = $state.raw<TrainEvent | null>(null);
  /** Replaced (shallowly) on every batch of messages; the arrays inside grow in place. */
  curves = $state.raw<Curves>(emptyCurves());
  samples = $state.raw<Sample[]>([]);
  result = $state.raw<TrainResult | null>(null);
  error = $state.raw<FriendlyError | null>(null);
  /** Requested pause not yet reached (the current step finishes first). */
  pausing = $state(false);
  /** The current (or last) run's id in the store ('' before any run). */
  runId = $state('');
  /** The last checkpoint committed to the browser's storage during this run. */
  checkpoint = $state.raw<CheckpointNote | null>(null);
  /** Messages that did not end the run, newest last. */
  notices = $state.raw<Notice[]>([]);
  /** The step a resumed run continued from (null: a fresh run). */
  resumedFrom = $state<number | null>(null);
  /** When checkpoints are written (pause, stop and the end always save). */
  autosave = $state<AutosaveSettings>({ everySteps: 50, everyMinutes: 5 });
  /** Config and dataset name of the run being started (the run's view is made when the worker names it). */
  private pending: { config: RunConfig; dataset: string } | null = null;

  files = $state.raw<DownloadFile[]>([]);
  exportKind = $state<ExportedFiles['kind'] | null>(null);
  /** dtype of a merged-model download: the base model's, or f32 / f16 / bf16. */
  mergedDtype = $state<'base' | 'F32' | 'F16' | 'BF16'>('base');
  /** What is being exported right now (null: nothing). */
  exporting = $state<ExportWhat | null>(null);
  exportError = $state.raw<FriendlyError | null>(null);
  /** The step the last export holds. */
  savedStep = $state(0);

  readonly runs = new RunsState();

  get active(): boolean {
    return ACTIVE.has(this.phase as TrainPhase);
  }

  get step(): number {
    return this.latest?.step ?? 0;
  }

  /** Trained steps that no download holds yet (what the leave-page warning is about). */
  get unsaved(): boolean {
    return this.runId !== '' && this.step > this.savedStep && this.phase !== 'error';
  }

  /** A LoRA adapter exists (the Playground can compare it with the base model). */
  get hasAdapter(): boolean {
    const r = this.runs.runs.find((x) => x.id === this.runId);
    return !!r && usesLora(r.config.settings.method) && this.step > 0 && this.phase !== 'error';
  }

  async start(config: RunConfig, dataset: string): Promise<void> {
    if (this.active) return;
    this.reset(config, dataset, null);
    await this.follow(() =>
      workerApi().startTraining(
        config.settings,
        Comlink.proxy((msgs: TrainMessage[]) => this.receive(msgs)),
        { autosave: this.autosaveSettings() },
      ),
    );
  }

  /** Continue a stored run from its checkpoint (its model must be loaded: the page sees to that). */
  async continueRun(run: RunView): Promise<void> {
    if (this.active) return;
    this.reset(run.config, run.dataset, run.checkpoint?.step ?? 0);
    await this.follow(() =>
      workerApi().resumeRun(
        run.id,
        Comlink.proxy((msgs: TrainMessage[]) => this.receive(msgs)),
        { autosave: this.autosaveSettings() },
      ),
    );
  }

  private autosaveSettings(): AutosaveSettings {
    const n = (v: unknown, d: number): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : d);
    return { everySteps: Math.floor(n(this.autosave.everySteps, 50)), everyMinutes: n(this.autosave.everyMinutes, 5) };
  }

  private reset(config: RunConfig, dataset: string, resumedFrom: number | null): void {
    this.phase = 'preparing';
    this.detail = '';
    this.error = null;
    this.result = null;
    this.latest = null;
    this.pausing = false;
    this.samples = [];
    this.totalSteps = 0;
    this.examples = null;
    this.savedStep = 0;
    this.checkpoint = null;
    this.notices = [];
    this.resumedFrom = resumedFrom;
    this.runId = '';
    this.clearFiles();
    this.curves = emptyCurves();
    this.pending = { config, dataset };
  }

  private async follow(run: () => Promise<TrainResult>): Promise<void> {
    try {
      const r = await run();
      this.result = r;
      this.phase = r.status;
      this.pausing = false;
      this.finishRecord(r.status);
    } catch (e) {
      this.error = trainError(e);
      this.phase = 'error';
      this.finishRecord('error');
    }
    this.runs.end();
    await this.runs.refresh();
  }

  private receive(msgs: TrainMessage[]): void {
    let touched = false;
    for (const m of msgs) {
      switch (m.kind) {
        case 'phase':
          // The promise's answer is final; a late phase message must not reopen the run.
          if (!this.result && this.phase !== 'error') {
            this.phase = m.phase;
            this.detail = m.detail ?? '';
            if (m.phase === 'paused' || m.phase === 'running') this.pausing = false;
          }
          break;
        case 'run':
          this.runId = m.id;
          if (this.pending) this.runs.begin(m.id, m.name, m.createdAt, m.stored, this.pending.config, this.pending.dataset, this.curves.loss);
          break;
        case 'restored': {
          // Resumed (after a reload, or a lost GPU): the curves restart from the checkpoint's history.
          const c = emptyCurves();
          for (const e of m.history) addPoints(c, e);
          this.curves = c;
          this.samples = m.samples.map((x) => ({ ...x }));
          this.latest = m.history.at(-1) ?? null;
          this.runs.update(this.runId, { curve: c.loss, step: m.step });
          touched = true;
          break;
        }
        case 'checkpoint':
          this.checkpoint = { step: m.step, bytes: m.bytes, readMs: m.readMs, writeMs: m.writeMs, reason: m.reason };
          this.runs.update(this.runId, { checkpoint: { id: '', step: m.step, bytes: m.bytes, savedAt: Date.now(), reason: m.reason } });
          break;
        case 'notice': {
          const known = NOTICE_TITLES[m.name];
          const title = known?.title ?? (m.level === 'info' ? 'Note' : 'Warning');
          this.notices = [...this.notices.slice(-4), { level: m.level, name: m.name, title, message: m.message, hint: known?.hint ?? '' }];
          break;
        }
        case 'started':
          this.totalSteps = m.totalSteps;
          this.trainableParameters = m.trainableParameters;
          this.examples = { train: m.trainExamples, validation: m.validationExamples, reference: m.referenceExamples };
          this.runs.update(this.runId, { totalSteps: m.totalSteps });
          break;
        case 'event': {
          const e = m.event;
          if (e.kind === 'step') {
            addPoints(this.curves, e);
            touched = true;
          }
          // 'done' / 'stopped' carry timing only: keep the last step's loss, learning rate and norm.
          if (e.kind === 'step' || !this.latest) this.latest = e;
          else this.latest = { ...this.latest, kind: e.kind, elapsedSec: e.elapsedSec, tokensPerSec: e.tokensPerSec, etaSec: e.etaSec };
          break;
        }
        case 'sample':
          this.samples = [...this.samples, { step: m.step, prompt: m.prompt, text: m.text }];
          break;
      }
    }
    if (touched && this.runId) {
      this.curves = { ...this.curves };
      const l = this.latest;
      this.runs.update(this.runId, {
        totalSteps: this.totalSteps,
        step: l?.step ?? 0,
        loss: l?.loss ?? null,
        evalLoss: this.curves.evalLoss.y.at(-1) ?? null,
        referenceLoss: this.curves.referenceLoss.y.at(-1) ?? null,
        tokensPerSec: l?.tokensPerSec ?? null,
      });
    }
  }

  private finishRecord(status: 'done' | 'stopped' | 'error'): void {
    if (!this.runId) return;
    this.runs.update(this.runId, {
      status,
      step: this.step,
      loss: this.curves.loss.y.at(-1) ?? null,
      evalLoss: this.curves.evalLoss.y.at(-1) ?? null,
      referenceLoss: this.curves.referenceLoss.y.at(-1) ?? null,
    });
  }

  /**
   * A new model was loaded: the worker freed the last run's adapter (the history keeps its record and
   * curve), so there is nothing to show, compare or save any more.
   */
  modelChanged(): void {
    if (this.active) return;
    this.phase = 'idle';
    this.runId = '';
    this.checkpoint = null;
    this.notices = [];
    this.resumedFrom = null;
    this.latest = null;
    this.result = null;
    this.samples = [];
    this.curves = emptyCurves();
    this.savedStep = 0;
    this.totalSteps = 0;
    this.examples = null;
    this.error = null;
  }

  pause(): void {
    if (this.phase !== 'running' && this.phase !== 'compiling') return;
    this.pausing = true;
    void workerApi().pauseTraining();
  }

  resume(): void {
    this.pausing = false;
    void workerApi().resumeTraining();
  }

  stop(): void {
    if (!this.active) return;
    void workerApi().stopTraining();
  }

  /**
   * Download the result: export now, or ("Stop and save") stop the run after this step, then export.
   * `merged`: a LoRA / QLoRA run's adapter merged into the base model, as one plain model folder;
   * `onnx`: the trained (or merged) model as one model.onnx.
   */
  async save(stopFirst: boolean, what: ExportWhat = 'result'): Promise<void> {
    if (this.exporting) return;
    this.exporting = what;
    this.exportError = null;
    try {
      const api = workerApi();
      const f = what === 'merged' ? await api.exportMerged({ dtype: this.mergedDtype === 'base' ? undefined : this.mergedDtype }) : what === 'onnx' ? await api.exportOnnx() : stopFirst ? await api.stopAndSave() : await api.exportAdapter();
      this.clearFiles();
      this.files = f.files.map((x) => ({ name: x.name, size: x.bytes.byteLength, url: URL.createObjectURL(new Blob([x.bytes], { type: 'application/octet-stream' })) }));
      this.exportKind = f.kind;
      this.savedStep = f.step;
      for (const file of this.files) download(file);
    } catch (e) {
      this.exportError = trainError(e);
    } finally {
      this.exporting = null;
    }
  }

  private clearFiles(): void {
    for (const f of this.files) URL.revokeObjectURL(f.url);
    this.files = [];
    this.exportKind = null;
  }
}

/** A step's losses onto the curves (in place: the charts redraw when `curves` is replaced). */
function addPoints(c: Curves, e: TrainEvent): void {
  if (e.kind !== 'step') return;
  if (e.loss !== undefined && Number.isFinite(e.loss)) {
    c.loss.x.push(e.step);
    c.loss.y.push(e.loss);
  }
  if (e.evalLoss !== undefined) {
    c.evalLoss.x.push(e.step);
    c.evalLoss.y.push(e.evalLoss);
  }
  if (e.referenceLoss !== undefined) {
    c.referenceLoss.x.push(e.step);
    c.referenceLoss.y.push(e.referenceLoss);
  }
}
