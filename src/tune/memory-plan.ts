// Training memory plan: the bytes every role needs, computed from the model config, the method, the
// micro-batch size and the sequence length before anything is allocated — so "will it fit?" is
// answered before the first step (architecture.md, "Tensors and memory").
//
//   B micro-batch rows, T sequence length (padded up to a multiple of 8, as the trainer pads),
//   N = B·T tokens, C hidden, V vocab, L layers, NH/NKV heads, D head dim, I MLP size, r LoRA rank.
//
// The activation count follows what src/tune/engine.ts allocates for one (B, T) workspace, tensor by
// tensor (the saved forward values x, h1, q, k, v, att, lse, xmid, h2, g, u, a per layer; logits and
// dlogits N×V; the backward scratch dx, dh, dq, …; LoRA's u, du and dropout copies), so the plan can
// be checked against the GPU accountant (tests/tune/memory-plan.test.ts does, one real step).
// Every tensor is f32 (4 bytes per element) except QLoRA's frozen linear weights: NF4 with double
// quantisation, 4.127 bits per parameter (peft-spec §4.5).
import { gradNormPartialsLength } from '../kernels/grad_norm';
import type { ModelConfig } from '../model/config';
import { linears, modelLayout, type LinearDesc } from '../model/layout';
import { DEFAULT_TARGETS, matchesTarget } from './methods';

export type PlanMethod = 'full' | 'partial' | 'bitfit' | 'lora' | 'qlora';

export interface TrainMemoryOptions {
  method: PlanMethod;
  /** LoRA / QLoRA: rank, dropout (> 0 adds the dropped-out input copies), targets ([] = the architecture's defaults). */
  lora?: { r: number; dropout: number; targets: string[] };
  /** partial: the last N blocks are trained. */
  trainableLayers?: number;
  /** partial: also the final norm (default true). */
  trainFinalNorm?: boolean;
  /** full (default true) / partial (default false): also lm_head (the shared embedding when tied). */
  trainLmHead?: boolean;
  /** B: rows per micro-batch. */
  batchSize: number;
  /** T: the longest sequence; rounded up to a multiple of 8 as the trainer pads. */
  seqLen: number;
  /** Micro-batches per optimizer step: each keeps its own ids/targets upload slot. */
  gradAccum?: number;
}

/** Bytes per role, as the accountant (src/gpu/accounting.ts) names them. */
export interface RoleBytes {
  weights: number;
  trainable: number;
  gradients: number;
  optimizer: number;
  activations: number;
  scratch: number;
}

export interface TrainMemoryPlan {
  method: PlanMethod;
  B: number;
  T: number;
  /** Parameters of the base model. */
  parameters: number;
  trainableParameters: number;
  /** The conceptual split a person reads. */
  frozenWeightBytes: number;
  trainableWeightBytes: number;
  gradientBytes: number;
  /** AdamW m and v: 2 × trainable. */
  optimizerBytes: number;
  /** One (B, T) workspace: saved forward values, logits/dlogits, backward scratch, ids/targets. */
  activationBytes: number;
  /** Of activationBytes: logits + dlogits (2·N·V·4), often the largest part for small models. */
  logitsBytes: number;
  /** Of activationBytes: what one block saves for backward. */
  perLayerSavedBytes: number;
  /** Norm-gradient scratch, grad-norm partials, step statistics, the batch's uniform params (approximate). */
  scratchBytes: number;
  /** Everything for one workspace shape. */
  totalBytes: number;
  /**
   * The engine keeps up to 3 workspace shapes (batches of other lengths, evaluation) cached; shorter
   * ones are smaller, so at most 2 more of this size.
   */
  worstCaseBytes: number;
  /** The same bytes as the accountant files them: methods that train base tensors keep them under `weights`. */
  byRole: RoleBytes;
  /** The single largest buffer (must fit maxStorageBufferBindingSize and maxBufferSize). */
  largestTensor: { name: string; bytes: number };
  /** Why the method cannot run on this model at all (e.g. BitFit on a bias-free Llama), or null. */
  invalid: string | null;
}

/** QLoRA's base linear weights: NF4 codes + 8-bit absmax per 64 + f32 absmax2 per 64·256 (peft-spec §4.5). */
export const QLORA_BITS_PER_PARAM = 4 + 8 / 64 + 32 / (64 * 256);

/** The uniform-buffer alignment WebGPU guarantees (minUniformBufferOffsetAlignment ≤ 256). */
const PARAMS_ALIGN = 256;

const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

interface BaseTensor {
  name: string;
  numel: number;
  /** A linear layer's weight matrix (what QLoRA quantises). */
  linearWeight: boolean;
  /** The linear layer a weight or bias belongs to. */
  linear: LinearDesc | null;
}

