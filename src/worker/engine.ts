// The engine behind the worker API: owns the GPU context, the loaded model, its tokenizer and the
// KV-cache session. Independent of comlink (worker.ts exposes it), so it could run in-thread too.
import type { GpuContext } from '../gpu/context';
import type { Checkpoint } from '../model/checkpoint';
import { openForApp } from '../model/open';
import { parameterCount } from '../model/config';
import { generate, TextStreamer } from '../model/generate';
import { GpuModel, type WeightDType, type WeightSource } from '../model/gpu-model';
import { InferenceSession } from '../model/inference';
import { inferencePlan } from '../model/memory';
import { TextTokenizer } from '../model/tokenizer';
import type {
  GenerationOptions,
  GenerationResult,
  GpuReport,
  GpuUnavailable,
  LoadProgress,
  ModelInfo,
  ModelSource,
  Prompt,
  TokenDelta,
  ModelApi,
  StoredModelSource,
} from './api';
import type { AdapterSet } from '../model/adapters';
import { BusyError, NoModelError, PromptError } from './errors';
import { resolveModelFiles, type SourceOptions } from './sources';
import { throttled } from './throttle';

/** How often progress and token callbacks may cross the boundary. */
const PROGRESS_MS = 100;
const TOKEN_MS = 50;

export interface Loaded {
  /** Where it came from, as a stored run remembers it (to load it again on resume). */
  source: StoredModelSource;
  ck: Checkpoint;
  /** What GpuModel.load uploads: `ck` itself, or a pre-quantized bitsandbytes checkpoint. */
  weights: WeightSource;
  /** A transformers + bitsandbytes 4-bit folder: the base is NF4 only (LoRA / QLoRA train on it). */
  prequantized: boolean;
  model: GpuModel;
  tokenizer: TextTokenizer | null;
  info: ModelInfo;
  session: InferenceSession | null;
}

/** How the training side (train.ts) takes part in the model's life. */
export interface TrainingHooks {
  /** Why the model may not be replaced now (a run is going), or null. */
  busyReason(): string | null;
  /** The last run's adapter, for generate({ adapter: true }); null when there is none. */
  adapters(): AdapterSet | null;
  /** The model is going away: free everything that refers to it. */
  release(): void;
}

/** Stored and imported adapters (adapters.ts): uploaded on demand for generate({ adapter: id }). */
export interface AdapterHooks {
  /** The adapter with this id, on the GPU for the loaded model (AdapterError / RunNotFoundError when it cannot be). */
  resolve(id: string, m: Loaded): Promise<AdapterSet>;
  /** The model is going away: free the uploaded adapters. */
  release(): void;
}

export class ModelEngine implements ModelApi {
  /** Set by the training side. */
  training: TrainingHooks | null = null;
  /** Set by the adapter library. */
  adapterLibrary: AdapterHooks | null = null;
  private context: Promise<GpuContext> | null = null;
  private recovering: Promise<Loaded> | null = null;
  private loaded: Loaded | null = null;
  private loading: AbortController | null = null;
  private generating: { abort: AbortController; done: Promise<unknown> } | null = null;

  constructor(
    private readonly acquire: () => Promise<GpuContext>,
    private readonly sourceOptions: Pick<SourceOptions, 'cache'> = {},
  ) {}

  private gpu(): Promise<GpuContext> {
    const p = (this.context ??= this.acquire().then(
      (ctx) => {
        // A lost device is never used again: the next call acquires a new one.
        void ctx.lost.then(() => {
          if (this.context === p) this.context = null;
        });
        return ctx;
      },
      (e) => {
        this.context = null;
        throw e;
      },
    ));
    return p;
  }

  /**
   * The model's device was lost (driver reset, GPUDevice.destroy()): acquire a new device and upload
   * the weights again from the files still held in memory. The KV cache goes; training rebuilds its
   * own state from the last checkpoint (train.ts). Resolves at once when the device is fine.
   */
  async recoverDevice(): Promise<Loaded> {
    const m = this.loaded;
    if (!m) throw new NoModelError();
    if (!m.model.ctx.isLost) return m;
    this.recovering ??= (async () => {
      try {
        m.session?.release();
      } catch {
        // its buffers went with the device
      }
      m.session = null;
      try {
        m.model.release();
      } catch {
        // idem
      }
      const ctx = await this.gpu();
      m.model = await GpuModel.load(ctx, m.weights, undefined, { weightDType: m.model.weightDType });
      return m;
    })().finally(() => (this.recovering = null));
    return this.recovering;
  }

