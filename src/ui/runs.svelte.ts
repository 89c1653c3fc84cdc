// The run history of this page (in memory for now; IndexedDB persistence comes later): each run's
// configuration, what changed from the run before ("lr 2e-4→1e-4, r 8→16"), its outcome and its
// training-loss curve, for overlaying on the current run's chart.
import { diffConfigs, type RunConfig } from './run-config';

export type RunStatus = 'running' | 'done' | 'stopped' | 'error';

export interface Curve {
  x: number[];
  y: number[];
}

export interface RunRecord {
  id: number;
  config: RunConfig;
  dataset: string;
  status: RunStatus;
  step: number;
  totalSteps: number;
  /** Last training loss, last validation loss (null until measured). */
  loss: number | null;
  evalLoss: number | null;
  /** Training loss by step (shared with the Train panel while the run goes). */
  curve: Curve;
  /** Changes from the previous run's configuration; null for the first run. */
  changes: string[] | null;
  startedAt: number;
}

export class RunsState {
  runs = $state.raw<RunRecord[]>([]);
  private nextId = 1;

  begin(config: RunConfig, dataset: string, curve: Curve): RunRecord {
    const prev = this.runs[this.runs.length - 1];
    const changes = prev ? diffConfigs(prev.config, config) : null;
    if (changes && prev.dataset !== dataset) changes.unshift(`data ${prev.dataset}→${dataset}`);
    const rec: RunRecord = {
      id: this.nextId++,
      config,
      dataset,
      status: 'running',
      step: 0,
      totalSteps: 0,
      loss: null,
      evalLoss: null,
      curve,
      changes,
      startedAt: Date.now(),
    };
    this.runs = [...this.runs, rec];
    return rec;
  }

  /** Replace a record with its updated copy (the list is replaced whole: $state.raw). */
  update(id: number, patch: Partial<RunRecord>): void {
    this.runs = this.runs.map((r) => (r.id === id ? { ...r, ...patch } : r));
  }

  /** The runs before the given one (for overlays), most recent last. */
  before(id: number): RunRecord[] {
    return this.runs.filter((r) => r.id < id);
  }
}
