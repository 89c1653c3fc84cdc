// transformers + bitsandbytes 4-bit checkpoints (`load_in_4bit=True, bnb_4bit_quant_type="nf4"`):
// write one from a float checkpoint (`webtune quantize`), and read one (e.g. a published `*-bnb-4bit`
// model) into packed host data for the NF4 matmuls, without dequantizing on the CPU.
//
// Layout, as the libraries write it (looked up in their sources):
//   bitsandbytes nn/modules.py Linear4bit._save_to_state_dict: the weight, the bias, then for k, v in
//     weight.quant_state.as_dict(packed=True): state_dict[prefix + "weight." + k] = v.
//   bitsandbytes utils.py QuantState.as_dict(packed=True): tensors
//       absmax            f32 [nblocks]; with double quantization the 8-bit codes, uint8 [nblocks]
//       quant_map         f32 [16] (the NF4 code book)
//       nested_absmax     f32 [ceil(nblocks / nested_blocksize)]            (double quantization)
//       nested_quant_map  f32 [256] (the dynamic 8-bit map, `.clone()`d)   (double quantization)
//     and "quant_state.bitsandbytes__nf4" = pack_dict_to_tensor(the non-tensor items): uint8 [len] of
//     json.dumps({quant_type, blocksize, dtype, shape, [nested_blocksize, nested_dtype, nested_offset]})
//     in that key order, Python's default separators (", ", ": "); dtype is str(torch dtype) without
//     "torch." (e.g. "bfloat16"); shape the original [out, in]; nested_offset = offset.item().
//   bitsandbytes backends/cuda/ops.py (quantize_4bit): the packed weight is uint8 [(n+1)//2, 1].
//   transformers quantizers/quantizer_bnb_4bit.py create_quantized_param: GPT-2 Conv1D weights
//     ([in, out]) are transposed to [out, in] before quantizing ("weights are saved in the correct
//     orientation"), so every quantized weight here is [out, in]. transformers integrations
//     (replace_with_bnb_linear, get_keys_to_not_convert) convert the linears of the blocks and keep
//     embeddings, norms and lm_head (the output embedding) unquantized.
//   transformers utils/quantization_config.py BitsAndBytesConfig.to_dict (config.json's
//     "quantization_config", keys sorted as PretrainedConfig.to_json_string writes them):
//     _load_in_4bit, _load_in_8bit, bnb_4bit_compute_dtype, bnb_4bit_quant_storage "uint8",
//     bnb_4bit_quant_type, bnb_4bit_use_double_quant, llm_int8_enable_fp32_cpu_offload,
//     llm_int8_has_fp16_weight, llm_int8_skip_modules, llm_int8_threshold (a float: post_init rejects
//     an int), load_in_4bit, load_in_8bit, quant_method "bitsandbytes".
// Unquantized tensors keep their dtype and bytes. Tensor names are the canonical ones (GPT-2 with
// `transformer.`, as save_pretrained writes a GPT2LMHeadModel); both spellings are read.

import type { Checkpoint } from '../model/checkpoint';
import { parseConfig, type ModelConfig } from '../model/config';
import { expectedTensors, linears, modelLayout, transposed, type LinearDesc } from '../model/layout';
import {
  NF4_VALUES,
  checkNf4Blocksize,
  nf4Blocks,
  quantizeNf4,
  type Nf4Tensor,
  type QuantizeOptions,
} from '../quant/nf4';
import { MissingFileError, readText, type ModelFiles } from './files';
import {
  openSafetensors,
  toF32,
  writeSafetensors,
  type SafetensorsFile,
  type TensorInfo,
  type TensorToWrite,
} from './safetensors';