  /**
   * Hold the loaded model's linear weights at another residency: NF4 for QLoRA (the base is quantized
   * on upload, as bitsandbytes does, and the f32 copy is freed), f32 for every other method. The
   * weights come again from the model's files, so changes a previous full fine-tune made to the
   * weights in place are not carried over. The KV cache goes; resolves at once when nothing changes.
   */
  async setWeightResidency(dtype: WeightDType, onProgress?: (p: { tensor: string; done: number; total: number }) => void): Promise<Loaded> {
    const m = this.loaded;
    if (!m) throw new NoModelError();
    // A pre-quantized folder has no full-precision weights to go back to.
    if (m.model.weightDType === dtype || m.prequantized) return m;
    await this.stopGeneration();
    await this.generating?.done.catch(() => {});
    m.session?.release();
    m.session = null;
    const ctx = m.model.ctx;
    m.model.release();
    m.model = await GpuModel.load(ctx, m.weights, onProgress, { weightDType: dtype });
    return m;
  }

  /** Test hook (?test-hooks): destroy the device as a driver reset would. */
  async testDestroyDevice(): Promise<void> {
    const ctx = this.loaded?.model.ctx ?? (this.context ? await this.context : null);
    ctx?.device.destroy();
  }

  async probeGpu(): Promise<GpuReport | GpuUnavailable> {
    try {
      const ctx = await this.gpu();
      return { ok: true, adapter: ctx.summary };
    } catch (e) {
      const err = e as Error;
      return { ok: false, name: err.name, message: err.message };
    }
  }

  async loadModel(source: ModelSource, onProgress?: (p: LoadProgress) => void): Promise<ModelInfo> {
    if (this.loading) throw new BusyError('a model is already loading: wait for it, or cancel it first');
    const busy = this.training?.busyReason();
    if (busy) throw new BusyError(busy);
    const abort = new AbortController();
    this.loading = abort;
    const progress = throttled(onProgress, PROGRESS_MS, (prev, p) => prev?.phase !== p.phase || p.phase === 'ready');
    const t0 = performance.now();
    try {
      // A new model replaces the old one: stop its generation and free its GPU memory first.
      await this.stopGeneration();
      await this.generating?.done.catch(() => {});
      this.unload();

      const resolved = await resolveModelFiles(source, {
        ...this.sourceOptions,
        signal: abort.signal,
        onDownload: (d) =>
          progress.push({
            phase: 'downloading',
            file: d.file,
            loadedBytes: d.overallLoadedBytes,
            totalBytes: d.overallTotalBytes,
            bytesPerSec: d.bytesPerSec,
            etaSec: d.etaSec,
            fromCache: d.fromCache,
          }),
      });
      progress.flush();
      progress.push({ phase: 'reading', detail: 'reading config.json, safetensors headers and the tokenizer' });
      const { ck, weights, prequantized } = await openForApp(resolved.files);
      const tokenizer = ck.tokenizerJson ? TextTokenizer.fromText(ck.tokenizerJson, ck.tokenizerConfigJson) : null;
      const notes = [...resolved.notes];
      if (prequantized) notes.push('a pre-quantized bitsandbytes 4-bit checkpoint: the base stays in NF4 on the GPU (never dequantized on the CPU); LoRA and QLoRA can train it, full fine-tuning cannot');
      if (!tokenizer && !notes.some((n) => n.includes('tokenizer'))) notes.push('no tokenizer.json: prompts must be given as token ids');
      if (tokenizer && tokenizer.vocabSize > ck.config.vocabSize) {
        notes.push(`the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${ck.config.vocabSize}: some text cannot be encoded`);
      }
      progress.push({ phase: 'reading', detail: 'acquiring the GPU' });
      const ctx = await this.gpu();
      const model = await GpuModel.load(ctx, weights, (p) => progress.push({ phase: 'uploading', tensor: p.tensor, done: p.done, total: p.total, bytes: p.bytes }));
      progress.flush();
      const info = describe(ck, tokenizer, ctx, resolved, source.kind, notes, performance.now() - t0);
      this.loaded = { source: storedSource(source, resolved.name), ck, weights, prequantized, model, tokenizer, info, session: null };
      progress.push({ phase: 'ready' });
      return info;
    } finally {
      progress.flush();
      this.loading = null;
    }
  }

