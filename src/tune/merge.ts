// Merge a LoRA adapter into its base model and write the result as a plain Hugging Face model folder
// (config.json, model.safetensors, tokenizer and generation files) that transformers loads without
// PEFT: W' = W + transpose(B·A, fan_in_fan_out) · scaling (peft-spec §1.5), scaling = alpha / r, or
// alpha / √r with rsLoRA. Each ΔW entry is summed in float64 and added to W once, so a merged f32
// model equals base + adapter to f32 rounding.
//
// The base is read one tensor at a time; the output is built in memory (the size of the merged
// model in the chosen dtype), as the other exports are.
//
// QLoRA trains against the 4-bit base NF4(W), not W. `nf4Base` merges into that dequantized base, so
// the merged model is the one the adapter was trained and tried with; a pre-quantized bitsandbytes
// folder has only NF4(W), so its merge always starts there. (PEFT's own merge of a 4-bit model
// re-quantizes afterwards, which is lossy; here the merged weights stay in a float dtype.)
import { carriedFileNames, quantizeLinearWeight, type BnbCheckpoint } from '../io/bnb';
import { AdapterError, type PeftAdapter } from '../io/peft';
import { fromF32, writeSafetensors, type TensorToWrite } from '../io/safetensors';
import type { WeightSource } from '../model/gpu-model';
import { expectedTensors, linears, modelLayout, transposed, type LinearDesc } from '../model/layout';
import { dequantizeNf4, type Nf4Tensor } from '../quant/nf4';
import { memoryFiles } from '../io/files';
import { openCheckpoint } from '../model/checkpoint';
import { exportOnnx } from '../model/onnx';
import { checkAdapterFits } from './adapter-io';

export type MergeDType = 'F32' | 'F16' | 'BF16';

export interface MergeOptions {
  /** dtype of every floating tensor written; default: each tensor's dtype in the base (a 4-bit base: the dtype it was quantized from). */
  dtype?: MergeDType;
  /** Merge into NF4(W), the 4-bit base QLoRA trains against, with these quantization settings (default blocksize 64, double quantization). */
  nf4Base?: boolean | { blocksize?: number; doubleQuant?: boolean };
  /** Names the adapter's files in errors. */
  adapterFiles?: { config: string; weights: string };
  onProgress?: (p: { tensor: string; done: number; total: number }) => void;
}

export interface MergedModel {
  /** The model folder's files by name. */
  files: Record<string, Uint8Array | string>;
  /** The modules whose weights changed. */
  merged: string[];
  /** The dtype written (null when tensors kept different dtypes of the base). */
  dtype: MergeDType | null;
}

const TORCH_DTYPE: Record<MergeDType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
const FROM_TORCH: Record<string, MergeDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** The adapter's scaling as PEFT computes it. */
export function loraScaling(lora: PeftAdapter['lora']): number {
  return lora.rslora ? lora.alpha / Math.sqrt(lora.r) : lora.alpha / lora.r;
}

/**
 * W (as stored: [out, in] for nn.Linear, [in, out] for GPT-2's Conv1D) plus scale · B·A, B [out, r],
 * A [r, in]; a new array, W untouched.
 */
export function addLoraDelta(
  w: Float32Array,
  desc: Pick<LinearDesc, 'in' | 'out' | 'layout' | 'module'>,
  t: { A: Float32Array; B: Float32Array; r: number },
  scale: number,
): Float32Array {
  const { in: K, out: M } = desc;
  if (w.length !== K * M) throw new RangeError(`${desc.module}.weight holds ${w.length} values, expected ${M}·${K}`);
  const out = new Float32Array(w.length);
  const r = t.r;
  const inOut = desc.layout === 'in_out';
  // Row o of B·A = Σ_j B[o, j] · A[j, :], summed in float64 over contiguous rows of A.
  const row = new Float64Array(K);
  for (let o = 0; o < M; o++) {
    row.fill(0);
    for (let j = 0; j < r; j++) {
      const b = t.B[o * r + j];
      const a = j * K;
      for (let i = 0; i < K; i++) row[i] += b * t.A[a + i];
    }
    if (inOut) for (let i = 0; i < K; i++) out[i * M + o] = w[i * M + o] + scale * row[i];
    else for (let i = 0; i < K; i++) out[o * K + i] = w[o * K + i] + scale * row[i];
  }
  return out;
}

/** An NF4 tensor of W [out, in] back in the stored layout of the linear (transposed for Conv1D). */
function dequantizedAsStored(q: Nf4Tensor, desc: LinearDesc): Float32Array {
  const w = dequantizeNf4(q);
  return desc.layout === 'out_in' ? w : transposed(w, desc.out, desc.in);
}

/**
 * Every tensor of `base` by name, as f32 in its stored layout, with the float dtype it had: a
 * bitsandbytes 4-bit base's linears dequantized; with `nf4`, a float base's linears through NF4 and
 * back (the base QLoRA trains against).
 */