export class BnbCheckpointError extends Error {
  override name = 'BnbCheckpointError';
  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor ? `: tensor "${tensor}"` : ''}: ${detail}`);
  }
}

/** Companion tensors of a Linear4bit weight, after `<module>.weight.`. */
export const QUANT_STATE_KEY = 'quant_state.bitsandbytes__nf4';
const COMPANION = /\.weight\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\.bitsandbytes__\w+)$/;

/** Torch dtype names (as QuantState writes `dtype`) of safetensors float dtypes. */
const TORCH_DTYPE: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

// ---------------------------------------------------------------- Python-compatible JSON text

/** A float that Python would write with a decimal point or exponent (json.dumps of a Python float). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** Python's repr(float): the shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e'); // shortest round-trip digits
  const exp = Number(expText);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const sign = neg ? '-' : '';
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${int}.${frac || '0'}`;
}

type PyJson = null | boolean | number | string | PyFloat | PyJson[] | { [k: string]: PyJson };

/** json.dumps(v) (indent undefined: separators ", " and ": ") or json.dumps(v, indent=n) (",", ": "). */
export function pyJsonDumps(v: PyJson, indent?: number, level = 0): string {
  const nl = indent === undefined ? '' : `\n${' '.repeat(indent * (level + 1))}`;
  const close = indent === undefined ? '' : `\n${' '.repeat(indent * level)}`;
  const sep = indent === undefined ? ', ' : ',';
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return pyFloatRepr(v);
    return String(v);
  }
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return `[${v.map((x) => nl + pyJsonDumps(x, indent, level + 1)).join(sep)}${close}]`;
  }
  const entries = Object.entries(v);
  if (!entries.length) return '{}';
  return `{${entries.map(([k, x]) => `${nl}${JSON.stringify(k)}: ${pyJsonDumps(x, indent, level + 1)}`).join(sep)}${close}}`;
}

// ---------------------------------------------------------------- quantization config and state

export interface BnbQuantizeOptions extends Omit<QuantizeOptions, 'code8'> {
  /** `bnb_4bit_compute_dtype` recorded in config.json (default "float32", what webtune computes in). */
  computeDtype?: 'float32' | 'float16' | 'bfloat16';
  /** Called after each tensor is written. */
  onProgress?: (p: { tensor: string; done: number; total: number }) => void;
}

/** config.json's "quantization_config" as transformers writes it for NF4 (keys sorted). */
export function bnbQuantizationConfig(o: { doubleQuant?: boolean; computeDtype?: string } = {}): { [k: string]: PyJson } {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: o.computeDtype ?? 'float32',
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: o.doubleQuant ?? true,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: new PyFloat(6),
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
}

/** The text of `weight.quant_state.bitsandbytes__nf4`: json.dumps of QuantState's non-tensor items. */
export function quantStateJson(q: Nf4Tensor, dtype: string): string {
  const state: { [k: string]: PyJson } = { quant_type: 'nf4', blocksize: q.blocksize, dtype, shape: [...q.shape] };
  if (q.nested) {
    state.nested_blocksize = q.nested.blocksize;
    state.nested_dtype = 'float32';
    state.nested_offset = new PyFloat(q.nested.offset); // offset.item(): the f32 value as a Python float
  }
  return pyJsonDumps(state);
}

const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

/** The state-dict entries Linear4bit._save_to_state_dict writes for one quantized weight. */
export function bnbWeightTensors(module: string, q: Nf4Tensor, dtype: string): TensorToWrite[] {
  const p = `${module}.weight`;
  const state = new TextEncoder().encode(quantStateJson(q, dtype));
  const out: TensorToWrite[] = [
    { name: p, dtype: 'U8', shape: [q.packed.length, 1], data: q.packed },
    { name: `${p}.quant_map`, dtype: 'F32', shape: [16], data: f32Bytes(NF4_VALUES) },
    { name: `${p}.${QUANT_STATE_KEY}`, dtype: 'U8', shape: [state.length], data: state },
  ];
  if (q.nested) {
    const s = q.nested;
    out.push(
      { name: `${p}.absmax`, dtype: 'U8', shape: [s.qabsmax.length], data: s.qabsmax },
      { name: `${p}.nested_absmax`, dtype: 'F32', shape: [s.absmax2.length], data: f32Bytes(s.absmax2) },
      { name: `${p}.nested_quant_map`, dtype: 'F32', shape: [256], data: f32Bytes(s.code8) },
    );
  } else {
    out.push({ name: `${p}.absmax`, dtype: 'F32', shape: [q.absmax!.length], data: f32Bytes(q.absmax!) });
  }
  return out;
}

