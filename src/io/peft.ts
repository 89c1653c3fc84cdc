// PEFT LoRA adapters: write `adapter_config.json` + `adapter_model.safetensors` exactly as PEFT's
// save_pretrained does (peft-spec §2), and read adapters trained elsewhere.
import type { ModelConfig } from '../model/config';
import type { ModelFiles } from './files';
import { readText } from './files';
import { openSafetensors, readTensorF32 } from './safetensors';

/** LoRA settings as adapter_config.json holds them. */
export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  targets: string[];
  rslora: boolean;
}

export class AdapterError extends Error {
  override name = 'AdapterError';
}

/** The v0.10.0 LoRA key set (older PEFT refuses unknown keys), sorted, as PEFT writes it. */
export function adapterConfigJson(c: Pick<ModelConfig, 'architecture'>, lora: LoraSettings, targets: string[], baseModel: string | null): string {
  const cfg: Record<string, unknown> = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: c.architecture === 'gpt2',
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: lora.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...targets].sort(),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: lora.rslora,
  };
  const sorted = Object.fromEntries(Object.keys(cfg).sort().map((k) => [k, cfg[k]]));
  return JSON.stringify(sorted, null, 2);
}

export interface PeftAdapter {
  lora: LoraSettings;
  /** adapter_config.json's base_model_name_or_path, when read from files. */
  baseModel?: string | null;
  /** module path → A [r, in], B [out, r] */
  tensors: Map<string, { A: Float32Array; B: Float32Array; r: number; inF: number; outF: number }>;
}

/** Read a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors). */
export async function readPeftAdapter(files: ModelFiles): Promise<PeftAdapter> {
  if (!files.has('adapter_config.json')) throw new AdapterError(`${files.name}: adapter_config.json is missing (not a PEFT adapter folder)`);
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(await readText(files, 'adapter_config.json')) as Record<string, unknown>;
  } catch (e) {
    throw new AdapterError(`${files.name}/adapter_config.json: not valid JSON: ${(e as Error).message}`);
  }
  if (cfg.peft_type !== 'LORA') throw new AdapterError(`adapter_config.json: field "peft_type" is ${JSON.stringify(cfg.peft_type)}; only LORA adapters are supported`);
  if (cfg.use_dora === true) throw new AdapterError('adapter_config.json: field "use_dora": DoRA adapters are not supported yet');
  for (const k of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = cfg[k];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) throw new AdapterError(`adapter_config.json: field "${k}" (per-module ranks) is not supported yet`);
  }
  const r = cfg.r;
  const alpha = cfg.lora_alpha;
  if (typeof r !== 'number' || r < 1) throw new AdapterError(`adapter_config.json: field "r" must be a positive integer, got ${JSON.stringify(r)}`);
  if (typeof alpha !== 'number') throw new AdapterError(`adapter_config.json: field "lora_alpha" must be a number, got ${JSON.stringify(alpha)}`);
  const tm = cfg.target_modules;
  const targets = Array.isArray(tm) ? (tm as string[]) : typeof tm === 'string' ? [tm] : [];
  const weightsFile = files.has('adapter_model.safetensors') ? 'adapter_model.safetensors' : null;
  if (!weightsFile) {
    throw new AdapterError(
      `${files.name}: adapter_model.safetensors is missing${files.has('adapter_model.bin') ? ' (found adapter_model.bin: only safetensors adapters are supported)' : ''}`,
    );
  }
  const st = await openSafetensors(await files.open(weightsFile));
  const tensors = new Map<string, { A: Float32Array; B: Float32Array; r: number; inF: number; outF: number }>();
  for (const [name, info] of st.tensors) {
    const m = /^base_model\.model\.(.+)\.lora_A(?:\.[^.]+)?\.weight$/.exec(name);
    if (!m) continue;
    const module = m[1];
    const bName = [...st.tensors.keys()].find((k) => k.startsWith(`base_model.model.${module}.lora_B`) && k.endsWith('.weight'));
    if (!bName) throw new AdapterError(`${weightsFile}: tensor "${name}" has no matching lora_B`);
    const bInfo = st.tensors.get(bName)!;
    if (info.shape.length !== 2 || bInfo.shape.length !== 2 || info.shape[0] !== bInfo.shape[1]) {
      throw new AdapterError(`${weightsFile}: tensors "${name}" [${info.shape}] and "${bName}" [${bInfo.shape}] do not form a LoRA pair`);
    }
    tensors.set(module, {
      A: await readTensorF32(st, name),
      B: await readTensorF32(st, bName),
      r: info.shape[0],
      inF: info.shape[1],
      outF: bInfo.shape[0],
    });
  }
  if (tensors.size === 0) throw new AdapterError(`${weightsFile}: no LoRA tensors (base_model.model.*.lora_A.weight) found`);
  const derivedTargets = [...new Set([...tensors.keys()].map((m) => m.split('.').pop()!))];
  return {
    lora: {
      r,
      alpha,
      dropout: typeof cfg.lora_dropout === 'number' ? cfg.lora_dropout : 0,
      targets: targets.length ? targets : derivedTargets,
      rslora: cfg.use_rslora === true,
    },
    baseModel: typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : null,
    tensors,
  };
}

