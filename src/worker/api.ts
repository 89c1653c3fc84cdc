// The typed API of the webtune worker. The page talks to the worker only through this interface
// (wrapped with comlink); the GPU device, the model, the tokenizer and the KV cache live in the worker.
// Long operations take a callback (pass it through Comlink.proxy) and can be cancelled. Errors cross
// the boundary as Error objects whose `name` survives (e.g. UnsupportedModelError, HubNetworkError,
// CheckpointError); src/ui/errors.ts turns them into messages a person understands.
import type { AdapterSummary } from '../gpu/context';
import type { InferencePlan } from '../model/memory';
import type { DatasetInfo, DatasetStats, PreviewRow, Problem } from '../tune/data';
import type { FitCheck, TrainMemoryPlan } from '../tune/memory-plan';
import type { MethodName } from '../tune/methods';
import type { ScheduleName } from '../tune/schedule';
import type { TrainEvent } from '../tune/trainer';
import type { CheckpointReason, FreeableItem, FreeableKind, RunStatus } from '../store';

export type { DatasetInfo, DatasetStats, PreviewRow, Problem, FitCheck, TrainMemoryPlan, MethodName, ScheduleName, TrainEvent };

export interface GpuReport {
  ok: true;
  adapter: AdapterSummary;
}

export interface GpuUnavailable {
  ok: false;
  /** Error name, e.g. WebGpuUnavailableError. */
  name: string;
  message: string;
}

// ── Loading a model ──────────────────────────────────────────────────────────────────────────────

export type ModelSource =
  /** The built-in demo model served from public/demo/; `baseUrl` is that folder's URL (the page knows it). */
  | { kind: 'demo'; baseUrl?: string }
  /**
   * Files picked or dropped in the page. `paths[i]` is the path of `files[i]` inside the picked folder
   * (webkitRelativePath or the drop's entry path; structured clone drops webkitRelativePath), else its name.
   */
  | { kind: 'files'; files: File[]; paths?: string[] }
  /** A Hub id `org/name[@revision]`; `endpoint` overrides https://huggingface.co (mirrors, tests). */
  | { kind: 'hub'; id: string; endpoint?: string; token?: string }
  /** Any http(s) folder holding config.json, model.safetensors, tokenizer.json… */
  | { kind: 'url'; url: string };

export type LoadProgress =
  | {
      phase: 'downloading';
      /** The file now arriving. */
      file: string;
      loadedBytes: number;
      /** null while some file's size is unknown. */
      totalBytes: number | null;
      bytesPerSec: number;
      etaSec: number | null;
      fromCache: boolean;
    }
  /** Parsing config.json, safetensors headers and the tokenizer; acquiring the GPU. */
  | { phase: 'reading'; detail: string }
  /** Uploading weights to the GPU, tensor by tensor. */
  | { phase: 'uploading'; tensor: string; done: number; total: number; bytes: number }
  | { phase: 'ready' };

export interface ModelInfo {
  /** Where it came from, for display: "demo", a folder name, a Hub id or a URL. */
  name: string;
  sourceKind: ModelSource['kind'];
  /** The Hugging Face class, e.g. LlamaForCausalLM. */
  architecture: string;
  family: 'llama' | 'qwen2' | 'gpt2';
  parameters: number;
  /** On-disk dtype → number of parameters stored in it. */
  dtypes: Record<string, number>;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  /** Maximum positions (context length). */
  context: number;
  tiedEmbeddings: boolean;
  hasTokenizer: boolean;
  hasChatTemplate: boolean;
  /** generation_config.json defaults, where given. */
  generation: {
    temperature?: number;
    topK?: number;
    topP?: number;
    repetitionPenalty?: number;
    maxNewTokens?: number;
  };
  /** Weights as resident on the GPU, KV cache for the whole context, activations of one forward. */
  memory: InferencePlan & {
    /** Context length the KV-cache figure is for. */
    contextLength: number;
    /** The adapter's limits the plan is compared with. */
    maxBufferBytes: number;
    maxBindingBytes: number;
  };
  /** Bytes actually allocated on the GPU after the load (weights), as the accountant measured them. */
  measuredWeightBytes: number;
  /** Every file came from the browser's cache: no network was used. */
  fromCache: boolean;
  /** Things worth knowing that did not stop the load (e.g. "no tokenizer.json: prompts must be token ids"). */
  notes: string[];
  loadMs: number;
}

