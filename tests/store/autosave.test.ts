import { describe, expect, it } from 'vitest';
import { Autosave, DEFAULT_AUTOSAVE, autosaveDecision, checkPolicy, type AutosavePolicy } from '../../src/store/autosave';

const policy = (over: Partial<AutosavePolicy> = {}): AutosavePolicy => ({ ...DEFAULT_AUTOSAVE, everySteps: 10, everyMs: 60_000, ...over });
const min = 60_000;

describe('autosave policy', () => {
  it('saves every N steps since the last save', () => {
    const s = { lastSavedStep: 0, lastSavedAt: 0, lastSaveMs: 0 };
    expect(autosaveDecision(policy(), s, { kind: 'step', step: 9, now: 1000 })).toBeNull();
    expect(autosaveDecision(policy(), s, { kind: 'step', step: 10, now: 1000 })).toBe('steps');
    // counted from a resume point, not from step 0
    expect(autosaveDecision(policy(), { ...s, lastSavedStep: 73 }, { kind: 'step', step: 82, now: 1000 })).toBeNull();
    expect(autosaveDecision(policy(), { ...s, lastSavedStep: 73 }, { kind: 'step', step: 83, now: 1000 })).toBe('steps');
  });

  it('saves every M minutes when steps are slow', () => {
    const s = { lastSavedStep: 0, lastSavedAt: 0, lastSaveMs: 0 };
    expect(autosaveDecision(policy(), s, { kind: 'step', step: 2, now: min - 1 })).toBeNull();
    expect(autosaveDecision(policy(), s, { kind: 'step', step: 2, now: min })).toBe('time');
    expect(autosaveDecision(policy({ everyMs: 0 }), s, { kind: 'step', step: 2, now: 100 * min })).toBeNull();
    expect(autosaveDecision(policy({ everySteps: 0 }), s, { kind: 'step', step: 1000, now: 1000 })).toBeNull();
  });

  it('saves on pause, stop and done, unless nothing changed since the last save or the policy says no', () => {
    const s = { lastSavedStep: 40, lastSavedAt: 0, lastSaveMs: 50_000 };
    expect(autosaveDecision(policy(), s, { kind: 'pause', step: 41, now: 1 })).toBe('pause');
    expect(autosaveDecision(policy(), s, { kind: 'stop', step: 41, now: 1 })).toBe('stop');
    expect(autosaveDecision(policy(), s, { kind: 'done', step: 41, now: 1 })).toBe('done');
    expect(autosaveDecision(policy(), s, { kind: 'pause', step: 40, now: 1 })).toBeNull();
    expect(autosaveDecision(policy({ onPause: false }), s, { kind: 'pause', step: 41, now: 1 })).toBeNull();
    expect(autosaveDecision(policy({ onStop: false, onDone: false }), s, { kind: 'stop', step: 41, now: 1 })).toBeNull();
  });

  it('keeps periodic saves under the overhead budget after a slow save', () => {
    // The last save took 3 s; at 10 % overhead the next periodic save waits 30 s.
    const s = { lastSavedStep: 0, lastSavedAt: 0, lastSaveMs: 3000 };
    expect(autosaveDecision(policy(), s, { kind: 'step', step: 50, now: 29_999 })).toBeNull();
    expect(autosaveDecision(policy(), s, { kind: 'step', step: 50, now: 30_000 })).toBe('steps');
  });

  it('the tracker follows a run', () => {
    const a = new Autosave({ everySteps: 5, everyMs: 0 }, 0, 0);
    const saves: number[] = [];
    for (let step = 1, t = 0; step <= 17; step++, t += 100) {
      if (a.check({ kind: 'step', step, now: t })) {
        saves.push(step);
        a.saved(step, t + 10, 10);
      }
    }
    expect(saves).toEqual([5, 10, 15]);
    expect(a.check({ kind: 'stop', step: 17, now: 2000 })).toBe('stop');
    expect(() => checkPolicy(policy({ maxOverhead: 0 }))).toThrow(RangeError);
    expect(() => new Autosave({ everySteps: 1.5 })).toThrow(/everySteps/);
  });
});
