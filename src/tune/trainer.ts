// The training loop: batches from the data pipeline → optimizer steps on the engine, with the
// learning-rate schedule, periodic validation and reference ("forgetting") evaluation, progress
// events, cancellation, and a resumable state. Host-agnostic: saving to disk (Node) or IndexedDB
// (browser) is the caller's job, through `snapshot()` / `restore()`.
import type { GpuContext } from '../gpu';
import { fromF32, openSafetensors, readTensorF32, writeSafetensors } from '../io/safetensors';
import { bytesSource } from '../io/bytes';
import { carriedFileNames } from '../io/bnb';
import type { Checkpoint } from '../model/checkpoint';
import type { GpuModel } from '../model/gpu-model';
import { BatchIterator, evalBatches, type Batch, type DataCursor, type Example } from './data';
import { TrainingEngine, shiftTargets, type MicroBatch, type OptimizerSettings } from './engine';
import { planMethod, releasePlan, type MethodConfig, type MethodPlan } from './methods';
import { learningRate, type ScheduleName } from './schedule';

export interface TrainConfig {
  method: MethodConfig;
  optimizer: OptimizerSettings;
  schedule: ScheduleName;
  warmupSteps: number;
  batchSize: number;
  gradAccum: number;
  /** Optimizer steps; when absent, `epochs` over the training set. */
  steps?: number;
  epochs?: number;
  seed: number;
  shuffle: boolean;
  /** Evaluate every N optimizer steps (0: only at the end). */
  evalEvery: number;
  /** At most this many batches per evaluation (default: all). */
  maxEvalBatches?: number;
  padId: number;
}

export interface TrainEvent {
  kind: 'step' | 'eval' | 'done' | 'stopped';
  step: number;
  totalSteps: number;
  loss?: number;
  lr?: number;
  gradNorm?: number;
  /** Tokens processed so far (real, non-padding). */
  tokens: number;
  tokensPerSec: number;
  elapsedSec: number;
  etaSec: number;
  skipped?: boolean;
  evalLoss?: number;
  evalPerplexity?: number;
  referenceLoss?: number;
  referencePerplexity?: number;
}

export interface TrainData {
  train: Example[];
  validation: Example[] | null;
  /** General text unrelated to the task: its loss measures forgetting. */
  reference: Example[] | null;
}

export class NonFiniteLossError extends Error {
  override name = 'NonFiniteLossError';
}

export const TRAIN_STATE_VERSION = 1;

/** Everything needed to continue a run exactly (besides the base model and the data files). */
export interface TrainStateMeta {
  version: number;
  step: number;
  adamStep: number;
  dropoutOffset: number;
  tokens: number;
  cursor: DataCursor;
  config: TrainConfig;
  history: TrainEvent[];
}

export class Trainer {
  readonly plan: MethodPlan;
  readonly engine: TrainingEngine;
  readonly totalSteps: number;
  private iterator: BatchIterator;
  step = 0;
  tokens = 0;
  readonly history: TrainEvent[] = [];
  private stopRequested = false;

  constructor(
    readonly ctx: GpuContext,
    readonly model: GpuModel,
    readonly data: TrainData,
    readonly config: TrainConfig,
  ) {
    this.plan = planMethod(ctx, model, config.method, config.seed);
    this.engine = new TrainingEngine(ctx, model, this.plan, config.seed);
    this.iterator = new BatchIterator(data.train, { batchSize: config.batchSize, seed: config.seed, shuffle: config.shuffle, padId: config.padId });
    const perEpoch = Math.ceil(this.iterator.batchesPerEpoch / config.gradAccum);
    this.totalSteps = config.steps ?? Math.max(1, Math.round((config.epochs ?? 1) * perEpoch));
  }

  /** Ask the loop to stop after the current step (it then resolves with a 'stopped' event). */
  stop(): void {
    this.stopRequested = true;
  }

  /**
   * A batch as the engine takes it. T is padded up to a multiple of 8 (pad id, label −100) so few
   * distinct shapes — and activation workspaces — occur; causal attention makes trailing padding
   * invisible to the real tokens, so the loss is unchanged.
   */
  private toMicro(b: Batch): MicroBatch {
    const T = Math.ceil(b.T / 8) * 8;
    if (T === b.T) return { B: b.B, T, ids: b.inputIds, targets: shiftTargets(b.labels, b.B, T) };
    const ids = new Uint32Array(b.B * T).fill(this.config.padId);
    const labels = new Int32Array(b.B * T).fill(-100);
    for (let r = 0; r < b.B; r++) {
      ids.set(b.inputIds.subarray(r * b.T, (r + 1) * b.T), r * T);
      labels.set(b.labels.subarray(r * b.T, (r + 1) * b.T), r * T);
    }
    return { B: b.B, T, ids, targets: shiftTargets(labels, b.B, T) };
  }