export function floatWeights(
  base: WeightSource,
  nf4?: MergeOptions['nf4Base'],
): (name: string) => Promise<{ values: Float32Array; dtype: MergeDType }> {
  const byWeight = new Map(modelLayout(base.config).blocks.flatMap((b) => linears(b)).map((d) => [`${d.module}.weight`, d]));
  const bnb = 'readNf4' in base ? (base as BnbCheckpoint) : null;
  const settings = bnb || !nf4 ? null : { blocksize: 64, doubleQuant: true, ...(typeof nf4 === 'object' ? nf4 : {}) };
  return async (name) => {
    const desc = byWeight.get(name);
    const linear = desc ? bnb?.linears.get(desc.module) : undefined;
    if (desc && linear) return { values: dequantizedAsStored(await bnb!.readNf4(desc.module), desc), dtype: FROM_TORCH[linear.dtype] ?? 'F32' };
    let values = await base.readF32(name);
    const stored = base.dtypeOf(name);
    if (desc && settings) values = dequantizedAsStored(quantizeLinearWeight(values, desc, settings), desc);
    return { values, dtype: stored === 'F16' || stored === 'BF16' ? stored : 'F32' };
  };
}

/** Merge `adapter` into `base` (a float checkpoint or a bitsandbytes 4-bit one): the merged model's files. */
export async function mergeLora(base: WeightSource, adapter: PeftAdapter, options: MergeOptions = {}): Promise<MergedModel> {
  const c = base.config;
  const layout = modelLayout(c);
  const byModule = new Map(layout.blocks.flatMap((b) => linears(b)).map((d) => [d.module, d]));
  checkAdapterFits(adapter, [...byModule.values()].map((d) => ({ module: d.module, inF: d.in, outF: d.out })), options.adapterFiles);
  const scale = loraScaling(adapter.lora);

  const expected = expectedTensors(c);
  const tensors: TensorToWrite[] = [];
  const dtypes = new Set<MergeDType>();
  const merged: string[] = [];
  let done = 0;
  const read = floatWeights(base, options.nf4Base);
  for (const [name, shape] of expected) {
    const module = name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : '';
    const desc = byModule.get(module);
    const weight = await read(name);
    let values = weight.values;
    const t = desc ? adapter.tensors.get(desc.module) : undefined;
    if (desc && t) {
      values = addLoraDelta(values, desc, t, scale);
      merged.push(desc.module);
    }
    const dtype = options.dtype ?? weight.dtype;
    dtypes.add(dtype);
    // GPT-2 keys as on the Hub (no `transformer.` prefix), as the other checkpoint exports write them.
    const hubName = c.architecture === 'gpt2' ? name.replace(/^transformer\./, '') : name;
    tensors.push({ name: hubName, dtype, shape, data: fromF32(values, dtype) });
    options.onProgress?.({ tensor: name, done: ++done, total: expected.size });
  }
  if (merged.length === 0) throw new AdapterError('the adapter changes none of the model\'s linear layers: nothing to merge');

  const dtype = dtypes.size === 1 ? [...dtypes][0] : null;
  const files: Record<string, Uint8Array | string> = {
    'config.json': mergedConfigJson(base.rawConfig, dtype),
    'model.safetensors': writeSafetensors(tensors, { format: 'pt' }),
  };
  for (const f of carriedFileNames(base.files)) {
    const src = await base.files.open(f);
    files[f] = (await src.read(0, src.size)).slice();
  }
  return { files, merged, dtype };
}

/** `adapter` merged into `base` (float32), as one ONNX file (src/model/onnx.ts). */
export async function mergedOnnx(
  base: WeightSource,
  adapter: PeftAdapter,
  options: Pick<MergeOptions, 'nf4Base' | 'adapterFiles'> & { metadata?: Record<string, string> } = {},
): Promise<Uint8Array> {
  const { files } = await mergeLora(base, adapter, { dtype: 'F32', nf4Base: options.nf4Base, adapterFiles: options.adapterFiles });
  return exportOnnx(await openCheckpoint(memoryFiles(base.files.name, files)), { metadata: options.metadata });
}

/** The base's config.json without quantization_config, with the written dtype. */
export function mergedConfigJson(raw: Record<string, unknown>, dtype: MergeDType | null): string {
  const cfg: Record<string, unknown> = { ...raw };
  delete cfg.quantization_config;
  if (dtype) {
    // transformers < 5 reads torch_dtype, 5 reads dtype; keep whichever the base had (torch_dtype when neither).
    if ('dtype' in cfg) cfg.dtype = TORCH_DTYPE[dtype];
    if ('torch_dtype' in cfg || !('dtype' in cfg)) cfg.torch_dtype = TORCH_DTYPE[dtype];
  }
  return `${JSON.stringify(cfg, null, 2)}\n`;
}