  async cancelLoad(): Promise<void> {
    this.loading?.abort();
  }

  async generate(prompt: Prompt, options: GenerationOptions, onToken?: (d: TokenDelta) => void): Promise<GenerationResult> {
    if (this.loading) throw new BusyError('a model is loading: generate once it is ready');
    const m = this.loaded;
    if (!m) throw new NoModelError();
    if (this.generating) throw new BusyError('already generating: stop it first');
    if (m.model.ctx.isLost && !this.training?.busyReason()) await this.recoverDevice();
    // 'live' (or true): the current or last run's adapter, on the GPU already; another id: a stored
    // or imported adapter, uploaded now unless it is cached.
    const choice = options.adapter === true ? 'live' : options.adapter || null;
    let adapters: AdapterSet | null = null;
    if (choice === 'live') {
      adapters = this.training?.adapters() ?? null;
      if (!adapters) throw new PromptError('there is no trained adapter yet: train with LoRA first, or generate with the base model');
    } else if (choice) {
      if (!this.adapterLibrary) throw new PromptError(`there is no adapter "${choice}" here`);
      adapters = await this.adapterLibrary.resolve(choice, m);
      if (this.generating) throw new BusyError('already generating: stop it first');
      if (this.loaded !== m) throw new BusyError('the model changed while the adapter was loading: generate again');
    }
    const promptIds = this.promptIds(m, prompt);
    const c = m.ck.config;
    if (promptIds.length >= c.maxPositions) {
      throw new PromptError(`the prompt is ${promptIds.length} tokens, but this model's context holds ${c.maxPositions}: shorten it`);
    }
    const maxNew = Math.max(1, Math.min(Math.floor(options.maxNewTokens), c.maxPositions - promptIds.length));
    const capacity = promptIds.length + maxNew;
    if (!m.session || m.session.capacity < capacity) {
      m.session?.release();
      m.session = null;
      // Grow in steps so a slightly longer prompt does not reallocate the KV cache every time.
      m.session = new InferenceSession(m.model, Math.min(c.maxPositions, Math.max(capacity, 256)));
    }
    m.session.adapters = adapters;
    const stops = new Set(m.ck.generation.eosTokenIds);
    if (m.tokenizer?.eosTokenId != null) stops.add(m.tokenizer.eosTokenId);
    const streamer = m.tokenizer ? new TextStreamer((ids) => m.tokenizer!.decode(ids)) : null;
    let pendingText = '';
    let count = 0;
    // Text accumulates between sends; each send carries what arrived since the previous one.
    const deltas = throttled<number>(onToken && ((tokens) => {
      const text = pendingText;
      pendingText = '';
      return onToken({ text, tokens });
    }), TOKEN_MS);
    const abort = new AbortController();
    const run = generate(m.session, promptIds, {
      maxNewTokens: maxNew,
      temperature: options.temperature,
      topK: options.topK || undefined,
      topP: options.topP,
      repetitionPenalty: options.repetitionPenalty,
      seed: options.seed ?? 0,
      stopTokenIds: [...stops],
      signal: abort.signal,
      onToken: (id) => {
        count++;
        pendingText += streamer ? streamer.push(id) : `${count > 1 ? ' ' : ''}${id}`;
        deltas.push(count);
      },
    });
    this.generating = { abort, done: run };
    try {
      const res = await run;
      const text = m.tokenizer ? m.tokenizer.decode(res.ids) : '';
      const n = res.ids.length;
      const tokensPerSec = n > 1 && res.decodeMs > 0 ? ((n - 1) / res.decodeMs) * 1000 : n > 0 ? (n / Math.max(res.prefillMs, 1e-3)) * 1000 : 0;
      return { promptIds, ids: res.ids, text, stoppedBy: res.stoppedBy, prefillMs: res.prefillMs, decodeMs: res.decodeMs, tokensPerSec };
    } finally {
      deltas.flush();
      this.generating = null;
    }
  }