  /** Loss and perplexity over a set of examples (eval mode: no dropout, nothing updated). */
  async evaluate(examples: Example[] | null): Promise<{ loss: number; perplexity: number } | null> {
    if (!examples || examples.length === 0) return null;
    let sum = 0;
    let count = 0;
    let n = 0;
    for (const b of evalBatches(examples, this.config.batchSize, 'longest', this.config.padId)) {
      if (this.config.maxEvalBatches !== undefined && n >= this.config.maxEvalBatches) break;
      n++;
      const mb = this.toMicro(b);
      if (!mb.targets.some((t) => t !== -100)) continue;
      const r = await this.engine.evaluate([mb]);
      sum += r.loss * r.count;
      count += r.count;
    }
    if (count === 0) return null;
    const loss = sum / count;
    return { loss, perplexity: Math.exp(loss) };
  }

  /** Run until `totalSteps` (or stop()). Events stream through `onEvent`; `onStep` may save. */
  async run(hooks: { onEvent?: (e: TrainEvent) => void; afterStep?: (step: number) => Promise<void> | void } = {}): Promise<TrainEvent> {
    const c = this.config;
    const start = performance.now();
    const startTokens = this.tokens;
    const startStep = this.step;
    let last: TrainEvent | null = null;
    const timing = () => {
      const elapsedSec = (performance.now() - start) / 1000;
      const done = this.step - startStep;
      const tokensPerSec = elapsedSec > 0 ? (this.tokens - startTokens) / elapsedSec : 0;
      const etaSec = done > 0 ? ((this.totalSteps - this.step) * elapsedSec) / done : NaN;
      return { elapsedSec, tokensPerSec, etaSec };
    };
    while (this.step < this.totalSteps) {
      if (this.stopRequested) {
        const e: TrainEvent = { kind: 'stopped', step: this.step, totalSteps: this.totalSteps, tokens: this.tokens, ...timing() };
        hooks.onEvent?.(e);
        return e;
      }
      const micro: MicroBatch[] = [];
      let tokens = 0;
      for (let i = 0; i < c.gradAccum; i++) {
        const b = this.iterator.next();
        tokens += b.tokens;
        micro.push(this.toMicro(b));
      }
      const update = this.step + 1;
      const lr = learningRate(c.optimizer.lr, c.schedule, update, c.warmupSteps, this.totalSteps);
      const r = await this.engine.trainStep(micro, c.optimizer, lr);
      this.step = update;
      this.tokens += tokens;
      const e: TrainEvent = {
        kind: 'step',
        step: this.step,
        totalSteps: this.totalSteps,
        loss: r.loss,
        lr,
        gradNorm: r.gradNorm,
        skipped: r.skipped,
        tokens: this.tokens,
        ...timing(),
      };
      const evalNow = (c.evalEvery > 0 && this.step % c.evalEvery === 0) || this.step === this.totalSteps;
      if (evalNow) {
        const v = await this.evaluate(this.data.validation);
        const ref = await this.evaluate(this.data.reference);
        if (v) {
          e.evalLoss = v.loss;
          e.evalPerplexity = v.perplexity;
        }
        if (ref) {
          e.referenceLoss = ref.loss;
          e.referencePerplexity = ref.perplexity;
        }
      }
      this.history.push(e);
      hooks.onEvent?.(e);
      last = e;
      if (r.skipped) {
        throw new NonFiniteLossError(
          `step ${this.step}: the loss or gradient norm is not finite (loss ${r.loss}, grad norm ${r.gradNorm}); the update was skipped and the weights are unchanged. ` +
            'Lower the learning rate, enable gradient clipping, or check the data for empty targets.',
        );
      }
      await hooks.afterStep?.(this.step);
    }
    const done: TrainEvent = { ...(last ?? { step: this.step, totalSteps: this.totalSteps, tokens: this.tokens, ...timing() }), kind: 'done' };
    hooks.onEvent?.(done);
    return done;
  }

  // ------------------------------------------------------------------ resumable state

