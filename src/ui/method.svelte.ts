// State of the Method panel: the run configuration being edited (method, every hyperparameter, how
// the data is read) and the live memory estimate the worker computes for it on the loaded model.
import type { MemoryEstimate, TrainSettings } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { defaultConfig, type RunConfig } from './run-config';
import { workerApi } from './worker-client';

export class MethodState {
  /** Edited in place by the panels' inputs (a small object: deep state is fine). */
  config = $state<RunConfig>(defaultConfig());
  estimate = $state.raw<MemoryEstimate | null>(null);
  estimateError = $state.raw<FriendlyError | null>(null);
  private asked = 0;

  /** The configuration as plain data (what a run starts with, what is shared). */
  snapshot(): RunConfig {
    return $state.snapshot(this.config) as RunConfig;
  }

  /** Replace the whole configuration (a shared link, a JSON file, an earlier run). */
  apply(c: RunConfig): void {
    this.config = structuredClone(c);
  }

  /**
   * Settings as the worker takes them: a number field emptied by the person binds as null, and falls
   * back to the default rather than failing the run.
   */
  settings(): TrainSettings {
    const s = $state.snapshot(this.config.settings) as TrainSettings;
    const d = defaultConfig().settings;
    const fix = <T extends object>(o: T, def: T): T => {
      for (const k of Object.keys(def) as (keyof T)[]) {
        const v = o[k];
        if (typeof def[k] === 'number' && (typeof v !== 'number' || !Number.isFinite(v))) o[k] = def[k];
      }
      return o;
    };
    fix(s, d);
    fix(s.lora, d.lora);
    return s;
  }

  /** Ask the worker for the estimate of the current settings (answers to older questions are dropped). */
  async refresh(): Promise<void> {
    const n = ++this.asked;
    try {
      const est = await workerApi().planMemory(this.settings());
      if (n === this.asked) {
        this.estimate = est;
        this.estimateError = null;
      }
    } catch (e) {
      if (n === this.asked) this.estimateError = friendlyError(e);
    }
  }

  clearEstimate(): void {
    this.asked++;
    this.estimate = null;
  }
}
