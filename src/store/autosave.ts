// When to save a checkpoint: every N optimizer steps, every M minutes, and when the user pauses or
// stops (and at the end). Pure: the trainer loop asks after each step, the store does the saving.
//
// One guard keeps saving cheap: after a save that took d ms, periodic saves wait at least
// d / maxOverhead ms (default 10 %), so a slow disk or a big full fine-tune cannot spend most of the
// time saving. Pause, stop and done always save (unless nothing changed since the last save).

export interface AutosavePolicy {
  /** Save after this many optimizer steps since the last save (0: never by steps). */
  everySteps: number;
  /** Save when this long has passed since the last save (0: never by time). */
  everyMs: number;
  onPause: boolean;
  onStop: boolean;
  onDone: boolean;
  /** Largest fraction of wall time periodic saves may take (0 < x ≤ 1). */
  maxOverhead: number;
}

export const DEFAULT_AUTOSAVE: AutosavePolicy = {
  everySteps: 100,
  everyMs: 5 * 60_000,
  onPause: true,
  onStop: true,
  onDone: true,
  maxOverhead: 0.1,
};

export interface AutosaveState {
  /** Step of the last save (or of the start / resume point). */
  lastSavedStep: number;
  /** When it was saved (ms, any clock the events use). */
  lastSavedAt: number;
  /** How long that save took (0 at start). */
  lastSaveMs: number;
}

export type AutosaveEvent = { kind: 'step' | 'pause' | 'stop' | 'done'; step: number; now: number };

export type SaveReason = 'steps' | 'time' | 'pause' | 'stop' | 'done';

export function checkPolicy(p: AutosavePolicy): AutosavePolicy {
  const bad = (what: string) => {
    throw new RangeError(`autosave: ${what}`);
  };
  if (!(Number.isInteger(p.everySteps) && p.everySteps >= 0)) bad(`everySteps must be a whole number ≥ 0, got ${p.everySteps}`);
  if (!(Number.isFinite(p.everyMs) && p.everyMs >= 0)) bad(`everyMs must be ≥ 0, got ${p.everyMs}`);
  if (!(p.maxOverhead > 0 && p.maxOverhead <= 1)) bad(`maxOverhead must be in (0, 1], got ${p.maxOverhead}`);
  return p;
}

/** Whether to save now, and why (null: not now). */
export function autosaveDecision(policy: AutosavePolicy, state: AutosaveState, event: AutosaveEvent): SaveReason | null {
  if (event.step <= state.lastSavedStep) return null; // nothing new since the last save
  switch (event.kind) {
    case 'pause':
      return policy.onPause ? 'pause' : null;
    case 'stop':
      return policy.onStop ? 'stop' : null;
    case 'done':
      return policy.onDone ? 'done' : null;
    case 'step': {
      const since = event.now - state.lastSavedAt;
      if (since < state.lastSaveMs / policy.maxOverhead) return null;
      if (policy.everySteps > 0 && event.step - state.lastSavedStep >= policy.everySteps) return 'steps';
      if (policy.everyMs > 0 && since >= policy.everyMs) return 'time';
      return null;
    }
  }
}

/** The decision with its state, for a training loop. */
export class Autosave {
  readonly policy: AutosavePolicy;
  state: AutosaveState;

  constructor(policy: Partial<AutosavePolicy> = {}, startStep = 0, now = Date.now()) {
    this.policy = checkPolicy({ ...DEFAULT_AUTOSAVE, ...policy });
    this.state = { lastSavedStep: startStep, lastSavedAt: now, lastSaveMs: 0 };
  }

  check(event: AutosaveEvent): SaveReason | null {
    return autosaveDecision(this.policy, this.state, event);
  }

  /** Record a save that finished at `now` after `tookMs`. */
  saved(step: number, now: number, tookMs: number): void {
    this.state = { lastSavedStep: step, lastSavedAt: now, lastSaveMs: Math.max(0, tookMs) };
  }
}