/** The linears bitsandbytes quantizes (every linear of every block; not embeddings, norms, lm_head). */
export function quantizedLinears(config: ModelConfig): LinearDesc[] {
  return modelLayout(config).blocks.flatMap((b) => linears(b));
}

/**
 * Quantize one linear weight as bitsandbytes does: `w` as stored in the checkpoint ([out, in] for
 * nn.Linear, [in, out] for GPT-2's Conv1D, which is transposed first) → NF4 of W [out, in].
 */
export function quantizeLinearWeight(w: Float32Array, desc: LinearDesc, options: QuantizeOptions = {}): Nf4Tensor {
  const { in: K, out: M } = desc;
  if (w.length !== K * M) throw new RangeError(`${desc.module}.weight: ${w.length} values, expected ${M}·${K}`);
  return quantizeNf4(desc.layout === 'in_out' ? transposed(w, K, M) : w, [M, K], options);
}

/** Insert "quantization_config" into config.json's text, keeping everything else byte for byte. */
function withQuantizationConfig(configText: string, qc: { [k: string]: PyJson }): string {
  const body = configText.trimEnd();
  if (!body.endsWith('}')) throw new BnbCheckpointError('config.json', 'is not a JSON object');
  const inner = body.slice(0, -1).trimEnd();
  const entry = `"quantization_config": ${pyJsonDumps(qc, 2, 1)}`;
  return `${inner}${inner.endsWith('{') ? '' : ','}\n  ${entry}\n}\n`;
}

/** Small files of a model folder worth carrying over (tokenizer, generation defaults). */
const CARRIED = /^(tokenizer(_config)?\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|generation_config\.json|vocab\.json|merges\.txt|chat_template\.(jinja|json))$/;

/** The files of a model folder that a rewritten checkpoint carries over unchanged (tokenizer, generation defaults). */
export function carriedFileNames(files: ModelFiles): string[] {
  return files.list().filter((f) => CARRIED.test(f));
}

/**
 * Quantize a float checkpoint's linear weights to NF4 and return the files of a transformers +
 * bitsandbytes 4-bit checkpoint: config.json (with quantization_config), model.safetensors, and the
 * tokenizer / generation files. Weights are read and quantized one at a time; the output is held in
 * memory (about half a byte per linear parameter plus the unquantized tensors).
 */
export async function writeBnbCheckpoint(ckpt: Checkpoint, options: BnbQuantizeOptions = {}): Promise<Record<string, Uint8Array | string>> {
  if (ckpt.rawConfig.quantization_config !== undefined) {
    throw new BnbCheckpointError(`${ckpt.files.name}/config.json`, 'already has a quantization_config: the checkpoint is quantized');
  }
  const doubleQuant = options.doubleQuant ?? true;
  const blocksize = options.blocksize ?? 64;
  checkNf4Blocksize(blocksize);
  const lin = new Map(quantizedLinears(ckpt.config).map((d) => [`${d.module}.weight`, d]));
  const expected = expectedTensors(ckpt.config);
  const tensors: TensorToWrite[] = [];
  let done = 0;
  for (const name of expected.keys()) {
    const entry = ckpt.tensors.get(name);
    if (!entry) throw new BnbCheckpointError(ckpt.files.name, 'missing', name);
    const desc = lin.get(name);
    if (desc) {
      const dtype = TORCH_DTYPE[entry.info.dtype];
      const q = quantizeLinearWeight(await ckpt.readF32(name), desc, { blocksize, doubleQuant });
      tensors.push(...bnbWeightTensors(desc.module, q, dtype));
    } else {
      const bytes = await entry.file.source.read(entry.info.start, entry.info.byteLength);
      tensors.push({ name, dtype: entry.info.dtype, shape: [...entry.info.shape], data: bytes.slice() });
    }
    options.onProgress?.({ tensor: name, done: ++done, total: expected.size });
  }
  const configText = await readText(ckpt.files, 'config.json');
  const files: Record<string, Uint8Array | string> = {
    'config.json': withQuantizationConfig(configText, bnbQuantizationConfig({ doubleQuant, computeDtype: options.computeDtype })),
    'model.safetensors': writeSafetensors(tensors, { format: 'pt' }),
  };
  for (const f of carriedFileNames(ckpt.files)) {
    const src = await ckpt.files.open(f);
    files[f] = (await src.read(0, src.size)).slice();
  }
  return files;
}

