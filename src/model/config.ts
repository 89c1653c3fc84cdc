// Hugging Face config.json → a typed ModelConfig for the architectures webtune runs.
// Letters used across src/model: B batch, T sequence, C hidden size, V vocab, L layers,
// NH query heads, NKV key/value heads, D head dim, I MLP intermediate size.

export type Architecture = 'llama' | 'qwen2' | 'gpt2';

export interface RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  architecture: Architecture;
  /** The HF class name, e.g. LlamaForCausalLM. */
  hfClass: string;
  vocabSize: number; // V
  hiddenSize: number; // C
  numLayers: number; // L
  numHeads: number; // NH
  numKvHeads: number; // NKV
  headDim: number; // D
  intermediateSize: number; // I
  maxPositions: number;
  norm: 'rmsnorm' | 'layernorm';
  normEps: number;
  activation: 'silu' | 'gelu_new';
  /** RoPE (llama, qwen2) or learned absolute positions (gpt2). */
  positions: 'rope' | 'learned';
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** q/k/v projections carry biases (qwen2; gpt2's c_attn). */
  attentionBias: boolean;
  /** MLP and output projections carry biases (gpt2). */
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  torchDtype: string | null;
}

export class UnsupportedModelError extends Error {
  override name = 'UnsupportedModelError';
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly file: string,
    readonly field: string,
    detail: string,
  ) {
    super(`${file}: field "${field}": ${detail}`);
  }
}

const SUPPORTED: Record<string, Architecture> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  GPT2LMHeadModel: 'gpt2',
};

type Json = Record<string, unknown>;

