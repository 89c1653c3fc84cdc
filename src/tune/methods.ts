// Fine-tuning methods as small strategies over the same model code: each says which tensors are
// trainable and which extra tensors exist (LoRA A/B) — the engine never branches on method names.
import type { GpuContext, GpuTensor } from '../gpu';
import type { LoraSettings } from '../io/peft';
import type { LoraGroupTensors } from '../model/adapters';
import type { GpuLinear, GpuModel } from '../model/gpu-model';
import { randomU32, uniform24 } from '../util/rng';

export type MethodName = 'lora' | 'qlora' | 'full' | 'partial' | 'bitfit';

/** r, alpha, dropout, targets (PEFT matching: exact or suffix ".<name>", or "all-linear"), rslora. */
export type LoraConfig = LoraSettings;

export interface MethodConfig {
  method: MethodName;
  lora?: LoraConfig;
  /** partial: train the last N blocks. */
  trainableLayers?: number;
  /** partial: also train the final norm (default true). */
  trainFinalNorm?: boolean;
  /** partial / full: also train lm_head (for tied models: the shared embedding). Default: full yes, partial no. */
  trainLmHead?: boolean;
}

export class MethodConfigError extends Error {
  override name = 'MethodConfigError';
}

/** One LoRA adapter (see LoraGroupTensors), with what training adds: its block and dropout. */
export interface LoraGroup extends LoraGroupTensors {
  block: number;
  dropout: number;
}

export interface TrainableTensor {
  /** Name in the exported file (HF name, or the PEFT key for LoRA). */
  name: string;
  param: GpuTensor;
  decay: boolean;
}

export interface MethodPlan {
  config: MethodConfig;
  /** Base tensors that receive gradients (full / partial / bitfit). */
  baseTrainable: Set<GpuTensor>;
  loraGroups: LoraGroup[];
  /** LoRA groups by the linear they modify. */
  loraByLinear: Map<GpuLinear, { group: LoraGroup; part: number }>;
  trainables: TrainableTensor[];
}

export const DEFAULT_TARGETS: Record<string, string[]> = {
  llama: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
  gpt2: ['c_attn'],
};

/** PEFT's module matching: a name matches exactly or as a suffix after a dot. */
export function matchesTarget(module: string, targets: string[]): boolean {
  if (targets.includes('all-linear')) return true;
  return targets.some((t) => module === t || module.endsWith(`.${t}`));
}

/** PEFT's default init: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a=√5), B = 0; seeded Philox stream. */
export function initLoraA(r: number, inFeatures: number, seed: number, offset: number): Float32Array {
  const bound = 1 / Math.sqrt(inFeatures);
  const words = randomU32(seed, offset, r * inFeatures);
  const out = new Float32Array(r * inFeatures);
  for (let i = 0; i < out.length; i++) out[i] = (2 * uniform24(words[i]) - 1) * bound;
  return out;
}