// ---------------------------------------------------------------- reading

/** One quantized linear of a bitsandbytes checkpoint. */
export interface BnbLinear {
  desc: LinearDesc;
  /** [out, in] */
  shape: [number, number];
  blocksize: number;
  doubleQuant: boolean;
  /** The original dtype (`quant_state` "dtype", e.g. "bfloat16"). */
  dtype: string;
  nestedBlocksize: number | null;
  nestedOffset: number | null;
}

export interface BnbCheckpoint {
  files: ModelFiles;
  config: ModelConfig;
  rawConfig: Record<string, unknown>;
  /** config.json's quantization_config. */
  quantization: Record<string, unknown>;
  /** Quantized linears by module path (e.g. `model.layers.0.self_attn.q_proj`). */
  linears: Map<string, BnbLinear>;
  /** Every tensor by canonical name (GPT-2 with `transformer.`). */
  tensors: Map<string, { file: SafetensorsFile; info: TensorInfo }>;
  /** The packed NF4 data of a quantized linear (no dequantization), validated. */
  readNf4(module: string): Promise<Nf4Tensor>;
  /** An unquantized floating-point tensor (embeddings, norms, biases, lm_head) as f32. */
  readF32(name: string): Promise<Float32Array>;
  dtypeOf(name: string): string;
}

/** Whether a parsed config.json describes a bitsandbytes 4-bit checkpoint. */
export function isBnb4bitConfig(raw: Record<string, unknown>): boolean {
  const q = raw.quantization_config as Record<string, unknown> | undefined;
  return !!q && q.quant_method === 'bitsandbytes' && (q.load_in_4bit === true || q._load_in_4bit === true);
}

