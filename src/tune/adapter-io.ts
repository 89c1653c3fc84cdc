// Moving adapters between a training plan on the GPU, a run's stored training state, PEFT files, and
// the GPU again for generation (src/io/peft.ts holds the formats).
//
// One host-side form connects them all: PeftAdapter, module → A [r, in], B [out, r] in f32 (B parts
// joined: GPT-2's fused c_attn is one [3C, r] B, as PEFT stores it). The PEFT files are written from
// that form only, so an adapter exported from the live run and one exported from its checkpoint (or
// from an imported copy) are the same bytes.
import type { GpuContext, GpuTensor } from '../gpu';
import { bytesSource } from '../io/bytes';
import type { ModelConfig } from '../model/config';
import type { AdapterSet, LoraGroupTensors } from '../model/adapters';
import type { GpuLinear, GpuModel } from '../model/gpu-model';
import { AdapterError, adapterConfigJson, type LoraSettings, type PeftAdapter } from '../io/peft';
import { fromF32, openSafetensors, readTensorF32, writeSafetensors, type TensorToWrite } from '../io/safetensors';
import { matchesTarget, type MethodPlan } from './methods';

/** Both adapter files, ready to write to a folder or offer as downloads. */
export async function exportPeftAdapter(
  ctx: GpuContext,
  c: ModelConfig,
  plan: MethodPlan,
  baseModel: string | null,
): Promise<{ 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array }> {
  const lora = plan.config.lora;
  if (!lora || plan.loraGroups.length === 0) throw new AdapterError('this run has no LoRA adapter to export (method is not LoRA)');
  return writePeftAdapter(c, await adapterFromPlan(ctx, plan), baseModel);
}

/** The plan's adapter read back from the GPU (B parts joined), in the host-side form. */
export async function adapterFromPlan(ctx: GpuContext, plan: MethodPlan): Promise<PeftAdapter> {
  const lora = plan.config.lora;
  if (!lora) throw new AdapterError('this run has no LoRA adapter (method is not LoRA)');
  const tensors: PeftAdapter['tensors'] = new Map();
  for (const g of plan.loraGroups) {
    const outF = g.parts.reduce((s, p) => s + p.outFeatures, 0);
    const B = new Float32Array(outF * g.r);
    for (const p of g.parts) B.set(await ctx.readF32(p.B), p.rowOffset * g.r);
    tensors.set(g.module, { A: await ctx.readF32(g.A), B, r: g.r, inF: g.inFeatures, outF });
  }
  return { lora: { ...lora }, tensors };
}

/**
 * target_modules as the config says them: the names given, or (for "all-linear" and the architecture
 * defaults) the short names of the modules the adapter covers.
 */
function peftTargets(adapter: PeftAdapter): string[] {
  const covered = [...new Set([...adapter.tensors.keys()].map((m) => m.split('.').pop()!))];
  const t = adapter.lora.targets;
  return t.includes('all-linear') ? covered : t.length ? t : covered;
}

/** GPT-2's Conv1D modules (fan_in_fan_out in PEFT) go by these names; Llama / Qwen2 modules never do. */
const CONV1D = /(^|\.)c_(attn|proj|fc)$/;

/**
 * Both PEFT files of an adapter (peft-spec §2). `c` decides fan_in_fan_out; without the model's
 * config (a stored run of a model that is not loaded), the module names tell GPT-2 apart.
 */
