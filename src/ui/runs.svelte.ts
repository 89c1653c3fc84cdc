// The runs kept in this browser (IndexedDB, through the worker), oldest first: each run's
// configuration, what changed from the run before ("lr 2e-4→1e-4, r 8→16"), its status, its
// checkpoint, who trains it, and its training-loss curve for overlaying on the current run's chart.
// The run this tab trains is updated live from the Train panel's messages; the others come from the
// store (refresh()). Rename, delete, export and import go through the worker.
import type { AutosaveSettings, RunSummary } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { downloadBlob } from './download';
import { diffConfigs, type RunConfig } from './run-config';
import { workerApi } from './worker-client';

/** The store's statuses, plus 'running' for the run this tab trains and 'error' for one that failed here. */
export type RunStatus = RunSummary['status'] | 'running' | 'error';

export interface Curve {
  x: number[];
  y: number[];
}

export interface RunView {
  id: string;
  name: string;
  config: RunConfig;
  dataset: string;
  /** The model's name (ModelInfo.name) and how to load it again. */
  model: string;
  source: NonNullable<RunSummary['config']>['model'] | null;
  /** When it saves checkpoints (null: this page's settings). */
  autosave: AutosaveSettings | null;
  status: RunStatus;
  step: number;
  totalSteps: number;
  /** Last training loss, last validation loss (null until measured). */
  loss: number | null;
  evalLoss: number | null;
  /** Last reference-text loss (forgetting) and the last step's tokens per second (null until measured). */
  referenceLoss: number | null;
  tokensPerSec: number | null;
  /** Training loss by step (shared with the Train panel while the run goes). */
  curve: Curve;
  /** Changes from the previous run's configuration; null for the first run. */
  changes: string[] | null;
  createdAt: number;
  checkpoint: RunSummary['checkpoint'];
  /** The tab that trains it now (this one included), or null. */
  lockedBy: string | null;
  /** This tab trains it. */
  live: boolean;
  resumable: boolean;
  message: string | null;
  /** false: the browser could not keep it (it lives in this page only). */
  stored: boolean;
  /** A PEFT adapter imported from files (not trained here: nothing to resume, no configuration to use). */
  imported: boolean;
}

function fromSummary(s: RunSummary): RunView | null {
  if (!s.config) return null;
  return {
    id: s.id,
    name: s.name,
    config: { settings: s.config.settings, data: s.config.data },
    dataset: s.config.dataset.name,
    model: s.config.modelName,
    source: s.config.model,
    autosave: s.config.autosave,
    status: s.status,
    step: s.step,
    totalSteps: s.totalSteps,
    loss: s.lastLoss,
    evalLoss: s.lastEvalLoss,
    referenceLoss: s.lastReferenceLoss,
    tokensPerSec: s.tokensPerSec,
    curve: s.curve,
    changes: null,
    createdAt: s.createdAt,
    checkpoint: s.checkpoint,
    lockedBy: s.lockedBy,
    live: s.live,
    resumable: s.resumable,
    message: s.message,
    stored: true,
    imported: !!s.config.imported,
  };
}

/** Recompute "changes from the previous run" over the list in order (imported adapters are no runs to compare with). */
function withChanges(runs: RunView[]): RunView[] {
  return runs.map((r, i) => {
    const prev = runs.slice(0, i).findLast((p) => !p.imported);
    if (r.imported || !prev) return { ...r, changes: null };
    const changes = diffConfigs(prev.config, r.config);
    if (prev.dataset !== r.dataset) changes.unshift(`data ${prev.dataset}→${r.dataset}`);
    return { ...r, changes };
  });
}

export class RunsState {
  /** Oldest first (replaced whole: $state.raw). */
  runs = $state.raw<RunView[]>([]);
  /** Runs in storage this version cannot read (shown as a count). */
  unreadable = $state(0);
  error = $state.raw<FriendlyError | null>(null);
  busy = $state(false);
  loaded = $state(false);
  /** The run the Train panel streams into: its view is kept as the messages say, not as the store last said. */
  private liveId: string | null = null;

