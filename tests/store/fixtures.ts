// Shared pieces of the store tests: a fresh database per test (fake-indexeddb), a realistic trainer
// snapshot, a fake navigator.storage, a fake Web Locks manager, and write-failure injection.
import 'fake-indexeddb/auto';
import { fromF32, writeSafetensors, type TensorToWrite } from '../../src/io/safetensors';
import { openStore, type OpenStoreOptions, type StorageManagerLike, type Store } from '../../src/store/db';
import type { LockManagerLike } from '../../src/store/lock';
import type { TrainSnapshot } from '../../src/store/checkpoints';
import type { TrainConfig, TrainEvent, TrainStateMeta } from '../../src/tune/trainer';

let dbCount = 0;
export const freshName = (): string => `webtune-test-${process.pid}-${++dbCount}`;

export async function freshStore(options: OpenStoreOptions = {}): Promise<Store> {
  return openStore({ name: freshName(), storage: null, ...options });
}

export function fakeStorage(usage: number, quota: number): StorageManagerLike & { persistCalls: number; set(usage: number, quota: number): void } {
  let persisted = false;
  return {
    persistCalls: 0,
    set(u, q) {
      usage = u;
      quota = q;
    },
    estimate: async () => ({ usage, quota }),
    persisted: async () => persisted,
    async persist() {
      this.persistCalls++;
      persisted = true;
      return true;
    },
  };
}

/** Deterministic values (an LCG), so a round trip can be compared byte for byte. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.02;
  }
  return out;
}

export const trainConfig: TrainConfig = {
  method: { method: 'lora', lora: { r: 8, alpha: 16, dropout: 0.05, targets: ['q_proj', 'v_proj'], rslora: false } },
  optimizer: { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
  schedule: 'cosine',
  warmupSteps: 10,
  batchSize: 4,
  gradAccum: 1,
  steps: 1000,
  seed: 7,
  shuffle: true,
  evalEvery: 50,
  padId: 0,
};

/**
 * What Trainer.snapshot() returns for a LoRA r=8 on q_proj + v_proj of SmolLM2-135M (30 layers,
 * C = 576, kv dim 192): 460,800 trainable values × (param, m, v) × 4 bytes ≈ 5.5 MB.
 */
export function loraSnapshot(step: number, options: { layers?: number; seed?: number } = {}): TrainSnapshot<TrainStateMeta> {
  const layers = options.layers ?? 30;
  const r = 8;
  const C = 576;
  const list: TensorToWrite[] = [];
  let k = options.seed ?? step;
  for (let l = 0; l < layers; l++) {
    for (const [proj, out] of [['q_proj', C], ['v_proj', 192]] as const) {
      for (const [part, shape] of [['lora_A', [r, C]], ['lora_B', [out, r]]] as const) {
        for (const suffix of ['param', 'adam_m', 'adam_v']) {
          list.push({ name: `model.layers.${l}.self_attn.${proj}.${part}::${suffix}`, dtype: 'F32', shape, data: fromF32(values(shape[0] * shape[1], ++k), 'F32') });
        }
      }
    }
  }
  const history: TrainEvent[] = Array.from({ length: step }, (_, i) => ({
    kind: 'step',
    step: i + 1,
    totalSteps: 1000,
    loss: i === 3 ? Number.NaN : 3 - i * 0.001,
    lr: 2e-4,
    gradNorm: 0.5,
    tokens: (i + 1) * 512,
    tokensPerSec: 1000,
    elapsedSec: i,
    etaSec: 1000 - i,
    ...(i === 3 ? { skipped: true } : {}),
  }));
  const meta: TrainStateMeta = {
    version: 1,
    step,
    adamStep: step,
    dropoutOffset: step * 4096,
    tokens: step * 512,
    cursor: { version: 1, seed: 7, shuffle: true, epoch: 0, index: step * 4, size: 10_000, fingerprint: 'abc123' },
    config: trainConfig,
    history,
  };
  return { meta, tensors: writeSafetensors(list, { format: 'webtune-train-state' }) };
}

/** One origin's Web Locks, shared by the "tabs" of a test. */
export function fakeLockManager(): LockManagerLike {
  const held = new Set<string>();
  return {
    async request(name, options, callback) {
      if (held.has(name)) {
        if (options.ifAvailable) return callback(null);
        throw new Error('fake LockManager: waiting for a lock is not implemented');
      }
      held.add(name);
      try {
        return await callback({ name, mode: 'exclusive' });
      } finally {
        held.delete(name);
      }
    },
    async query() {
      return { held: [...held].map((name) => ({ name })) };
    },
  };
}

export type WriteOp = 'put' | 'add' | 'delete';

/**
 * Make matching writes fail the way IndexedDB fails them: the request errors (name `errorName`) when
 * its turn comes, after the earlier requests of the transaction have already run, and the
 * transaction aborts and rolls those back. A failure midway, not before the transaction starts.
 * Relies on fake-indexeddb's request queue (`_execRequestAsync`). Returns `restore`.
 */
export function failWrites(match: (store: string, op: WriteOp, args: unknown[]) => boolean, errorName = 'QuotaExceededError'): () => void {
  const proto = (globalThis as unknown as { IDBObjectStore: { prototype: Record<string, unknown> } }).IDBObjectStore.prototype;
  const originals = new Map<WriteOp, (...a: unknown[]) => unknown>();
  for (const op of ['put', 'add', 'delete'] as const) {
    const orig = proto[op] as (...a: unknown[]) => unknown;
    originals.set(op, orig);
    proto[op] = function (this: { name: string; transaction: { _execRequestAsync(o: unknown): unknown } }, ...args: unknown[]) {
      if (match(this.name, op, args)) {
        return this.transaction._execRequestAsync({
          operation: () => {
            throw new DOMException(errorName === 'QuotaExceededError' ? 'The quota has been exceeded.' : 'injected failure', errorName);
          },
          source: this,
        });
      }
      return orig.apply(this, args);
    };
  }
  return () => {
    for (const [op, orig] of originals) proto[op] = orig;
  };
}