export function writePeftAdapter(
  c: Pick<ModelConfig, 'architecture'> | null,
  adapter: PeftAdapter,
  baseModel: string | null,
): { 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array } {
  const arch = c ?? { architecture: [...adapter.tensors.keys()].some((m) => CONV1D.test(m)) ? 'gpt2' : 'llama' };
  const out: TensorToWrite[] = [];
  for (const [module, t] of adapter.tensors) {
    out.push({ name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32', shape: [t.r, t.inF], data: fromF32(t.A, 'F32') });
    out.push({ name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32', shape: [t.outF, t.r], data: fromF32(t.B, 'F32') });
  }
  return {
    'adapter_config.json': adapterConfigJson(arch, adapter.lora, peftTargets(adapter), baseModel),
    'adapter_model.safetensors': writeSafetensors(out, { format: 'pt' }),
  };
}

// ── A run's stored training state ───────────────────────────────────────────────────────────────
//
// Trainer.snapshot() names each trainable `<name>::param` (plus ::adam_m, ::adam_v), where a LoRA
// name is the PEFT key: base_model.model.<module>.lora_A.weight, and lora_B.weight, or lora_B.weight[i]
// for the i-th part of a fused layer. An imported adapter is stored the same way (params only, B whole).

/** The LoRA settings a stored training state was trained with (its meta.config.method.lora), or null. */
export function loraOfState(meta: unknown): LoraSettings | null {
  const method = (meta as { config?: { method?: { method?: unknown; lora?: LoraSettings } } } | null)?.config?.method;
  if (!method || (method.method !== 'lora' && method.method !== 'qlora') || !method.lora) return null;
  return method.lora;
}

/**
 * The adapter held by a stored training state (a checkpoint's meta and tensor bytes). `what` names the
 * checkpoint in errors (e.g. `run "run 2", step 40`).
 */
export async function adapterFromState(meta: unknown, tensors: Uint8Array, what: string): Promise<PeftAdapter> {
  const lora = loraOfState(meta);
  if (!lora) throw new AdapterError(`${what} was not trained with LoRA: it holds no adapter`);
  const st = await openSafetensors(bytesSource(`${what} (checkpoint tensors)`, tensors));
  const out: PeftAdapter['tensors'] = new Map();
  for (const [name, info] of st.tensors) {
    const m = /^base_model\.model\.(.+)\.lora_A\.weight::param$/.exec(name);
    if (!m) continue;
    const module = m[1];
    const key = (suffix: string) => `base_model.model.${module}.lora_B.weight${suffix}::param`;
    // One B, or the parts [0], [1], … of a fused layer, joined in order.
    const parts: string[] = [];
    if (st.tensors.has(key(''))) parts.push(key(''));
    else for (let i = 0; st.tensors.has(key(`[${i}]`)); i++) parts.push(key(`[${i}]`));
    if (parts.length === 0) throw new AdapterError(`${what}: tensor "${name}" has no lora_B to go with it`);
    const [r, inF] = info.shape;
    for (const p of parts) {
      const s = st.tensors.get(p)!.shape;
      if (info.shape.length !== 2 || s.length !== 2 || s[1] !== r) throw new AdapterError(`${what}: tensors "${name}" [${info.shape}] and "${p}" [${s}] do not form a LoRA pair`);
    }
    const outF = parts.reduce((s, p) => s + st.tensors.get(p)!.shape[0], 0);
    const B = new Float32Array(outF * r);
    let at = 0;
    for (const p of parts) {
      const b = await readTensorF32(st, p);
      B.set(b, at);
      at += b.length;
    }
    out.set(module, { A: await readTensorF32(st, name), B, r, inF, outF });
  }
  if (out.size === 0) throw new AdapterError(`${what}: the checkpoint holds no LoRA tensors (base_model.model.*.lora_A.weight)`);
  return { lora: { ...lora, targets: [...lora.targets] }, tensors: out };
}

/** An adapter as a stored training state's tensors (params only: nothing to resume from). */
export function adapterStateTensors(adapter: PeftAdapter): Uint8Array {
  const out: TensorToWrite[] = [];
  for (const [module, t] of adapter.tensors) {
    out.push({ name: `base_model.model.${module}.lora_A.weight::param`, dtype: 'F32', shape: [t.r, t.inF], data: fromF32(t.A, 'F32') });
    out.push({ name: `base_model.model.${module}.lora_B.weight::param`, dtype: 'F32', shape: [t.outF, t.r], data: fromF32(t.B, 'F32') });
  }
  return writeSafetensors(out, { format: 'webtune-train-state' });
}

// ── Fitting an adapter to a model ───────────────────────────────────────────────────────────────

/** A linear module of the model as an adapter sees it: in and out features (fused parts summed). */
export interface LinearModule {
  module: string;
  inF: number;
  outF: number;
}

/** The model's linear modules, in model order (GPT-2's c_attn once, with out = 3C). */
export function linearModules(model: Pick<GpuModel, 'linearLayers'>): LinearModule[] {
  const byModule = new Map<string, LinearModule>();
  for (const { linear } of model.linearLayers()) {
    const d = linear.desc;
    const m = byModule.get(d.module);
    if (m) m.outF += d.out;
    else byModule.set(d.module, { module: d.module, inF: d.in, outF: d.out });
  }
  return [...byModule.values()];
}

/**
 * Check that an adapter fits a model before anything goes to the GPU: every target module names a
 * linear layer the model has, every tensor belongs to one of its layers with that layer's shape, and
 * the rank is the config's. Errors name the file and the tensor or field; `files` names the two files.
 */
export function checkAdapterFits(
  adapter: PeftAdapter,
  modules: readonly LinearModule[],
  files: { config: string; weights: string } = { config: 'adapter_config.json', weights: 'adapter_model.safetensors' },
): void {
  const byModule = new Map(modules.map((m) => [m.module, m]));
  const shorts = [...new Set(modules.map((m) => m.module.split('.').pop()!))];
  const lora = adapter.lora;
  if (!Number.isInteger(lora.r) || lora.r < 1) throw new AdapterError(`${files.config}: field "r" must be a positive integer, got ${lora.r}`);
  for (const t of lora.targets) {
    if (t === 'all-linear') continue;
    if (!modules.some((m) => matchesTarget(m.module, [t]))) {
      throw new AdapterError(`${files.config}: target_modules names "${t}", which matches no linear layer of this model (its layers are: ${shorts.join(', ')}): the adapter was made for another model`);
    }
  }
  for (const [module, t] of adapter.tensors) {
    const a = `base_model.model.${module}.lora_A.weight`;
    const b = `base_model.model.${module}.lora_B.weight`;
    const m = byModule.get(module);
    if (!m) throw new AdapterError(`${files.weights}: tensor "${a}" is for the layer ${module}, which this model does not have: the adapter was made for another model`);
    if (t.r !== lora.r) throw new AdapterError(`${files.weights}: tensor "${a}" has rank ${t.r}, but ${files.config} says r = ${lora.r}`);
    if (t.inF !== m.inF) throw new AdapterError(`${files.weights}: tensor "${a}" is [${t.r}, ${t.inF}], but ${module} takes ${m.inF} inputs: expected [${t.r}, ${m.inF}] (the adapter was made for another model)`);
    if (t.outF !== m.outF) throw new AdapterError(`${files.weights}: tensor "${b}" is [${t.outF}, ${t.r}], but ${module} has ${m.outF} outputs: expected [${m.outF}, ${t.r}] (the adapter was made for another model)`);
    if (t.A.length !== t.r * t.inF || t.B.length !== t.outF * t.r) throw new AdapterError(`${files.weights}: tensors of ${module} do not hold as many values as their shapes say`);
  }
}

/** An adapter on the GPU for generation: what InferenceSession takes, its bytes, and how to free it. */
export interface UploadedAdapter extends AdapterSet {
  bytes: number;
  release(): void;
}

/**
 * Upload an adapter for generation on `model` (check it with checkAdapterFits first): A and B go to
 * the GPU once, and each of the model's linears that the adapter covers gets its part of B (GPT-2's
 * q, k, v parts of c_attn: consecutive rows). Scale alpha / r, or alpha / √r with rsLoRA, as training.
 */
export function uploadAdapter(ctx: GpuContext, model: GpuModel, adapter: PeftAdapter, label: string): UploadedAdapter {
  const { r, alpha, rslora } = adapter.lora;
  const scale = rslora ? alpha / Math.sqrt(r) : alpha / r;
  const groups = new Map<string, LoraGroupTensors>();
  const loraByLinear = new Map<GpuLinear, { group: LoraGroupTensors; part: number }>();
  const owned: GpuTensor[] = [];
  let bytes = 0;
  const upload = (shape: number[], name: string, data: Float32Array): GpuTensor => {
    const t = ctx.tensor(shape, { role: 'weights', label: `${label}: ${name}`, data });
    owned.push(t);
    bytes += data.byteLength;
    return t;
  };
  try {
    for (const { linear } of model.linearLayers()) {
      const t = adapter.tensors.get(linear.desc.module);
      if (!t) continue;
      let g = groups.get(linear.desc.module);
      if (!g) {
        g = { module: linear.desc.module, inFeatures: t.inF, r: t.r, scale, A: upload([t.r, t.inF], `${linear.desc.module}.lora_A`, t.A), parts: [] };
        groups.set(linear.desc.module, g);
      }
      const rowOffset = g.parts.reduce((s, p) => s + p.outFeatures, 0);
      if (rowOffset + linear.desc.out > t.outF) throw new AdapterError(`${label}: lora_B of ${linear.desc.module} has ${t.outF} rows, fewer than the layer's outputs`);
      const B = upload([linear.desc.out, t.r], `${linear.desc.module}.lora_B[${g.parts.length}]`, t.B.slice(rowOffset * t.r, (rowOffset + linear.desc.out) * t.r));
      loraByLinear.set(linear, { group: g, part: g.parts.length });
      g.parts.push({ linear, B, outFeatures: linear.desc.out, rowOffset });
    }
  } catch (e) {
    for (const t of owned) ctx.release(t);
    throw e;
  }
  return {
    loraByLinear,
    bytes,
    release: () => {
      for (const t of owned.splice(0)) ctx.release(t);
      loraByLinear.clear();
    },
  };
}

/** Copy an adapter's values into a plan built with the same LoRA settings; shapes must match. */
export function loadAdapterIntoPlan(ctx: GpuContext, plan: MethodPlan, adapter: PeftAdapter): void {
  const seen = new Set<string>();
  for (const g of plan.loraGroups) {
    const t = adapter.tensors.get(g.module);
    if (!t) throw new AdapterError(`the adapter has no tensors for ${g.module} (its target_modules ${adapter.lora.targets.join(',')} do not cover this model the same way)`);
    seen.add(g.module);
    const outTotal = g.parts.reduce((s, p) => s + p.outFeatures, 0);
    if (t.r !== g.r || t.inF !== g.inFeatures || t.outF !== outTotal) {
      throw new AdapterError(
        `adapter tensor base_model.model.${g.module}.lora_A/B is [${t.r}, ${t.inF}] / [${t.outF}, ${t.r}], but this model needs [${g.r}, ${g.inFeatures}] / [${outTotal}, ${g.r}]: the adapter was trained for a different base model`,
      );
    }
    ctx.write(g.A, t.A);
    for (const p of g.parts) ctx.write(p.B, t.B.subarray(p.rowOffset * g.r, (p.rowOffset + p.outFeatures) * g.r));
  }
  for (const m of adapter.tensors.keys()) {
    if (!seen.has(m)) throw new AdapterError(`the adapter has tensors for ${m}, which this model does not have: it was trained for a different base model`);
  }
}

