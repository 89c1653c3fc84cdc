// A run's whole configuration (training settings + how the data is read), its defaults, what changed
// from one run to the next ("lr 2e-4→1e-4, r 8→16"), and its two shareable forms: a link (the URL's
// hash, readable key=value pairs) and a JSON file. Pure functions: no Svelte, no worker.
import type { DataOptions, TrainSettings } from '../worker/api';

/** LoRA and QLoRA train adapters (the Playground can compare them; they export as PEFT files). */
export const usesLora = (method: TrainSettings['method']): boolean => method === 'lora' || method === 'qlora';

export interface RunConfig {
  settings: TrainSettings;
  data: DataOptions;
}

/** The CLI's defaults (src/cli/train.ts), with a sequence length that suits small models. */
export const DEFAULT_SETTINGS: TrainSettings = {
  method: 'lora',
  lora: { r: 8, alpha: 16, dropout: 0.05, targets: [], rslora: false },
  trainableLayers: 1,
  lr: 2e-4,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  schedule: 'constant',
  warmupSteps: 0,
  maxGradNorm: 1,
  batchSize: 4,
  gradAccum: 1,
  seqLen: 128,
  steps: 0,
  epochs: 1,
  seed: 0,
  shuffle: true,
  evalEvery: 10,
  maxEvalBatches: 0,
};

export const DEFAULT_DATA: DataOptions = { lossOn: 'completion', validationPercent: 10, skipBadRows: false, pack: false };

export function defaultConfig(): RunConfig {
  return { settings: structuredClone(DEFAULT_SETTINGS), data: { ...DEFAULT_DATA } };
}

type Kind = 'num' | 'int' | 'bool' | 'list' | 'enum';

/** Every field with its short name (used in links and in change lists) and how to read it back. */
interface Field {
  key: string;
  kind: Kind;
  values?: readonly string[];
  get: (c: RunConfig) => unknown;
  set: (c: RunConfig, v: never) => void;
}

const f = <T>(key: string, kind: Kind, get: (c: RunConfig) => T, set: (c: RunConfig, v: T) => void, values?: readonly string[]): Field => ({
  key,
  kind,
  values,
  get,
  set: set as (c: RunConfig, v: never) => void,
});

export const FIELDS: readonly Field[] = [
  f('method', 'enum', (c) => c.settings.method, (c, v) => (c.settings.method = v), ['lora', 'qlora', 'full', 'partial', 'bitfit']),
  f('r', 'int', (c) => c.settings.lora.r, (c, v) => (c.settings.lora.r = v)),
  f('alpha', 'num', (c) => c.settings.lora.alpha, (c, v) => (c.settings.lora.alpha = v)),
  f('dropout', 'num', (c) => c.settings.lora.dropout, (c, v) => (c.settings.lora.dropout = v)),
  f('targets', 'list', (c) => c.settings.lora.targets, (c, v) => (c.settings.lora.targets = v)),
  f('rslora', 'bool', (c) => c.settings.lora.rslora, (c, v) => (c.settings.lora.rslora = v)),
  f('layers', 'int', (c) => c.settings.trainableLayers, (c, v) => (c.settings.trainableLayers = v)),
  f('lr', 'num', (c) => c.settings.lr, (c, v) => (c.settings.lr = v)),
  f('wd', 'num', (c) => c.settings.weightDecay, (c, v) => (c.settings.weightDecay = v)),
  f('beta1', 'num', (c) => c.settings.beta1, (c, v) => (c.settings.beta1 = v)),
  f('beta2', 'num', (c) => c.settings.beta2, (c, v) => (c.settings.beta2 = v)),
  f('eps', 'num', (c) => c.settings.eps, (c, v) => (c.settings.eps = v)),
  f('schedule', 'enum', (c) => c.settings.schedule, (c, v) => (c.settings.schedule = v), ['constant', 'linear', 'cosine']),
  f('warmup', 'int', (c) => c.settings.warmupSteps, (c, v) => (c.settings.warmupSteps = v)),
  f('clip', 'num', (c) => c.settings.maxGradNorm, (c, v) => (c.settings.maxGradNorm = v)),
  f('batch', 'int', (c) => c.settings.batchSize, (c, v) => (c.settings.batchSize = v)),
  f('accum', 'int', (c) => c.settings.gradAccum, (c, v) => (c.settings.gradAccum = v)),
  f('seq', 'int', (c) => c.settings.seqLen, (c, v) => (c.settings.seqLen = v)),
  f('steps', 'int', (c) => c.settings.steps, (c, v) => (c.settings.steps = v)),
  f('epochs', 'num', (c) => c.settings.epochs, (c, v) => (c.settings.epochs = v)),
  f('seed', 'int', (c) => c.settings.seed, (c, v) => (c.settings.seed = v)),
  f('shuffle', 'bool', (c) => c.settings.shuffle, (c, v) => (c.settings.shuffle = v)),
  f('eval', 'int', (c) => c.settings.evalEvery, (c, v) => (c.settings.evalEvery = v)),
  f('evalBatches', 'int', (c) => c.settings.maxEvalBatches, (c, v) => (c.settings.maxEvalBatches = v)),
  f('lossOn', 'enum', (c) => c.data.lossOn, (c, v) => (c.data.lossOn = v), ['completion', 'all']),
  f('val', 'num', (c) => c.data.validationPercent, (c, v) => (c.data.validationPercent = v)),
  f('skipBad', 'bool', (c) => c.data.skipBadRows, (c, v) => (c.data.skipBadRows = v)),
  f('pack', 'bool', (c) => c.data.pack, (c, v) => (c.data.pack = v)),
];