  /** Read the trainable tensors and AdamW moments back (all GPU work finishes first) with the metadata. */
  async snapshot(): Promise<{ meta: TrainStateMeta; tensors: Uint8Array }> {
    const list = [];
    for (const t of this.plan.trainables) {
      const { m, v } = this.engine.momentsOf(t.param);
      for (const [suffix, tensor] of [['param', t.param], ['adam_m', m], ['adam_v', v]] as const) {
        list.push({ name: `${t.name}::${suffix}`, dtype: 'F32' as const, shape: t.param.shape, data: fromF32(await this.ctx.readF32(tensor), 'F32') });
      }
    }
    return {
      meta: {
        version: TRAIN_STATE_VERSION,
        step: this.step,
        adamStep: this.engine.step,
        dropoutOffset: this.engine.dropoutOffset,
        tokens: this.tokens,
        cursor: this.iterator.cursor,
        config: this.config,
        history: this.history,
      },
      tensors: writeSafetensors(list, { format: 'webtune-train-state' }),
    };
  }

  /** Continue from a snapshot taken by a trainer with the same model, method and data. */
  async restore(meta: TrainStateMeta, tensors: Uint8Array): Promise<void> {
    if (meta.version !== TRAIN_STATE_VERSION) throw new Error(`training state version ${meta.version} is not supported (expected ${TRAIN_STATE_VERSION})`);
    const st = await openSafetensors(bytesSource('optimizer.safetensors', tensors));
    for (const t of this.plan.trainables) {
      const { m, v } = this.engine.momentsOf(t.param);
      for (const [suffix, tensor] of [['param', t.param], ['adam_m', m], ['adam_v', v]] as const) {
        const name = `${t.name}::${suffix}`;
        if (!st.tensors.has(name)) throw new Error(`training state: tensor ${name} is missing: the state belongs to a different method or model`);
        this.ctx.write(tensor, await readTensorF32(st, name));
      }
    }
    this.step = meta.step;
    this.engine.step = meta.adamStep;
    this.engine.dropoutOffset = meta.dropoutOffset;
    this.tokens = meta.tokens;
    this.history.splice(0, this.history.length, ...meta.history);
    this.iterator = new BatchIterator(
      this.data.train,
      { batchSize: this.config.batchSize, seed: this.config.seed, shuffle: this.config.shuffle, padId: this.config.padId },
      meta.cursor,
    );
  }

  /**
   * Full / partial / BitFit results as a Hugging Face checkpoint's model.safetensors: trained tensors
   * read back from the GPU (GPT-2's split c_attn joined again), frozen ones copied from the base.
   */
  async exportModelSafetensors(base: Checkpoint): Promise<Uint8Array> {
    const trained = new Map<string, Float32Array>();
    for (const t of this.plan.trainables) trained.set(t.name, await this.ctx.readF32(t.param));
    const tensors = [];
    const C = this.model.config.hiddenSize;
    for (const [name, loc] of base.tensors) {
      let data = trained.get(name) ?? null;
      const fused = /^(.*\.c_attn)\.(weight|bias)$/.exec(name);
      if (!data && fused) {
        const parts = ['q', 'k', 'v'].map((p) => trained.get(`${fused[1]}[${p}].${fused[2]}`));
        if (parts.some(Boolean)) {
          const orig = await base.readF32(name);
          data = Float32Array.from(orig);
          parts.forEach((part, j) => {
            if (!part) return;
            if (fused[2] === 'bias') data!.set(part, j * C);
            else for (let i = 0; i < C; i++) data!.set(part.subarray(i * C, (i + 1) * C), i * 3 * C + j * C);
          });
        }
      }
      data ??= await base.readF32(name);
      const hubName = this.model.config.architecture === 'gpt2' ? name.replace(/^transformer\./, '') : name;
      tensors.push({ name: hubName, dtype: 'F32' as const, shape: loc.info.shape, data: fromF32(data, 'F32') });
    }
    return writeSafetensors(tensors, { format: 'pt' });
  }

  /**
   * The trained model as a Hugging Face model folder: model.safetensors (exportModelSafetensors),
   * the base's config.json, and its tokenizer and generation files carried over unchanged.
   */
  async exportCheckpointFiles(base: Checkpoint): Promise<Record<string, Uint8Array | string>> {
    const files: Record<string, Uint8Array | string> = {
      'config.json': `${JSON.stringify(base.rawConfig, null, 2)}\n`,
      'model.safetensors': await this.exportModelSafetensors(base),
    };
    for (const f of carriedFileNames(base.files)) {
      const src = await base.files.open(f);
      files[f] = (await src.read(0, src.size)).slice();
    }
    return files;
  }

  release(): void {
    this.engine.release();
    releasePlan(this.ctx, this.plan);
  }
}
