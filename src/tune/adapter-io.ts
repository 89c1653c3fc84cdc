// Moving adapters between a training plan on the GPU and PEFT files (src/io/peft.ts holds the formats).
import type { GpuContext } from '../gpu';
import type { ModelConfig } from '../model/config';
import { AdapterError, adapterConfigJson, type PeftAdapter } from '../io/peft';
import { fromF32, writeSafetensors, type TensorToWrite } from '../io/safetensors';
import type { MethodPlan } from './methods';

/** The adapter's tensors read back from the GPU, with B parts concatenated (GPT-2 c_attn [q|k|v]). */
export async function adapterTensors(ctx: GpuContext, plan: MethodPlan): Promise<TensorToWrite[]> {
  const out: TensorToWrite[] = [];
  for (const g of plan.loraGroups) {
    const a = await ctx.readF32(g.A);
    const outTotal = g.parts.reduce((s, p) => s + p.outFeatures, 0);
    const b = new Float32Array(outTotal * g.r);
    for (const p of g.parts) b.set(await ctx.readF32(p.B), p.rowOffset * g.r);
    out.push({ name: `base_model.model.${g.module}.lora_A.weight`, dtype: 'F32', shape: [g.r, g.inFeatures], data: fromF32(a, 'F32') });
    out.push({ name: `base_model.model.${g.module}.lora_B.weight`, dtype: 'F32', shape: [outTotal, g.r], data: fromF32(b, 'F32') });
  }
  return out;
}

/** Both adapter files, ready to write to a folder or offer as downloads. */
export async function exportPeftAdapter(
  ctx: GpuContext,
  c: ModelConfig,
  plan: MethodPlan,
  baseModel: string | null,
): Promise<{ 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array }> {
  const lora = plan.config.lora;
  if (!lora || plan.loraGroups.length === 0) throw new AdapterError('this run has no LoRA adapter to export (method is not LoRA)');
  const targets = [...new Set(plan.loraGroups.map((g) => g.module.split('.').pop()!))];
  return {
    'adapter_config.json': adapterConfigJson(c, lora, lora.targets.includes('all-linear') ? targets : lora.targets.length ? lora.targets : targets, baseModel),
    'adapter_model.safetensors': writeSafetensors(await adapterTensors(ctx, plan), { format: 'pt' }),
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