// ── Generating ───────────────────────────────────────────────────────────────────────────────────

export type Prompt =
  /** Text; with `chat`, wrapped as one user message through the model's chat template. */
  | { text: string; chat?: boolean }
  /** Token ids, bypassing the tokenizer. */
  | { ids: number[] };

export interface GenerationOptions {
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  /** 1 = off. */
  repetitionPenalty?: number;
  seed?: number;
  /**
   * Generate with a LoRA adapter on the base weights: an AdapterInfo id from listAdapters() ('live'
   * is this page's current or last run), or true for 'live'. Default: the base weights only.
   */
  adapter?: boolean | string;
}

/** A streamed piece of output: `text` is new text since the previous delta (possibly several tokens). */
export interface TokenDelta {
  text: string;
  /** Tokens generated so far. */
  tokens: number;
}

export interface GenerationResult {
  promptIds: number[];
  /** Generated ids (a stop token, when one ended generation, included). */
  ids: number[];
  /** Generated text (special tokens skipped); '' when the model has no tokenizer. */
  text: string;
  stoppedBy: 'stop-token' | 'max-new-tokens' | 'context-full' | 'aborted';
  prefillMs: number;
  decodeMs: number;
  /** Decode speed: tokens after the first, per second of decoding. */
  tokensPerSec: number;
}

// ── Training data ────────────────────────────────────────────────────────────────────────────────

export type DatasetSource =
  /** The demo dataset served with the app (public/demo/dataset.jsonl; corpus.txt becomes the reference set). */
  | { kind: 'demo'; baseUrl?: string }
  /** A file the person picked or dropped (txt, jsonl, json, csv, tsv), read as text in the page. */
  | { kind: 'file'; name: string; text: string };

/** How rows become training examples (the sequence length comes from the run settings). */
export interface DataOptions {
  /** 'completion': loss on completions / assistant turns only; 'all': every token. */
  lossOn: 'completion' | 'all';
  /** Percent of the rows held out for validation (0: none). */
  validationPercent: number;
  /** Skip malformed rows (listed as problems) instead of refusing the file. */
  skipBadRows: boolean;
  /** Concatenate examples into full-length blocks. */
  pack: boolean;
}

export interface DatasetReport {
  ok: true;
  /** The file's name ("dataset.jsonl" for the demo). */
  name: string;
  info: DatasetInfo;
  stats: DatasetStats;
  /** The first rows as the model sees them, token by token, with the trained tokens flagged. */
  preview: PreviewRow[];
  /** Every problem row (warnings included) with its line number, at most PROBLEMS_SHOWN of them. */
  problems: Problem[];
  problemCount: number;
  /** General text whose loss measures forgetting, when there is one (the demo's corpus.txt). */
  reference: { name: string; examples: number } | null;
}

/** The file cannot be used: malformed rows (each with its line number), an empty file, … */
export interface DatasetRejected {
  ok: false;
  /** Error name: DatasetLineError, EmptyDatasetError, DatasetError. */
  name: string;
  message: string;
  problems: Problem[];
  problemCount: number;
}

// ── Training ─────────────────────────────────────────────────────────────────────────────────────

/** Everything a run is configured by, as the page edits it and shares it (link / JSON file). */
export interface TrainSettings {
  method: MethodName;
  /** LoRA: rank, alpha, dropout, target modules ([] = the architecture's defaults, or "all-linear"), rsLoRA scaling. */
  lora: { r: number; alpha: number; dropout: number; targets: string[]; rslora: boolean };
  /** partial: train the last N blocks. */
  trainableLayers: number;
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  schedule: ScheduleName;
  warmupSteps: number;
  /** 0: no clipping. */
  maxGradNorm: number;
  /** Rows per micro-batch. */
  batchSize: number;
  gradAccum: number;
  /** The longest sequence in tokens (longer rows are truncated). */
  seqLen: number;
  /** Optimizer steps; 0: run `epochs` over the training set instead. */
  steps: number;
  epochs: number;
  seed: number;
  shuffle: boolean;
  /** Evaluate (validation + reference loss, and a generated sample) every N steps; 0: only at the end. */
  evalEvery: number;
  /** At most this many batches per evaluation; 0: all. */
  maxEvalBatches: number;
}

