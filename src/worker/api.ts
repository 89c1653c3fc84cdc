// The typed API of the webtune worker. The page talks to the worker only through this interface
// (wrapped with comlink); the GPU device, the model, the tokenizer and the KV cache live in the worker.
// Long operations take a callback (pass it through Comlink.proxy) and can be cancelled. Errors cross
// the boundary as Error objects whose `name` survives (e.g. UnsupportedModelError, HubNetworkError,
// CheckpointError); src/ui/errors.ts turns them into messages a person understands.
import type { AdapterSummary } from '../gpu/context';
import type { InferencePlan } from '../model/memory';

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

export interface WorkerApi {
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