/** The base model's tensors as GpuModel holds them (GPT-2's fused c_attn counts once; same element count as its q/k/v split). */
function baseTensors(c: ModelConfig): { all: BaseTensor[]; byBlock: BaseTensor[][]; embed: BaseTensor; positions: BaseTensor | null; finalNorm: BaseTensor[]; lmHead: BaseTensor | null } {
  const L = modelLayout(c);
  const all: BaseTensor[] = [];
  const add = (name: string, numel: number, linear: LinearDesc | null = null, linearWeight = false): BaseTensor => {
    const t = { name, numel, linearWeight, linear };
    all.push(t);
    return t;
  };
  const embed = add(L.embed, c.vocabSize * c.hiddenSize);
  const positions = L.positions ? add(L.positions, c.maxPositions * c.hiddenSize) : null;
  const byBlock = L.blocks.map((b) => {
    const ts: BaseTensor[] = [];
    for (const n of [b.attnNorm, b.mlpNorm]) {
      ts.push(add(`${n.module}.weight`, n.size));
      if (n.bias) ts.push(add(`${n.module}.bias`, n.size));
    }
    for (const l of linears(b)) {
      ts.push(add(`${l.module}.weight`, l.in * l.out, l, true));
      if (l.bias) ts.push(add(`${l.module}.bias`, l.out, l));
    }
    return ts;
  });
  const finalNorm = [add(`${L.finalNorm.module}.weight`, L.finalNorm.size)];
  if (L.finalNorm.bias) finalNorm.push(add(`${L.finalNorm.module}.bias`, L.finalNorm.size));
  const lmHead = L.lmHead ? add(L.lmHead, c.vocabSize * c.hiddenSize) : null;
  // RoPE's inverse frequencies are uploaded with the weights.
  if (c.positions === 'rope') add('rope.inv_freq', c.headDim / 2);
  return { all, byBlock, embed, positions, finalNorm, lmHead };
}

/** The LoRA groups planMethod would create: one A per module, one B per linear part. */
function loraGroups(c: ModelConfig, targets: string[]): { block: number; desc: LinearDesc }[] {
  const t = targets.length ? targets : DEFAULT_TARGETS[c.architecture];
  const out: { block: number; desc: LinearDesc }[] = [];
  modelLayout(c).blocks.forEach((b, block) => {
    for (const desc of linears(b)) if (matchesTarget(desc.module, t)) out.push({ block, desc });
  });
  return out;
}

/**
 * The kernel dispatches one optimizer step records (each takes a 256-byte slot of the batch's uniform
 * params). Follows recordMicroBatch; an estimate (matmul variants and small kernels may split).
 */
function dispatchesPerStep(
  c: ModelConfig,
  o: { A: number; adapted: { part0: boolean }[]; dropout: boolean; firstBlock: number; trainedLinearWeights: number; trainedBiases: number; embedTrained: number; headTrained: boolean; trainables: number },
): number {
  const rope = c.positions === 'rope' ? 2 : 0;
  const mlpMatmuls = c.activation === 'silu' ? 3 : 2;
  // Bias adds, one per linear with a bias (GPT-2's c_attn runs as three: q, k, v).
  const biasForward = modelLayout(c).blocks.reduce((s, b) => s + linears(b).reduce((k, l) => k + (l.bias ? splitParts(l) : 0), 0), 0);
  const forwardBlock = 1 + 4 + rope + 1 + 1 + 1 + mlpMatmuls + 1 + 1;
  const backwardBlock = 1 + 1 + (mlpMatmuls - 1) + 2 + 1 + 1 + 2 + rope + 3 + 2 + 1;
  const blocksBack = c.numLayers - o.firstBlock;
  let lora = 0;
  for (const a of o.adapted) lora += 1 + (a.part0 ? 1 + (o.dropout ? 1 : 0) : 0) + 3 + (o.dropout ? 3 : 1);
  const micro =
    c.numLayers * forwardBlock + biasForward + 5 + // embedding, final norm, lm_head, cross-entropy (2)
    blocksBack * backwardBlock + o.trainedLinearWeights + o.trainedBiases + 4 + (o.headTrained ? 1 : 0) + o.embedTrained +
    lora;
  return o.A * micro + o.trainables + 1; // + global grad norm: one partial per tensor, one finalize
}

/** GpuModel splits GPT-2's fused c_attn into q, k, v linears. */
const splitParts = (l: LinearDesc): number => (l.short === 'c_attn' ? 3 : 1);