export function planMethod(ctx: GpuContext, model: GpuModel, cfg: MethodConfig, seed: number): MethodPlan {
  const c = model.config;
  const plan: MethodPlan = { config: cfg, baseTrainable: new Set(), loraGroups: [], loraByLinear: new Map(), trainables: [] };
  const addBase = (name: string, t: GpuTensor | null, decay = true): void => {
    if (!t || plan.baseTrainable.has(t)) return;
    plan.baseTrainable.add(t);
    plan.trainables.push({ name, param: t, decay });
  };
  const blockTensors = (i: number, biasesOnly: boolean): void => {
    const b = model.blocks[i];
    for (const n of [b.attnNorm, b.mlpNorm]) {
      if (!biasesOnly) addBase(`${n.desc.module}.weight`, n.weight, false);
      addBase(`${n.desc.module}.bias`, n.bias, false);
    }
    for (const l of [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) {
      if (!l) continue;
      const name = l.desc.short.startsWith('c_attn.') ? `${l.desc.module}[${l.desc.short.slice(7)}]` : l.desc.module;
      if (!biasesOnly) addBase(`${name}.weight`, l.weight);
      addBase(`${name}.bias`, l.bias, false);
    }
  };
  const L = c.numLayers;
  if (cfg.method === 'qlora' && model.weightDType !== 'nf4') {
    throw new MethodConfigError('QLoRA trains LoRA adapters on a 4-bit (NF4) base: load the model with weightDType "nf4" (the CLI and the app do this for --method qlora)');
  }
  if (cfg.method !== 'lora' && cfg.method !== 'qlora' && cfg.method !== 'bitfit' && model.weightDType !== 'f32') {
    throw new MethodConfigError(`${cfg.method} fine-tuning updates the weights themselves, which must be f32: load the model with f32 weights (they are f16 or 4-bit now)`);
  }
  const trainsVocab = cfg.method === 'full' || (cfg.method === 'partial' && cfg.trainLmHead);
  if (trainsVocab && model.vocabSplit) {
    throw new MethodConfigError(
      `the ${c.vocabSize}×${c.hiddenSize} embedding is split across GPU bindings on this adapter and cannot be trained; use LoRA, or partial fine-tuning without the lm_head`,
    );
  }
  switch (cfg.method) {
    case 'full': {
      addBase(model.layout.embed, model.embed);
      if (model.positions) addBase(model.layout.positions!, model.positions);
      for (let i = 0; i < L; i++) blockTensors(i, false);
      addBase(`${model.layout.finalNorm.module}.weight`, model.finalNorm.weight, false);
      addBase(`${model.layout.finalNorm.module}.bias`, model.finalNorm.bias, false);
      if (cfg.trainLmHead !== false && model.layout.lmHead) addBase(model.layout.lmHead, model.lmHead);
      break;
    }
    case 'partial': {
      const n = cfg.trainableLayers ?? 1;
      if (!Number.isInteger(n) || n < 1 || n > L) throw new MethodConfigError(`--trainable-layers must be between 1 and ${L}, got ${n}`);
      for (let i = L - n; i < L; i++) blockTensors(i, false);
      if (cfg.trainFinalNorm !== false) {
        addBase(`${model.layout.finalNorm.module}.weight`, model.finalNorm.weight, false);
        addBase(`${model.layout.finalNorm.module}.bias`, model.finalNorm.bias, false);
      }
      if (cfg.trainLmHead) addBase(model.layout.lmHead ?? model.layout.embed, model.lmHead);
      break;
    }
    case 'bitfit': {
      for (let i = 0; i < L; i++) blockTensors(i, true);
      addBase(`${model.layout.finalNorm.module}.bias`, model.finalNorm.bias, false);
      if (plan.trainables.length === 0) {
        throw new MethodConfigError(
          `BitFit trains only biases, and ${c.hfClass} has none (Llama-family models are bias-free). Use LoRA, or a model with biases such as GPT-2 or Qwen2.`,
        );
      }
      break;
    }
    case 'qlora':
    case 'lora': {
      const lc = cfg.lora;
      if (!lc) throw new MethodConfigError('LoRA needs its settings (r, alpha, dropout, targets)');
      if (!Number.isInteger(lc.r) || lc.r < 1) throw new MethodConfigError(`--r must be a positive integer, got ${lc.r}`);
      if (!(lc.alpha > 0)) throw new MethodConfigError(`--alpha must be positive, got ${lc.alpha}`);
      if (!(lc.dropout >= 0 && lc.dropout < 1)) throw new MethodConfigError(`--dropout must be in [0, 1), got ${lc.dropout}`);
      const targets = lc.targets.length ? lc.targets : DEFAULT_TARGETS[c.architecture];
      const scale = lc.rslora ? lc.alpha / Math.sqrt(lc.r) : lc.alpha / lc.r;
      let offset = 0;
      const groups = new Map<string, LoraGroup>();
      for (const { block, linear } of model.linearLayers()) {
        if (!matchesTarget(linear.desc.module, targets)) continue;
        let g = groups.get(linear.desc.module);
        if (!g) {
          const inF = linear.desc.in;
          const a = initLoraA(lc.r, inF, seed, offset);
          offset += a.length;
          g = {
            module: linear.desc.module,
            block,
            inFeatures: inF,
            r: lc.r,
            scale,
            dropout: lc.dropout,
            A: ctx.tensor([lc.r, inF], { role: 'trainable', label: `${linear.desc.module}.lora_A`, data: a }),
            parts: [],
          };
          groups.set(linear.desc.module, g);
          plan.loraGroups.push(g);
        }
        const rowOffset = g.parts.reduce((s, p) => s + p.outFeatures, 0);
        const B = ctx.tensor([linear.desc.out, lc.r], { role: 'trainable', label: `${linear.desc.module}.lora_B[${g.parts.length}]` });
        plan.loraByLinear.set(linear, { group: g, part: g.parts.length });
        g.parts.push({ linear, B, outFeatures: linear.desc.out, rowOffset });
      }
      if (plan.loraGroups.length === 0) {
        const names = [...new Set([...model.linearLayers()].map((l) => l.linear.desc.module.split('.').pop()))];
        throw new MethodConfigError(`--targets ${targets.join(',')} matches no linear layer of this model; its layers are: ${names.join(', ')}`);
      }
      for (const g of plan.loraGroups) {
        plan.trainables.push({ name: `base_model.model.${g.module}.lora_A.weight`, param: g.A, decay: true });
        g.parts.forEach((p, i) =>
          plan.trainables.push({ name: `base_model.model.${g.module}.lora_B.weight${g.parts.length > 1 ? `[${i}]` : ''}`, param: p.B, decay: true }),
        );
      }
      break;
    }
    default:
      throw new MethodConfigError(`unknown method "${(cfg as { method: string }).method}" (lora, qlora, full, partial, bitfit)`);
  }
  return plan;
}

export function releasePlan(ctx: GpuContext, plan: MethodPlan): void {
  for (const g of plan.loraGroups) {
    ctx.release(g.A);
    for (const p of g.parts) ctx.release(p.B);
  }
}