/** The memory a run needs, for the chosen method and side by side for full fine-tuning, LoRA and QLoRA. */
export interface MemoryEstimate {
  chosen: TrainMemoryPlan;
  full: TrainMemoryPlan;
  lora: TrainMemoryPlan;
  qlora: TrainMemoryPlan;
  fit: { chosen: FitCheck; full: FitCheck; lora: FitCheck; qlora: FitCheck };
  limits: { maxBufferSize: number; maxStorageBufferBindingSize: number };
}

/** 'recovering': the GPU device was lost; the worker is getting a new one and reloading the last checkpoint. */
export type TrainPhase = 'preparing' | 'compiling' | 'running' | 'paused' | 'recovering' | 'stopping' | 'done' | 'stopped' | 'error';

/** What a run streams back, batched (several per callback). */
export type TrainMessage =
  | { kind: 'phase'; phase: TrainPhase; detail?: string }
  | { kind: 'started'; totalSteps: number; trainableParameters: number; trainExamples: number; validationExamples: number; referenceExamples: number }
  /** A step (with evalLoss / referenceLoss when it was an evaluation step), or the final 'done' / 'stopped'. */
  | { kind: 'event'; event: TrainEvent }
  /** At each evaluation: what the model now writes for a fixed prompt (greedy). */
  | { kind: 'sample'; step: number; prompt: string; text: string }
  /**
   * The run's record in the browser's storage (first message of a run). `stored` false: the browser
   * could not keep it (a notice says why); it lives only in this page.
   */
  | { kind: 'run'; id: string; name: string; createdAt: number; stored: boolean; resumedFrom: number | null }
  /** A resume (after a reload, or after a device loss): the history up to the checkpoint the run continues from. */
  | { kind: 'restored'; step: number; history: TrainEvent[]; samples: { step: number; prompt: string; text: string }[] }
  /**
   * A checkpoint was committed: `bytes` of tensors (trainable weights + AdamW moments); `readMs` the
   * GPU read-back, `writeMs` the one IndexedDB transaction.
   */
  | { kind: 'checkpoint'; step: number; bytes: number; readMs: number; writeMs: number; reason: CheckpointReason }
  /** Something the person should know that does not end the run: a full disk (the run pauses), a lost GPU. */
  | { kind: 'notice'; level: 'info' | 'warning' | 'error'; name: string; message: string };

/** When checkpoints are written during a run (pause, stop and the end always save). */
export interface AutosaveSettings {
  /** Every N optimizer steps (0: not by steps). */
  everySteps: number;
  /** Every M minutes (0: not by time). */
  everyMinutes: number;
}

export interface TrainOptions {
  /** Default: every 50 steps and every 5 minutes. */
  autosave?: AutosaveSettings;
}

export interface TrainResult {
  status: 'done' | 'stopped';
  step: number;
  totalSteps: number;
  final: TrainEvent;
  /** 'peft': a LoRA adapter; 'checkpoint': full / partial / BitFit changed the base weights. */
  exportKind: 'peft' | 'checkpoint';
}

/** Files to download (bytes transferred, not copied). */
export interface ExportedFiles {
  /** peft: adapter files; checkpoint: the trained model (full, partial, BitFit); merged: base + LoRA merged into one model; onnx: model.onnx. */
  kind: 'peft' | 'checkpoint' | 'merged' | 'onnx';
  /** Steps trained when exported. */
  step: number;
  files: { name: string; bytes: ArrayBuffer }[];
}

