// State of a training run as the page sees it: the phase, the latest step's numbers, the curves
// (training, validation, reference loss), the samples generated at each evaluation, the result, the
// exported files and whether there is progress not yet saved. The run itself lives in the worker;
// this class only starts / pauses / stops it and gathers what streams back.
import * as Comlink from 'comlink';
import type { ExportedFiles, TrainEvent, TrainMessage, TrainPhase, TrainResult } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import type { RunConfig } from './run-config';
import { RunsState, type Curve } from './runs.svelte';
import { workerApi } from './worker-client';

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

export interface DownloadFile {
  name: string;
  size: number;
  url: string;
}

/** Titles and next steps for the training errors (src/ui/errors.ts knows the model-loading ones). */
const TRAIN_ERRORS: Record<string, { title: string; hint: string }> = {
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

const ACTIVE: ReadonlySet<TrainPhase> = new Set(['preparing', 'compiling', 'running', 'paused', 'stopping']);

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
  /** The current (or last) run's record id in the history. */
  runId = $state(0);

  files = $state.raw<DownloadFile[]>([]);
  exportKind = $state<ExportedFiles['kind'] | null>(null);
  exporting = $state(false);
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
    return this.runId > 0 && this.step > this.savedStep && this.phase !== 'error';
  }

  /** A LoRA adapter exists (the Playground can compare it with the base model). */
  get hasAdapter(): boolean {
    const r = this.runs.runs.find((x) => x.id === this.runId);
    return !!r && r.config.settings.method === 'lora' && this.step > 0 && this.phase !== 'error';
  }

  async start(config: RunConfig, dataset: string): Promise<void> {
    if (this.active) return;
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
    this.clearFiles();
    this.curves = emptyCurves();
    const rec = this.runs.begin(config, dataset, this.curves.loss);
    this.runId = rec.id;
    try {
      const r = await workerApi().startTraining(
        config.settings,
        Comlink.proxy((msgs: TrainMessage[]) => this.receive(msgs)),
      );
      this.result = r;
      this.phase = r.status;
      this.pausing = false;
      this.finishRecord(r.status);
    } catch (e) {
      this.error = trainError(e);
      this.phase = 'error';
      this.finishRecord('error');
    }
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
        case 'started':
          this.totalSteps = m.totalSteps;
          this.trainableParameters = m.trainableParameters;
          this.examples = { train: m.trainExamples, validation: m.validationExamples, reference: m.referenceExamples };
          this.runs.update(this.runId, { totalSteps: m.totalSteps });
          break;
        case 'event': {
          const e = m.event;
          if (e.kind === 'step') {
            const c = this.curves;
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
    if (touched) {
      this.curves = { ...this.curves };
      const l = this.latest;
      this.runs.update(this.runId, {
        step: l?.step ?? 0,
        loss: l?.loss ?? null,
        evalLoss: this.curves.evalLoss.y.at(-1) ?? null,
      });
    }
  }

  private finishRecord(status: 'done' | 'stopped' | 'error'): void {
    this.runs.update(this.runId, {
      status,
      step: this.step,
      loss: this.curves.loss.y.at(-1) ?? null,
      evalLoss: this.curves.evalLoss.y.at(-1) ?? null,
    });
  }

  /**
   * A new model was loaded: the worker freed the last run's adapter (the history keeps its record and
   * curve), so there is nothing to show, compare or save any more.
   */
  modelChanged(): void {
    if (this.active) return;
    this.phase = 'idle';
    this.runId = 0;
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

  /** Download the result: export now, or ("Stop and save") stop the run after this step, then export. */
  async save(stopFirst: boolean): Promise<void> {
    if (this.exporting) return;
    this.exporting = true;
    this.exportError = null;
    try {
      const f = stopFirst ? await workerApi().stopAndSave() : await workerApi().exportAdapter();
      this.clearFiles();
      this.files = f.files.map((x) => ({ name: x.name, size: x.bytes.byteLength, url: URL.createObjectURL(new Blob([x.bytes], { type: 'application/octet-stream' })) }));
      this.exportKind = f.kind;
      this.savedStep = f.step;
      for (const file of this.files) download(file);
    } catch (e) {
      this.exportError = trainError(e);
    } finally {
      this.exporting = false;
    }
  }

  private clearFiles(): void {
    for (const f of this.files) URL.revokeObjectURL(f.url);
    this.files = [];
    this.exportKind = null;
  }
}

/** Hand a file to the browser's downloads (an <a download> click, as a person's would be). */
export function download(file: DownloadFile): void {
  const a = document.createElement('a');
  a.href = file.url;
  a.download = file.name;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
}