function canonicalName(name: string, arch: ModelConfig['architecture']): string | null {
  if (arch === 'gpt2') {
    if (/\.attn\.(masked_)?bias$/.test(name)) return null;
    if (!name.startsWith('transformer.') && !name.startsWith('lm_head.')) return `transformer.${name}`;
  }
  return name;
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Open a transformers + bitsandbytes NF4 checkpoint folder and validate every tensor. */
export async function openBnbCheckpoint(files: ModelFiles): Promise<BnbCheckpoint> {
  if (!files.has('config.json')) throw new MissingFileError(files.name, 'config.json', 'every Hugging Face model folder has one');
  const configText = await readText(files, 'config.json');
  const config = parseConfig(configText, 'config.json');
  const rawConfig = JSON.parse(configText) as Record<string, unknown>;
  const cfgFile = `${files.name}/config.json`;
  const qc = rawConfig.quantization_config as Record<string, unknown> | undefined;
  if (!qc || typeof qc !== 'object') throw new BnbCheckpointError(cfgFile, 'has no "quantization_config": not a quantized checkpoint');
  if (qc.quant_method !== 'bitsandbytes') {
    throw new BnbCheckpointError(cfgFile, `quantization_config.quant_method is ${JSON.stringify(qc.quant_method)}; only "bitsandbytes" 4-bit NF4 is supported`);
  }
  if (!(qc.load_in_4bit === true || qc._load_in_4bit === true)) {
    throw new BnbCheckpointError(cfgFile, 'quantization_config is not 4-bit (load_in_4bit is not true); 8-bit LLM.int8() checkpoints are not supported');
  }
  if (qc.bnb_4bit_quant_type !== undefined && qc.bnb_4bit_quant_type !== 'nf4') {
    throw new BnbCheckpointError(cfgFile, `bnb_4bit_quant_type is ${JSON.stringify(qc.bnb_4bit_quant_type)}; only "nf4" is supported (FP4 is not)`);
  }
  if (qc.bnb_4bit_quant_storage !== undefined && qc.bnb_4bit_quant_storage !== 'uint8') {
    throw new BnbCheckpointError(cfgFile, `bnb_4bit_quant_storage is ${JSON.stringify(qc.bnb_4bit_quant_storage)}; only "uint8" is supported`);
  }

  // The safetensors files (single or sharded), as src/model/checkpoint.ts finds them.
  let shardNames: string[];
  if (files.has('model.safetensors.index.json')) {
    let idx: { weight_map?: Record<string, string> };
    try {
      idx = JSON.parse(await readText(files, 'model.safetensors.index.json')) as typeof idx;
    } catch (e) {
      throw new BnbCheckpointError('model.safetensors.index.json', `not valid JSON: ${(e as Error).message}`);
    }
    if (!idx.weight_map || typeof idx.weight_map !== 'object') throw new BnbCheckpointError('model.safetensors.index.json', 'field "weight_map" is missing');
    shardNames = [...new Set(Object.values(idx.weight_map))];
    for (const s of shardNames) if (!files.has(s)) throw new MissingFileError(files.name, s, 'listed in model.safetensors.index.json');
  } else if (files.has('model.safetensors')) {
    shardNames = ['model.safetensors'];
  } else {
    throw new MissingFileError(files.name, 'model.safetensors', 'a bitsandbytes 4-bit checkpoint saves safetensors');
  }
  const tensors = new Map<string, { file: SafetensorsFile; info: TensorInfo }>();
  for (const shard of shardNames) {
    const f = await openSafetensors(await files.open(shard));
    for (const [name, info] of f.tensors) {
      const canon = canonicalName(name, config.architecture);
      if (canon === null) continue;
      if (tensors.has(canon)) throw new BnbCheckpointError(shard, 'appears in more than one file', name);
      tensors.set(canon, { file: f, info });
    }
  }
  const where = (name: string): string => tensors.get(name)?.file.source.name ?? (shardNames.length === 1 ? shardNames[0] : files.name);
  const need = (name: string): { file: SafetensorsFile; info: TensorInfo } => {
    const t = tensors.get(name);
    if (!t) throw new BnbCheckpointError(where(name), 'is missing', name);
    return t;
  };
  const expectTensor = (name: string, dtype: string, shape: readonly number[]): { file: SafetensorsFile; info: TensorInfo } => {
    const t = need(name);
    if (t.info.dtype !== dtype) throw new BnbCheckpointError(t.file.source.name, `has dtype ${t.info.dtype}, expected ${dtype}`, name);
    if (!sameShape(t.info.shape, shape)) {
      throw new BnbCheckpointError(t.file.source.name, `has shape [${t.info.shape.join(', ')}], expected [${shape.join(', ')}]`, name);
    }
    return t;
  };
  const readBytes = async (name: string): Promise<Uint8Array> => {
    const { file, info } = need(name);
    return file.source.read(info.start, info.byteLength);
  };

  const quantized = quantizedLinears(config);
  const linearByWeight = new Map(quantized.map((d) => [`${d.module}.weight`, d]));
  const bnbLinears = new Map<string, BnbLinear>();
  const expected = expectedTensors(config);
  for (const [name, shape] of expected) {
    const desc = linearByWeight.get(name);
    const stateName = `${name}.${QUANT_STATE_KEY}`;
    if (tensors.has(`${name}.quant_state.bitsandbytes__fp4`)) {
      throw new BnbCheckpointError(where(name), 'is FP4-quantized; only NF4 is supported', `${name}.quant_state.bitsandbytes__fp4`);
    }
    if (desc && tensors.has(stateName)) {
      bnbLinears.set(desc.module, await validateQuantized(desc, name, stateName));
      continue;
    }
    // Unquantized: a float tensor of the shape the config implies (skipped linears keep their layout).
    const t = need(name);
    if (!sameShape(t.info.shape, shape)) {
      throw new BnbCheckpointError(t.file.source.name, `has shape [${t.info.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`, name);
    }
    if (!FLOAT_DTYPES.has(t.info.dtype)) {
      throw new BnbCheckpointError(t.file.source.name, `has dtype ${t.info.dtype}; an unquantized tensor must be F32, F16 or BF16 (no ${QUANT_STATE_KEY} beside it)`, name);
    }
  }
  // Quantization companions of anything else (e.g. a quantized lm_head) are not supported.
  for (const name of tensors.keys()) {
    const m = COMPANION.exec(name);
    if (!m) continue;
    const module = name.slice(0, m.index);
    if (!bnbLinears.has(module)) {
      throw new BnbCheckpointError(where(name), `belongs to a quantized "${module}", which webtune keeps unquantized (only the linears of the blocks are quantized)`, name);
    }
  }

  async function validateQuantized(desc: LinearDesc, name: string, stateName: string): Promise<BnbLinear> {
    const stateT = need(stateName);
    const file = stateT.file.source.name;
    if (stateT.info.dtype !== 'U8' || stateT.info.shape.length !== 1) {
      throw new BnbCheckpointError(file, `must be a 1-D U8 tensor (UTF-8 JSON), got ${stateT.info.dtype} [${stateT.info.shape.join(', ')}]`, stateName);
    }
    let state: Record<string, unknown>;
    try {
      state = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await readBytes(stateName))) as Record<string, unknown>;
    } catch (e) {
      throw new BnbCheckpointError(file, `is not UTF-8 JSON: ${(e as Error).message}`, stateName);
    }
    if (typeof state !== 'object' || state === null) throw new BnbCheckpointError(file, 'is not a JSON object', stateName);
    const bad = (detail: string): never => {
      throw new BnbCheckpointError(file, detail, stateName);
    };
    if (state.quant_type !== 'nf4') bad(`quant_type is ${JSON.stringify(state.quant_type)}, expected "nf4"`);
    const blocksize = state.blocksize;
    if (typeof blocksize !== 'number') return bad(`blocksize ${JSON.stringify(blocksize)} is not a number`);
    try {
      checkNf4Blocksize(blocksize, 'blocksize');
    } catch (e) {
      bad((e as Error).message);
    }
    const shape: [number, number] = [desc.out, desc.in];
    if (!Array.isArray(state.shape) || !sameShape(state.shape as number[], shape)) {
      bad(
        `shape ${JSON.stringify(state.shape)} but config.json implies [${shape.join(', ')}] ([out, in]` +
          `${desc.layout === 'in_out' ? '; GPT-2 Conv1D weights are stored transposed when quantized' : ''})`,
      );
    }
    const dtype = typeof state.dtype === 'string' ? state.dtype : bad(`dtype ${JSON.stringify(state.dtype)} is not a string`);
    const double = state.nested_blocksize !== undefined || state.nested_offset !== undefined;
    let nestedBlocksize: number | null = null;
    let nestedOffset: number | null = null;
    if (double) {
      const nb = state.nested_blocksize;
      if (typeof nb !== 'number' || !Number.isInteger(nb) || nb < 1 || (nb & (nb - 1)) !== 0) {
        bad(`nested_blocksize ${JSON.stringify(nb)} is not a power of two (bitsandbytes uses 256)`);
      }
      if (state.nested_dtype !== 'float32') bad(`nested_dtype is ${JSON.stringify(state.nested_dtype)}, expected "float32"`);
      const off = state.nested_offset;
      if (typeof off !== 'number' || !Number.isFinite(off)) bad(`nested_offset ${JSON.stringify(off)} is not a finite number`);
      nestedBlocksize = nb as number;
      nestedOffset = Math.fround(off as number); // QuantState.from_dict: torch.tensor(float(...)) is f32
    }
    const n = desc.out * desc.in;
    const nblocks = nf4Blocks(n, blocksize);
    const w = need(name);
    const packedLen = Math.ceil(n / 2);
    if (w.info.dtype !== 'U8') throw new BnbCheckpointError(w.file.source.name, `has dtype ${w.info.dtype}, expected U8 (packed NF4; bnb_4bit_quant_storage uint8)`, name);
    if (!(sameShape(w.info.shape, [packedLen, 1]) || sameShape(w.info.shape, [packedLen]))) {
      throw new BnbCheckpointError(w.file.source.name, `has shape [${w.info.shape.join(', ')}], expected [${packedLen}, 1] (${desc.out}·${desc.in} NF4 codes, two per byte)`, name);
    }
    expectTensor(`${name}.absmax`, double ? 'U8' : 'F32', [nblocks]);
    const qm = expectTensor(`${name}.quant_map`, 'F32', [16]);
    const qmap = toF32(await readBytes(`${name}.quant_map`), 'F32');
    for (let i = 0; i < 16; i++) {
      if (!Object.is(qmap[i], NF4_VALUES[i])) {
        throw new BnbCheckpointError(qm.file.source.name, `entry ${i} is ${qmap[i]}, not the NF4 code value ${NF4_VALUES[i]}`, `${name}.quant_map`);
      }
    }
    if (double) {
      expectTensor(`${name}.nested_absmax`, 'F32', [Math.ceil(nblocks / nestedBlocksize!)]);
      expectTensor(`${name}.nested_quant_map`, 'F32', [256]);
    } else {
      for (const k of ['nested_absmax', 'nested_quant_map']) {
        if (tensors.has(`${name}.${k}`)) bad(`has no nested_* fields but ${name}.${k} exists`);
      }
    }
    return { desc, shape, blocksize, doubleQuant: double, dtype, nestedBlocksize, nestedOffset };
  }

  const finite = (a: Float32Array, name: string): Float32Array => {
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i])) throw new BnbCheckpointError(where(name), `entry ${i} is ${a[i]}`, name);
    }
    return a;
  };

  return {
    files,
    config,
    rawConfig,
    quantization: qc,
    linears: bnbLinears,
    tensors,
    dtypeOf: (name) => need(name).info.dtype,
    async readNf4(module) {
      const l = bnbLinears.get(module);
      if (!l) throw new BnbCheckpointError(files.name, 'is not a quantized linear of this checkpoint', `${module}.weight`);
      const p = `${module}.weight`;
      const packed = (await readBytes(p)).slice();
      if (!l.doubleQuant) {
        return { shape: [...l.shape], blocksize: l.blocksize, packed, absmax: finite(toF32(await readBytes(`${p}.absmax`), 'F32'), `${p}.absmax`), nested: null };
      }
      return {
        shape: [...l.shape],
        blocksize: l.blocksize,
        packed,
        absmax: null,
        nested: {
          qabsmax: (await readBytes(`${p}.absmax`)).slice(),
          absmax2: finite(toF32(await readBytes(`${p}.nested_absmax`), 'F32'), `${p}.nested_absmax`),
          code8: finite(toF32(await readBytes(`${p}.nested_quant_map`), 'F32'), `${p}.nested_quant_map`),
          offset: l.nestedOffset!,
          blocksize: l.nestedBlocksize!,
        },
      };
    },
    async readF32(name) {
      const { file, info } = need(name);
      if (!FLOAT_DTYPES.has(info.dtype)) throw new BnbCheckpointError(file.source.name, `has dtype ${info.dtype}; readF32 reads F32, F16 or BF16 (use readNf4 for quantized linears)`, name);
      return toF32(await file.source.read(info.start, info.byteLength), info.dtype, file.source.name, name);
    },
  };
}