export interface TrainApi {
  /** Read and tokenize a dataset with the loaded model's tokenizer; problems come back with line numbers. */
  loadDataset(source: DatasetSource, options: DataOptions & { maxLength: number }): Promise<DatasetReport | DatasetRejected>;
  /** The memory estimate for these settings on the loaded model, against the adapter's limits. */
  planMemory(settings: TrainSettings): Promise<MemoryEstimate>;
  /**
   * Train on the loaded dataset; resolves when the run ends (done or stopped). Progress arrives through
   * `onMessage` (throttled; messages batched, none lost).
   */
  startTraining(settings: TrainSettings, onMessage?: (messages: TrainMessage[]) => void, options?: TrainOptions): Promise<TrainResult>;
  /**
   * Continue a stored run from its latest checkpoint, on the loaded model (the page loads the run's
   * model first) and the run's dataset from storage (or, when storage lost it, the dataset loaded now
   * if it is the same file). Takes the run's lock: refused with LockedRunError while another tab trains it.
   */
  resumeRun(runId: string, onMessage?: (messages: TrainMessage[]) => void, options?: TrainOptions): Promise<TrainResult>;
  /** Hold after the current step (the GPU idles; resume continues exactly). */
  pauseTraining(): Promise<void>;
  resumeTraining(): Promise<void>;
  /** Stop after the current step; startTraining then resolves with status 'stopped'. */
  stopTraining(): Promise<void>;
  /** The last run's result: the PEFT adapter (LoRA) or the model's safetensors + config (other methods). */
  exportAdapter(): Promise<ExportedFiles>;
  /** "Stop and save": stop the run after the current step (if one is running), then export. */
  stopAndSave(): Promise<ExportedFiles>;
  /**
   * A LoRA / QLoRA run's adapter merged into its base model: a plain Hugging Face model folder
   * (config.json, model.safetensors, tokenizer files) in the base's dtype unless `dtype` says otherwise.
   * QLoRA merges into the 4-bit base it trained on (dequantized), so the file is the model tried here.
   */
  exportMerged(options?: { dtype?: 'F32' | 'F16' | 'BF16' }): Promise<ExportedFiles>;
  /**
   * The last run's model as one ONNX file (opset 17, float32, KV cache in Optimum's layout): the trained model,
   * or for LoRA / QLoRA the adapter merged into the base first.
   */
  exportOnnx(): Promise<ExportedFiles>;
}

export interface ModelApi {
  /** Acquire (once) the GPU device in the worker and describe the adapter, or say why there is none. */
  probeGpu(): Promise<GpuReport | GpuUnavailable>;
  /** Load a model (replacing the current one), reporting phases through `onProgress` (throttled). */
  loadModel(source: ModelSource, onProgress?: (p: LoadProgress) => void): Promise<ModelInfo>;
  /** Stop a download in progress (bytes received are kept in the cache for resume). */
  cancelLoad(): Promise<void>;
  /** Generate from the loaded model, streaming text deltas through `onToken` (throttled). */
  generate(prompt: Prompt, options: GenerationOptions, onToken?: (d: TokenDelta) => void): Promise<GenerationResult>;
  /** Stop the generation in progress after the current token; its promise resolves with stoppedBy 'aborted'. */
  stopGeneration(): Promise<void>;
}

// ── Stored runs, checkpoints and space ───────────────────────────────────────────────────────────

export type { CheckpointReason, FreeableItem, FreeableKind, RunStatus };

/** A model source as a run remembers it (no files, no tokens): enough to load it again, or to name it. */
export type StoredModelSource =
  | { kind: 'demo' }
  | { kind: 'hub'; id: string; endpoint?: string }
  | { kind: 'url'; url: string }
  /** Files from this computer cannot be reopened without the person: they must pick the folder again. */
  | { kind: 'files'; name: string };

/** What a stored run's `config` holds (written by this version of webtune). */
export interface StoredRunConfig {
  settings: TrainSettings;
  data: DataOptions;
  model: StoredModelSource;
  /** ModelInfo.name of the model it trained (compared on resume). */
  modelName: string;
  /** ModelInfo.parameters, to tell two models of the same name apart. */
  modelParameters: number;
  /** The training file's name, and the reference (forgetting) file's, when there was one. */
  dataset: { name: string; reference: string | null };
  autosave: AutosaveSettings;
  /**
   * Set when the run is a PEFT adapter imported from files, not trained here: its checkpoint holds the
   * LoRA tensors only (nothing to resume), and `settings` carries the adapter's LoRA settings.
   */
  imported?: { files: string[]; importedAt: number; /** The file's base_model_name_or_path (kept for export). */ baseModel?: string | null };
}

export interface RunSummary {
  id: string;
  name: string;
  createdAt: number;
  updatedAt: number;
  status: RunStatus;
  /** Why it failed or paused, when known. */
  message: string | null;
  /** null: a run this version of webtune cannot read (imported from elsewhere, damaged). */
  config: StoredRunConfig | null;
  step: number;
  totalSteps: number;
  /** Training loss by step, as recorded at the last checkpoint. */
  curve: { x: number[]; y: number[] };
  lastLoss: number | null;
  lastEvalLoss: number | null;
  /** Last loss on the reference (general) text: how much the run forgot. */
  lastReferenceLoss: number | null;
  /** Training speed at the last recorded step (tokens per second). */
  tokensPerSec: number | null;
  checkpoint: { id: string; step: number; bytes: number; savedAt: number; reason: CheckpointReason } | null;
  /** Who trains it now (a tab's label), this tab included; null when nobody does. */
  lockedBy: string | null;
  /** This tab's worker trains it now. */
  live: boolean;
  /** Unfinished, nobody trains it, and it can be continued (from its checkpoint, or from the start). */
  resumable: boolean;
}