/** 0.0002 → "2e-4", 16 → "16", 0.05 → "0.05". */
export function formatValue(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (Array.isArray(v)) return v.length ? v.join(',') : 'default';
  if (typeof v === 'number') {
    if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential().replace(/\.?0+e/, 'e');
    return String(Number(v.toPrecision(6)));
  }
  return String(v);
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** What changed from `prev` to `cur`, as "lr 2e-4→1e-4". Method-specific fields count only where they apply. */
export function diffConfigs(prev: RunConfig, cur: RunConfig): string[] {
  const out: string[] = [];
  const loraOnly = new Set(['r', 'alpha', 'dropout', 'targets', 'rslora']);
  const bothLora = usesLora(prev.settings.method) && usesLora(cur.settings.method);
  for (const fl of FIELDS) {
    if (loraOnly.has(fl.key) && !bothLora) continue;
    if (fl.key === 'layers' && !(prev.settings.method === 'partial' && cur.settings.method === 'partial')) continue;
    const a = fl.get(prev);
    const b = fl.get(cur);
    if (!same(a, b)) out.push(`${fl.key} ${formatValue(a)}→${formatValue(b)}`);
  }
  return out;
}

/** The configuration as a URL hash: `#cfg&method=lora&r=16&lr=0.0001…` (every field, so defaults may change safely). */
export function configToHash(c: RunConfig): string {
  const p = new URLSearchParams();
  for (const fl of FIELDS) {
    const v = fl.get(c);
    p.set(fl.key, fl.kind === 'bool' ? (v ? '1' : '0') : fl.kind === 'list' ? (v as string[]).join(',') : String(v));
  }
  return `#cfg&${p.toString()}`;
}

export class ConfigFormatError extends Error {
  override name = 'ConfigFormatError';
}

function readField(fl: Field, raw: string): unknown {
  switch (fl.kind) {
    case 'bool':
      if (raw === '1' || raw === 'true') return true;
      if (raw === '0' || raw === 'false') return false;
      throw new ConfigFormatError(`${fl.key} must be 0 or 1, got "${raw}"`);
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'enum':
      if (!fl.values!.includes(raw)) throw new ConfigFormatError(`${fl.key} must be one of ${fl.values!.join(', ')}, got "${raw}"`);
      return raw;
    case 'int':
    case 'num': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigFormatError(`${fl.key} must be a number, got "${raw}"`);
      if (fl.kind === 'int' && !Number.isInteger(n)) throw new ConfigFormatError(`${fl.key} must be a whole number, got "${raw}"`);
      return n;
    }
  }
}

/** A configuration from a URL hash written by configToHash; null when the hash holds none. Missing fields take defaults. */
export function configFromHash(hash: string): RunConfig | null {
  const h = hash.replace(/^#/, '');
  if (!h.startsWith('cfg')) return null;
  const p = new URLSearchParams(h.slice(3).replace(/^&/, ''));
  const c = defaultConfig();
  for (const fl of FIELDS) {
    const raw = p.get(fl.key);
    if (raw !== null) fl.set(c, readField(fl, raw) as never);
  }
  return c;
}

/** The JSON file form: { "webtune": "run-config", "version": 1, settings, data }. */
export function configToJson(c: RunConfig): string {
  return JSON.stringify({ webtune: 'run-config', version: 1, settings: c.settings, data: c.data }, null, 2);
}

export function configFromJson(text: string): RunConfig {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigFormatError(`not JSON: ${(e as Error).message}`);
  }
  const o = v as { webtune?: unknown; settings?: Record<string, unknown>; data?: Record<string, unknown> };
  if (!o || typeof o !== 'object' || o.webtune !== 'run-config' || typeof o.settings !== 'object') {
    throw new ConfigFormatError('this is not a webtune run configuration (expected {"webtune": "run-config", "settings": …})');
  }
  // Through the hash reader, so every field is checked the same way.
  const c = defaultConfig();
  const merged: RunConfig = {
    settings: { ...c.settings, ...(o.settings as Partial<TrainSettings>), lora: { ...c.settings.lora, ...((o.settings as Partial<TrainSettings>).lora ?? {}) } },
    data: { ...c.data, ...((o.data ?? {}) as Partial<DataOptions>) },
  };
  const back = configFromHash(configToHash(merged));
  if (!back) throw new ConfigFormatError('the configuration could not be read');
  return back;
}
