// Open a Hugging Face checkpoint folder: config.json, safetensors (single file or sharded through
// model.safetensors.index.json), tokenizer files, generation_config.json. Validates every tensor the
// architecture needs against the config (names, shapes, dtypes) before anything is uploaded, and
// reads tensors one at a time so a model never has to sit in JS memory whole.
import { MissingFileError, readText, readTextIfPresent, type ModelFiles } from '../io/files';
import {
  SafetensorsFormatError,
  openSafetensors,
  toF32,
  type SafetensorsFile,
  type TensorInfo,
} from '../io/safetensors';
import { parseConfig, type ModelConfig } from './config';
import { expectedTensors } from './layout';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export interface GenerationDefaults {
  eosTokenIds: number[];
  bosTokenId: number | null;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
}

export interface Checkpoint {
  files: ModelFiles;
  config: ModelConfig;
  rawConfig: Record<string, unknown>;
  generation: GenerationDefaults;
  tokenizerJson: string | null;
  tokenizerConfigJson: string | null;
  /** HF tensor name → where it lives. */
  tensors: Map<string, { file: SafetensorsFile; info: TensorInfo }>;
  /** Read a floating-point tensor as f32 (F32/F16/BF16 on disk). */
  readF32(name: string): Promise<Float32Array>;
  /** The tensor's on-disk dtype. */
  dtypeOf(name: string): string;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/** GPT-2 on the Hub stores keys without the `transformer.` prefix; old files carry attention buffers. */
function canonicalName(name: string, arch: ModelConfig['architecture']): string | null {
  if (arch === 'gpt2') {
    if (/\.attn\.(masked_)?bias$/.test(name)) return null; // causal-mask buffers, not weights
    if (!name.startsWith('transformer.') && !name.startsWith('lm_head.')) return `transformer.${name}`;
  }
  return name;
}

export async function openCheckpoint(files: ModelFiles): Promise<Checkpoint> {
  if (!files.has('config.json')) throw new MissingFileError(files.name, 'config.json', 'every Hugging Face model folder has one');
  const configText = await readText(files, 'config.json');
  const config = parseConfig(configText, 'config.json');
  const rawConfig = JSON.parse(configText) as Record<string, unknown>;

  // Which safetensors files?
  let shardNames: string[];
  let indexMap: Record<string, string> | null = null;
  if (files.has('model.safetensors.index.json')) {
    const idxText = await readText(files, 'model.safetensors.index.json');
    let idx: { weight_map?: Record<string, string> };
    try {
      idx = JSON.parse(idxText) as typeof idx;
    } catch (e) {
      throw new CheckpointError(`model.safetensors.index.json: not valid JSON: ${(e as Error).message}`);
    }
    if (!idx.weight_map || typeof idx.weight_map !== 'object') {
      throw new CheckpointError('model.safetensors.index.json: field "weight_map" is missing');
    }
    indexMap = idx.weight_map;
    shardNames = [...new Set(Object.values(idx.weight_map))];
    for (const s of shardNames) if (!files.has(s)) throw new MissingFileError(files.name, s, 'listed in model.safetensors.index.json');
  } else if (files.has('model.safetensors')) {
    shardNames = ['model.safetensors'];
  } else {
    const bins = files.list().filter((f) => /\.(bin|pt|pth|gguf|h5|msgpack)$/.test(f));
    throw new MissingFileError(
      files.name,
      'model.safetensors',
      bins.length ? `found ${bins.join(', ')}: only safetensors weights are supported; convert with transformers' save_pretrained(safe_serialization=True)` : 'no weights found',
    );
  }

  const tensors = new Map<string, { file: SafetensorsFile; info: TensorInfo }>();
  for (const shard of shardNames) {
    const f = await openSafetensors(await files.open(shard));
    for (const [name, info] of f.tensors) {
      if (indexMap && indexMap[name] !== undefined && indexMap[name] !== shard) {
        throw new CheckpointError(`${shard}: tensor "${name}" is listed in model.safetensors.index.json under ${indexMap[name]}`);
      }
      const canon = canonicalName(name, config.architecture);
      if (canon === null) continue;
      if (tensors.has(canon)) throw new CheckpointError(`${shard}: tensor "${name}" appears in more than one file`);
      tensors.set(canon, { file: f, info });
    }
  }
  // Tied models sometimes still ship lm_head.weight; that's fine (we use the embedding).
  const expected = expectedTensors(config);
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) {
      const where = indexMap ? 'the sharded checkpoint' : shardNames[0];
      throw new CheckpointError(`${where}: tensor "${name}" is missing (config.json says ${config.hfClass} with ${config.numLayers} layers)`);
    }
    if (t.info.shape.length !== shape.length || t.info.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(
        `${t.file.source.name}: tensor "${name}" has shape [${t.info.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`,
      );
    }
    if (!FLOAT_DTYPES.has(t.info.dtype)) {
      throw new CheckpointError(`${t.file.source.name}: tensor "${name}" has dtype ${t.info.dtype}; supported: F32, F16, BF16`);
    }
  }

  const tokenizerJson = await readTextIfPresent(files, 'tokenizer.json');
  const tokenizerConfigJson = await readTextIfPresent(files, 'tokenizer_config.json');
  const generation = await readGenerationDefaults(files, config);

  const locate = (name: string): { file: SafetensorsFile; info: TensorInfo } => {
    const t = tensors.get(name);
    if (!t) throw new CheckpointError(`tensor "${name}" is not in the checkpoint`);
    return t;
  };
  return {
    files,
    config,
    rawConfig,
    generation,
    tokenizerJson,
    tokenizerConfigJson,
    tensors,
    dtypeOf: (name) => locate(name).info.dtype,
    async readF32(name) {
      const { file, info } = locate(name);
      const bytes = await file.source.read(info.start, info.byteLength);
      try {
        return toF32(bytes, info.dtype, file.source.name, name);
      } catch (e) {
        if (e instanceof SafetensorsFormatError) throw e;
        throw new CheckpointError(`${file.source.name}: tensor "${name}": ${(e as Error).message}`);
      }
    },
  };
}

/** generation_config.json's defaults (eos/bos ids, sampling settings), falling back to config.json's ids. */
export async function readGenerationDefaults(files: ModelFiles, config: ModelConfig): Promise<GenerationDefaults> {
  const genText = await readTextIfPresent(files, 'generation_config.json');
  let gen: Record<string, unknown> = {};
  try {
    if (genText) gen = JSON.parse(genText) as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(`${files.name}: generation_config.json is not valid JSON (${(e as Error).message})`);
  }
  const eos = gen.eos_token_id ?? null;
  return {
    eosTokenIds: typeof eos === 'number' ? [eos] : Array.isArray(eos) ? (eos as number[]) : config.eosTokenIds,
    bosTokenId: typeof gen.bos_token_id === 'number' ? gen.bos_token_id : config.bosTokenId,
    temperature: typeof gen.temperature === 'number' ? gen.temperature : undefined,
    topK: typeof gen.top_k === 'number' ? gen.top_k : undefined,
    topP: typeof gen.top_p === 'number' ? gen.top_p : undefined,
    repetitionPenalty: typeof gen.repetition_penalty === 'number' ? gen.repetition_penalty : undefined,
    maxNewTokens: typeof gen.max_new_tokens === 'number' ? gen.max_new_tokens : undefined,
  };
}