export function trainingMemoryPlan(c: ModelConfig, o: TrainMemoryOptions): TrainMemoryPlan {
  const B = Math.max(1, Math.floor(o.batchSize));
  const T = Math.max(8, Math.ceil(Math.max(1, Math.floor(o.seqLen)) / 8) * 8);
  const A = Math.max(1, Math.floor(o.gradAccum ?? 1));
  const N = B * T;
  const C = c.hiddenSize;
  const V = c.vocabSize;
  const I = c.intermediateSize;
  const qd = c.numHeads * c.headDim;
  const kvd = c.numKvHeads * c.headDim;
  const base = baseTensors(c);
  const parameters = base.all.filter((t) => t.name !== 'rope.inv_freq').reduce((s, t) => s + t.numel, 0);
  let invalid: string | null = null;

  // ---- which tensors train (mirrors planMethod)
  const trainedBase = new Set<BaseTensor>();
  const trainSizes: number[] = [];
  const trainBase = (t: BaseTensor | null): void => {
    if (!t || trainedBase.has(t)) return;
    trainedBase.add(t);
    trainSizes.push(t.numel);
  };
  const isBias = (t: BaseTensor): boolean => t.name.endsWith('.bias');
  const lora = o.method === 'lora' || o.method === 'qlora';
  const groups = lora ? loraGroups(c, o.lora?.targets ?? []) : [];
  const r = lora ? Math.max(1, Math.floor(o.lora?.r ?? 8)) : 0;
  const dropout = lora && (o.lora?.dropout ?? 0) > 0;
  switch (o.method) {
    case 'full':
      trainBase(base.embed);
      trainBase(base.positions);
      for (const b of base.byBlock) b.forEach(trainBase);
      base.finalNorm.forEach(trainBase);
      if (o.trainLmHead !== false) trainBase(base.lmHead);
      break;
    case 'partial': {
      const n = Math.min(c.numLayers, Math.max(1, Math.floor(o.trainableLayers ?? 1)));
      for (let i = c.numLayers - n; i < c.numLayers; i++) base.byBlock[i].forEach(trainBase);
      if (o.trainFinalNorm !== false) base.finalNorm.forEach(trainBase);
      if (o.trainLmHead) trainBase(base.lmHead ?? base.embed);
      break;
    }
    case 'bitfit':
      for (const b of base.byBlock) b.filter(isBias).forEach(trainBase);
      base.finalNorm.filter(isBias).forEach(trainBase);
      if (trainSizes.length === 0) invalid = `BitFit trains only biases, and ${c.hfClass} has none`;
      break;
    case 'lora':
    case 'qlora':
      if (groups.length === 0) invalid = `the LoRA targets match no linear layer of ${c.hfClass}`;
      for (const g of groups) {
        trainSizes.push(r * g.desc.in);
        // GPT-2's fused c_attn: three B parts (q, k, v) of C rows each; same total as one [3C, r].
        const parts = g.desc.short === 'c_attn' ? 3 : 1;
        for (let p = 0; p < parts; p++) trainSizes.push((g.desc.out / parts) * r);
      }
      break;
  }
  const trainableParameters = trainSizes.reduce((a, b) => a + b, 0);
  const baseTrainedElems = [...trainedBase].reduce((s, t) => s + t.numel, 0);

  // ---- weights
  let frozenWeightBytes = 0;
  let largest = { name: '', bytes: 0 };
  const consider = (name: string, bytes: number): void => {
    if (bytes > largest.bytes) largest = { name, bytes };
  };
  for (const t of base.all) {
    if (trainedBase.has(t)) continue;
    const bytes = o.method === 'qlora' && t.linearWeight ? Math.ceil((t.numel * QLORA_BITS_PER_PARAM) / 8) : t.numel * 4;
    frozenWeightBytes += bytes;
    // QLoRA's largest packed piece is the codes (4 bits per parameter).
    consider(t.name, o.method === 'qlora' && t.linearWeight ? Math.ceil(t.numel / 2) : t.numel * 4);
  }
  for (const t of trainedBase) consider(`${t.name} (and its gradient and AdamW moments)`, t.numel * 4);
  const trainableWeightBytes = trainableParameters * 4;
  const gradientBytes = trainableParameters * 4;
  const optimizerBytes = 2 * trainableParameters * 4;

  // ---- activations: one (B, T) workspace as TrainingEngine.ensureWorkspace allocates it
  const swiglu = c.activation === 'silu';
  const f = (n: number): number => Math.max(1, n) * 4;
  const perLayerSaved =
    f(N * C) * 4 + // x, h1, xmid, h2
    f(N) * 4 + // s1a, s1b, s2a, s2b
    f(N * qd) * 2 + // q, att
    f(N * kvd) * 2 + // k, v
    f(N * c.numHeads) + // lse
    f(N * I) * (swiglu ? 3 : 2); // g, u, a
  const logitsBytes = 2 * f(N * V);
  const finalAndCe = f(N * C) * 2 + f(N) * 2 + logitsBytes + f(N) * 2 + f(3); // xf, hf, sfa, sfb, logits, dlogits, ce.lse, ce.losses, ce.stats
  const backwardScratch =
    f(N * C) * 4 + // o, dx, dh, dtmp
    f(N * qd) * 2 + // dq, datt
    f(N * kvd) * 2 + // dk, dv
    f(N * c.numHeads) + // delta
    f(N * I) * (swiglu ? 3 : 2); // dg, du, da
  let loraActs = 0;
  for (const g of groups) loraActs += f(N * r) * 2 + (dropout ? f(N * g.desc.in) * 3 : 0); // u, du (+ x_d, dx_d, dx_s)
  const uploads = A * 2 * f(N); // ids + targets per micro-batch slot
  const activationBytes = c.numLayers * perLayerSaved + finalAndCe + backwardScratch + loraActs + uploads;
  consider('logits (N×V)', f(N * V));
  consider('MLP activations (N×I)', f(N * I));

  // ---- scratch
  const embedTrained = trainedBase.has(base.embed) || (base.positions !== null && trainedBase.has(base.positions));
  let firstBlock = c.numLayers;
  for (let i = 0; i < c.numLayers && firstBlock === c.numLayers; i++) {
    if (base.byBlock[i].some((t) => trainedBase.has(t)) || groups.some((g) => g.block === i)) firstBlock = i;
  }
  let trainedLinearWeights = 0;
  let trainedBiases = 0;
  for (const t of trainedBase) {
    if (!t.linear) continue;
    if (t.linearWeight) trainedLinearWeights += splitParts(t.linear);
    else trainedBiases += splitParts(t.linear);
  }
  const dispatches = dispatchesPerStep(c, {
    A,
    adapted: groups.flatMap((g) => Array.from({ length: splitParts(g.desc) }, (_, p) => ({ part0: p === 0 }))),
    dropout,
    firstBlock: embedTrained ? 0 : firstBlock,
    trainedLinearWeights,
    trainedBiases,
    embedTrained: (trainedBase.has(base.embed) ? 1 : 0) + (base.positions && trainedBase.has(base.positions) ? 1 : 0),
    headTrained: trainedBase.has(base.lmHead ?? base.embed),
    trainables: trainSizes.length,
  });
  const params = dispatches * PARAMS_ALIGN;
  // rows, offsets (≤ N + 1) and order of the embedding-gradient index, one per micro-batch until the step ends.
  const embedIndex = embedTrained ? A * (f(N) * 3 + 4) : 0;
  const scratchBytes = f(C) * 2 + f(gradNormPartialsLength(trainSizes)) + f(1) * 2 + f(3 * A) + params + embedIndex;

  const totalBytes = frozenWeightBytes + trainableWeightBytes + gradientBytes + optimizerBytes + activationBytes + scratchBytes;
  const byRole: RoleBytes = {
    weights: frozenWeightBytes + baseTrainedElems * 4,
    trainable: lora ? trainableWeightBytes : 0,
    gradients: gradientBytes,
    optimizer: optimizerBytes,
    activations: activationBytes,
    scratch: scratchBytes,
  };
  return {
    method: o.method,
    B,
    T,
    parameters,
    trainableParameters,
    frozenWeightBytes,
    trainableWeightBytes,
    gradientBytes,
    optimizerBytes,
    activationBytes,
    logitsBytes,
    perLayerSavedBytes: perLayerSaved,
    scratchBytes,
    totalBytes,
    worstCaseBytes: totalBytes + 2 * activationBytes,
    byRole,
    largestTensor: largest,
    invalid,
  };
}

export interface DeviceLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface FitCheck {
  /** false: the run would fail when allocating (a tensor over the adapter's limits, or the method cannot apply). */
  fits: boolean;
  /** What stops it, and what to change. */
  problems: string[];
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(n < 2 ** 20 ? 2 : 0)} MiB`;

/**
 * Compare a plan with the adapter's limits. WebGPU does not tell how much memory the GPU has, so the
 * hard limits are per buffer: every tensor must fit one storage binding (and one buffer).
 */
export function checkFit(plan: TrainMemoryPlan, limits: DeviceLimits): FitCheck {
  const problems: string[] = [];
  if (plan.invalid) problems.push(`${plan.invalid}: pick another method`);
  const cap = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  if (plan.largestTensor.bytes > cap) {
    const isLogits = plan.largestTensor.name.startsWith('logits');
    problems.push(
      `${plan.largestTensor.name} needs ${mib(plan.largestTensor.bytes)} in one buffer, over this adapter's limit of ${mib(cap)}: ` +
        (isLogits ? 'lower the batch size or the sequence length' : 'this model is too large for this adapter'),
    );
  }
  return { fits: problems.length === 0, problems };
}