function num(cfg: Json, file: string, field: string, fallback?: number): number {
  const v = cfg[field];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(file, field, 'is required');
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(file, field, `must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function posInt(cfg: Json, file: string, field: string, fallback?: number): number {
  const v = num(cfg, file, field, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(file, field, `must be a positive integer, got ${v}`);
  return v;
}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** Parse config.json text (or an object) into a ModelConfig, refusing what we cannot run. */
export function parseConfig(input: string | Json, file = 'config.json'): ModelConfig {
  let cfg: Json;
  if (typeof input === 'string') {
    try {
      cfg = JSON.parse(input) as Json;
    } catch (e) {
      throw new ConfigError(file, '(file)', `is not valid JSON: ${(e as Error).message}`);
    }
  } else cfg = input;
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new ConfigError(file, '(file)', 'is not a JSON object');

  const archs = Array.isArray(cfg.architectures) ? (cfg.architectures as unknown[]) : [];
  const modelType = typeof cfg.model_type === 'string' ? cfg.model_type : '';
  let hfClass = archs.find((a): a is string => typeof a === 'string' && a in SUPPORTED);
  if (!hfClass) {
    const byType = Object.entries(SUPPORTED).find(([, a]) => a === modelType);
    if (archs.length === 0 && byType) hfClass = byType[0];
  }
  if (!hfClass) {
    const named = archs.length ? archs.join(', ') : modelType || '(none given)';
    throw new UnsupportedModelError(
      `${file}: architecture ${named} is not supported. webtune runs ${Object.keys(SUPPORTED).join(', ')} ` +
        '(SmolLM/SmolLM2, TinyLlama, Llama 3.2, Qwen2/2.5, GPT-2/DistilGPT-2 and TinyStories models).',
    );
  }
  const architecture = SUPPORTED[hfClass];
  const eos = ids(cfg.eos_token_id);
  const common = {
    hfClass,
    architecture,
    bosTokenId: typeof cfg.bos_token_id === 'number' ? cfg.bos_token_id : null,
    eosTokenIds: eos,
    padTokenId: typeof cfg.pad_token_id === 'number' ? cfg.pad_token_id : null,
    torchDtype: typeof cfg.torch_dtype === 'string' ? cfg.torch_dtype : typeof cfg.dtype === 'string' ? cfg.dtype : null,
  };

  if (architecture === 'gpt2') {
    const C = posInt(cfg, file, 'n_embd');
    const NH = posInt(cfg, file, 'n_head');
    if (C % NH !== 0) throw new ConfigError(file, 'n_head', `n_embd ${C} is not divisible by n_head ${NH}`);
    const act = cfg.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
      throw new UnsupportedModelError(`${file}: field "activation_function" = ${JSON.stringify(act)} is not supported (gelu_new only)`);
    }
    if (cfg.scale_attn_by_inverse_layer_idx === true || cfg.reorder_and_upcast_attn === true) {
      throw new UnsupportedModelError(`${file}: GPT-2 options scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported`);
    }
    if (cfg.add_cross_attention === true) throw new UnsupportedModelError(`${file}: GPT-2 cross-attention is not supported`);
    return {
      ...common,
      vocabSize: posInt(cfg, file, 'vocab_size'),
      hiddenSize: C,
      numLayers: posInt(cfg, file, 'n_layer'),
      numHeads: NH,
      numKvHeads: NH,
      headDim: C / NH,
      intermediateSize: cfg.n_inner == null ? 4 * C : posInt(cfg, file, 'n_inner'),
      maxPositions: posInt(cfg, file, 'n_positions', 1024),
      norm: 'layernorm',
      normEps: num(cfg, file, 'layer_norm_epsilon', 1e-5),
      activation: 'gelu_new',
      positions: 'learned',
      ropeTheta: 0,
      ropeScaling: null,
      attentionBias: true,
      mlpBias: true,
      tieWordEmbeddings: cfg.tie_word_embeddings !== false,
    };
  }

  // llama and qwen2
  const C = posInt(cfg, file, 'hidden_size');
  const NH = posInt(cfg, file, 'num_attention_heads');
  const NKV = posInt(cfg, file, 'num_key_value_heads', NH);
  if (NH % NKV !== 0) throw new ConfigError(file, 'num_key_value_heads', `${NKV} does not divide num_attention_heads ${NH}`);
  const D = cfg.head_dim == null ? C / NH : posInt(cfg, file, 'head_dim');
  if (!Number.isInteger(D)) throw new ConfigError(file, 'num_attention_heads', `hidden_size ${C} is not divisible by ${NH}`);
  if (D % 2 !== 0) throw new ConfigError(file, 'head_dim', `RoPE needs an even head dimension, got ${D}`);
  const act = cfg.hidden_act ?? 'silu';
  if (act !== 'silu') throw new UnsupportedModelError(`${file}: field "hidden_act" = ${JSON.stringify(act)} is not supported (silu only)`);
  const ropeParams = (cfg.rope_parameters ?? null) as Json | null;
  const theta = num(ropeParams ?? cfg, file, ropeParams ? 'rope_theta' : 'rope_theta', 10000);
  const scalingRaw = (cfg.rope_scaling ?? (ropeParams && ropeParams.rope_type !== 'default' ? ropeParams : null)) as Json | null;
  let ropeScaling: RopeScaling | null = null;
  if (scalingRaw) {
    const t = scalingRaw.rope_type ?? scalingRaw.type;
    if (t === 'llama3') {
      ropeScaling = {
        type: 'llama3',
        factor: num(scalingRaw, file, 'factor'),
        lowFreqFactor: num(scalingRaw, file, 'low_freq_factor'),
        highFreqFactor: num(scalingRaw, file, 'high_freq_factor'),
        originalMaxPositionEmbeddings: posInt(scalingRaw, file, 'original_max_position_embeddings'),
      };
    } else if (t !== 'default' && t !== undefined) {
      throw new UnsupportedModelError(`${file}: field "rope_scaling" type ${JSON.stringify(t)} is not supported (llama3 only)`);
    }
  }
  if (architecture === 'llama' && cfg.mlp_bias === true) throw new UnsupportedModelError(`${file}: field "mlp_bias": true is not supported`);
  if (architecture === 'qwen2' && cfg.use_sliding_window === true) {
    throw new UnsupportedModelError(`${file}: field "use_sliding_window": true is not supported`);
  }
  const pretrainingTp = cfg.pretraining_tp;
  if (typeof pretrainingTp === 'number' && pretrainingTp !== 1) {
    throw new UnsupportedModelError(`${file}: field "pretraining_tp" = ${pretrainingTp} is not supported (1 only)`);
  }
  return {
    ...common,
    vocabSize: posInt(cfg, file, 'vocab_size'),
    hiddenSize: C,
    numLayers: posInt(cfg, file, 'num_hidden_layers'),
    numHeads: NH,
    numKvHeads: NKV,
    headDim: D,
    intermediateSize: posInt(cfg, file, 'intermediate_size'),
    maxPositions: posInt(cfg, file, 'max_position_embeddings', 2048),
    norm: 'rmsnorm',
    normEps: num(cfg, file, 'rms_norm_eps', 1e-6),
    activation: 'silu',
    positions: 'rope',
    ropeTheta: theta,
    ropeScaling,
    attentionBias: architecture === 'qwen2' ? true : cfg.attention_bias === true,
    mlpBias: false,
    tieWordEmbeddings: cfg.tie_word_embeddings === true,
  };
}

/** Parameter count from the config alone (the weights may be checked against it). */
export function parameterCount(c: ModelConfig): number {
  const C = c.hiddenSize;
  const D = c.headDim;
  const q = c.numHeads * D;
  const kv = c.numKvHeads * D;
  let perLayer: number;
  if (c.architecture === 'gpt2') {
    perLayer = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * c.intermediateSize + c.intermediateSize) + (c.intermediateSize * C + C);
  } else {
    perLayer = 2 * C + C * q + 2 * C * kv + q * C + 3 * C * c.intermediateSize;
    if (c.attentionBias) perLayer += q + 2 * kv;
  }
  let total = c.numLayers * perLayer + c.vocabSize * C;
  total += c.architecture === 'gpt2' ? c.maxPositions * C + 2 * C : C;
  if (!c.tieWordEmbeddings) total += c.vocabSize * C;
  return total;
}