// ── Adapters for the Playground ──────────────────────────────────────────────────────────────────

/** A LoRA adapter the loaded model can generate with. */
export interface AdapterInfo {
  /** What generate({ adapter }) takes: 'live' for this page's current or last run, else the stored run's id. */
  id: string;
  /** The stored run it comes from (null: this page's run, which the browser could not keep). */
  runId: string | null;
  /** The run's name (as renamed). */
  name: string;
  /** Steps trained (the checkpoint's step; for 'live', the trainer's now); 0 for an imported adapter. */
  step: number;
  /** For the adapter selector: "run 2, step 40", "my adapter (imported)". */
  label: string;
  kind: 'trained' | 'imported';
  r: number;
  alpha: number;
}

export interface AdapterApi {
  /**
   * The LoRA adapters for the loaded model, oldest first: this page's current or last run ('live'),
   * every stored LoRA run of this model with a checkpoint, and imported adapters. [] with no model.
   */
  listAdapters(): Promise<AdapterInfo[]>;
  /**
   * Import a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) for the loaded model:
   * checked against the model (AdapterError naming the file and tensor when it does not fit), then
   * kept in the browser as a run with status 'done' whose checkpoint holds the tensors.
   */
  importAdapter(files: File[], name?: string): Promise<AdapterInfo>;
  /** A stored LoRA run's adapter (its latest checkpoint) as PEFT files. */
  exportRunAdapter(runId: string): Promise<ExportedFiles>;
  /** A stored LoRA / QLoRA run's adapter merged into the loaded model (which must be the run's base), as a plain model folder or one model.onnx. */
  exportRunMerged(runId: string, format?: 'folder' | 'onnx'): Promise<ExportedFiles>;
}

export interface StorageReport {
  /** navigator.storage.estimate() (null where the browser does not say). */
  usage: number | null;
  quota: number | null;
  /** What could be deleted to make room, largest first (empty when the store cannot be opened). */
  freeable: FreeableItem[];
  /** Why the store cannot be used, when it cannot. */
  unavailable: string | null;
}

export interface StoreApi {
  /** Stored runs, most recently updated first. */
  listRuns(): Promise<RunSummary[]>;
  renameRun(id: string, name: string): Promise<void>;
  /** Delete a run with its checkpoints (refused with LockedRunError while a tab trains it). */
  deleteRun(id: string): Promise<void>;
  /** The run and its latest checkpoint as one `.webtune` file. */
  exportRun(id: string): Promise<{ fileName: string; blob: Blob }>;
  /** Import a `.webtune` file as a new run (resumable once its model and dataset are loaded). */
  importRun(file: Blob): Promise<RunSummary>;
  /** The label of the tab that trains the run now, or null. */
  runHolder(id: string): Promise<string | null>;
  storageReport(): Promise<StorageReport>;
  /** Delete cached model files, checkpoints or datasets (ids from storageReport's freeable list). */
  freeStorage(items: { kind: FreeableKind; id: string }[]): Promise<void>;
}

/**
 * Test hooks, present only when the page was opened with `?test-hooks` (the page names its worker
 * "webtune test-hooks"; src/ui/worker-client.ts also puts them on `window.__webtuneTestHooks`). The
 * e2e tests use them to make rare failures happen on demand; they are never part of the app's UI.
 */
export interface TestHooks {
  /** GPUDevice.destroy() on the worker's device: as if the driver reset mid-run. */
  __testDestroyDevice(): Promise<void>;
  /** Make the next checkpoint's IndexedDB write fail with a QuotaExceededError DOMException. */
  __testFailNextSave(): Promise<void>;
  /** Store the next downloads in chunks of this many bytes (default 16 MiB), so small files span several. */
  __testSetDownloadChunkBytes(bytes: number): Promise<void>;
}

export type WorkerApi = ModelApi & TrainApi & StoreApi & AdapterApi & Partial<TestHooks>;