  async stopGeneration(): Promise<void> {
    this.generating?.abort.abort();
  }

  /** The loaded model (for the training side), or null. */
  get current(): Loaded | null {
    return this.loading ? null : this.loaded;
  }

  private promptIds(m: Loaded, prompt: Prompt): number[] {
    const V = m.ck.config.vocabSize;
    if ('ids' in prompt) {
      if (prompt.ids.length === 0) throw new PromptError('the prompt has no token ids');
      for (const id of prompt.ids) {
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new PromptError(`${id} is not a token id of this model (0 to ${V - 1})`);
      }
      return [...prompt.ids];
    }
    const tok = m.tokenizer;
    if (!tok) throw new PromptError('this model has no tokenizer.json, so text prompts cannot be encoded: give token ids instead');
    let ids: number[];
    if (prompt.chat) {
      if (!tok.hasChatTemplate) throw new PromptError('this model has no chat template (tokenizer_config.json): turn chat off');
      ids = tok.encode(tok.applyChatTemplate([{ role: 'user', content: prompt.text }], true), false);
    } else {
      ids = tok.encode(prompt.text, true);
    }
    if (ids.length === 0) throw new PromptError('the prompt is empty: type some text to continue');
    const bad = ids.find((id) => id >= V);
    if (bad !== undefined) throw new PromptError(`the tokenizer produced token ${bad}, outside this model's vocabulary of ${V}`);
    return ids;
  }

  private unload(): void {
    if (!this.loaded) return;
    this.training?.release();
    this.adapterLibrary?.release();
    this.loaded.session?.release();
    this.loaded.model.release();
    this.loaded = null;
  }
}

/** A source without its files or token: what a run keeps to load the model again. */
function storedSource(source: ModelSource, name: string): StoredModelSource {
  switch (source.kind) {
    case 'demo':
      return { kind: 'demo' };
    case 'hub':
      return source.endpoint ? { kind: 'hub', id: source.id, endpoint: source.endpoint } : { kind: 'hub', id: source.id };
    case 'url':
      return { kind: 'url', url: source.url };
    case 'files':
      return { kind: 'files', name };
  }
}

function describe(
  ck: Checkpoint,
  tokenizer: TextTokenizer | null,
  ctx: GpuContext,
  resolved: { name: string; fromCache: boolean },
  sourceKind: ModelSource['kind'],
  notes: string[],
  loadMs: number,
): ModelInfo {
  const c = ck.config;
  const dtypes: Record<string, number> = {};
  for (const t of ck.tensors.values()) {
    dtypes[t.info.dtype] = (dtypes[t.info.dtype] ?? 0) + t.info.shape.reduce((a, b) => a * b, 1);
  }
  const contextLength = Math.min(c.maxPositions, 2048);
  const g = ck.generation;
  return {
    name: resolved.name,
    sourceKind,
    architecture: c.hfClass,
    family: c.architecture,
    parameters: parameterCount(c),
    dtypes,
    layers: c.numLayers,
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    intermediate: c.intermediateSize,
    vocab: c.vocabSize,
    context: c.maxPositions,
    tiedEmbeddings: c.tieWordEmbeddings,
    hasTokenizer: tokenizer !== null,
    hasChatTemplate: tokenizer?.hasChatTemplate ?? false,
    generation: {
      temperature: g.temperature,
      topK: g.topK,
      topP: g.topP,
      repetitionPenalty: g.repetitionPenalty,
      maxNewTokens: g.maxNewTokens,
    },
    memory: {
      // GpuModel keeps frozen weights in f32 for now; f16 residency arrives with the memory planner.
      ...inferencePlan(c, { weightDType: 'f32', contextLength }),
      contextLength,
      maxBufferBytes: ctx.limits.maxBufferSize,
      maxBindingBytes: ctx.limits.maxStorageBufferBindingSize,
    },
    measuredWeightBytes: ctx.memory.report().liveByRole.weights,
    fromCache: resolved.fromCache,
    notes,
    loadMs,
  };
}