  /** Read the list from the store again (the live run keeps its in-page numbers). */
  async refresh(): Promise<void> {
    try {
      const list = await workerApi().listRuns();
      const live = this.liveId ? this.runs.find((r) => r.id === this.liveId) : undefined;
      const stored = list.map(fromSummary);
      this.unreadable = stored.filter((r) => !r).length;
      const views = stored.filter((r): r is RunView => r !== null).map((v) => (live && v.id === live.id ? { ...v, ...pickLive(live), live: v.live, lockedBy: v.lockedBy, checkpoint: v.checkpoint } : v));
      // Runs this page could not store stay listed for the page's life.
      const local = this.runs.filter((r) => !r.stored);
      this.runs = withChanges([...views, ...local].sort((a, b) => a.createdAt - b.createdAt));
      this.loaded = true;
    } catch (e) {
      this.error = friendlyError(e);
    }
  }

  /** The Train panel started (or resumed) a run: show it at once, with the curve it fills. */
  begin(id: string, name: string, createdAt: number, stored: boolean, config: RunConfig, dataset: string, curve: Curve): void {
    this.liveId = id;
    const existing = this.runs.find((r) => r.id === id);
    const view: RunView = {
      id,
      name,
      config,
      dataset,
      model: existing?.model ?? '',
      source: existing?.source ?? null,
      autosave: existing?.autosave ?? null,
      status: 'running',
      step: existing?.checkpoint?.step ?? 0,
      totalSteps: existing?.totalSteps ?? 0,
      loss: null,
      evalLoss: null,
      referenceLoss: null,
      tokensPerSec: null,
      curve,
      changes: null,
      createdAt,
      checkpoint: existing?.checkpoint ?? null,
      lockedBy: null,
      live: true,
      resumable: false,
      message: null,
      stored,
      imported: false,
    };
    this.runs = withChanges(existing ? this.runs.map((r) => (r.id === id ? view : r)) : [...this.runs, view]);
  }

  /** Replace a record with its updated copy (the list is replaced whole: $state.raw). */
  update(id: string, patch: Partial<RunView>): void {
    this.runs = this.runs.map((r) => (r.id === id ? { ...r, ...patch } : r));
  }

  /** The live run ended: the store's word counts again. */
  end(): void {
    this.liveId = null;
  }

  /** The runs before the given one (for overlays), most recent last. */
  before(id: string): RunView[] {
    const i = this.runs.findIndex((r) => r.id === id);
    return i < 0 ? this.runs : this.runs.slice(0, i);
  }

  find(id: string): RunView | undefined {
    return this.runs.find((r) => r.id === id);
  }

  async rename(id: string, name: string): Promise<void> {
    await this.act(() => workerApi().renameRun(id, name));
  }

  async remove(id: string): Promise<void> {
    await this.act(() => workerApi().deleteRun(id));
  }

  /** Download the run with its checkpoint as one `.webtune` file. */
  async exportArchive(id: string): Promise<void> {
    await this.act(async () => {
      const { blob, fileName } = await workerApi().exportRun(id);
      downloadBlob(blob, fileName);
    }, false);
  }

  /** Download a stored LoRA run's adapter (its latest checkpoint) as the two PEFT files. */
  async exportPeft(id: string): Promise<void> {
    await this.act(async () => {
      const f = await workerApi().exportRunAdapter(id);
      for (const file of f.files) downloadBlob(new Blob([file.bytes], { type: 'application/octet-stream' }), file.name);
    }, false);
  }

  /** Download a stored LoRA run's adapter merged into the loaded base model, as a plain model folder or one model.onnx. */
  async exportMerged(id: string, format: 'folder' | 'onnx' = 'folder'): Promise<void> {
    await this.act(async () => {
      const f = await workerApi().exportRunMerged(id, format);
      for (const file of f.files) downloadBlob(new Blob([file.bytes], { type: 'application/octet-stream' }), file.name);
    }, false);
  }

  async importArchive(file: File): Promise<void> {
    await this.act(() => workerApi().importRun(file));
  }

  /** Show an error here (e.g. a resume refused because another tab trains the run). */
  fail(e: unknown): void {
    this.error = friendlyError(e);
  }

  private async act(what: () => Promise<unknown>, refresh = true): Promise<void> {
    this.busy = true;
    this.error = null;
    try {
      await what();
    } catch (e) {
      this.error = friendlyError(e);
    } finally {
      this.busy = false;
    }
    if (refresh) await this.refresh();
  }
}

function pickLive(r: RunView): Partial<RunView> {
  return {
    status: r.status,
    step: r.step,
    totalSteps: r.totalSteps,
    loss: r.loss,
    evalLoss: r.evalLoss,
    referenceLoss: r.referenceLoss,
    tokensPerSec: r.tokensPerSec,
    curve: r.curve,
  };
}
