// float64 reference of one training step: the causal-LM loss of a batch and its gradient with
// respect to any trainable set (full fine-tuning, LoRA, BitFit, …), built on the autodiff tape of
// src/ref/tape.ts. The GPU trainer's loss and gradients are checked against this.
//
// The forward is the same math as referenceLogits (src/ref/model.ts): positions start at 0, GPT-2
// learned positions, RoPE with llama3 scaling when configured and inv_freq rounded to f32 once.
// Letters: B batch, T tokens per sequence, N = B·T, C hidden, V vocabulary, R LoRA rank.
import type { ModelConfig } from '../model/config';
import { modelLayout, type LinearDesc, type NormDesc } from '../model/layout';
import { referenceInvFreq } from './model';
import { Tape, type Var } from './tape';

export interface RefLora {
  r: number;
  alpha: number;
  /** scale alpha/√r instead of alpha/r (peft-spec §1.1) */
  rslora?: boolean;
  /** module path → A [r, in] and B [out, r] (nn.Linear layout even for GPT-2 Conv1D, as PEFT) */
  adapters: Map<string, { A: Float64Array; B: Float64Array }>;
  /** optional dropout masks per module (0/1 per element of x, shape [N, in]) and p */
  dropout?: { p: number; masks: Map<string, Uint8Array> };
}

export interface RefTrainResult {
  /** mean cross-entropy over the valid targets of the batch (NaN when there are none) */
  loss: number;
  /** number of valid (≠ −100) targets after the shift */
  count: number;
  /**
   * ∂loss/∂tensor for every trainable base tensor (HF name) and every LoRA tensor
   * (`${module}.lora_A.weight`, `${module}.lora_B.weight`), in the tensor's own layout.
   */
  grads: Map<string, Float64Array>;
}

export { referenceInvFreq };

export function referenceTrainStep(
  c: ModelConfig,
  weights: Map<string, Float64Array>,
  batch: { ids: number[][]; labels: number[][] },
  opts: { lora?: RefLora; trainable: (name: string) => boolean },
): RefTrainResult {
  const B = batch.ids.length;
  const T = B > 0 ? batch.ids[0].length : 0;
  if (B === 0 || T === 0) throw new Error('referenceTrainStep: empty batch');
  if (batch.labels.length !== B || [...batch.ids, ...batch.labels].some((row) => row.length !== T)) {
    throw new Error(`referenceTrainStep: ids and labels must both be ${B} rows of ${T} tokens`);
  }
  const N = B * T;
  const C = c.hiddenSize;
  const V = c.vocabSize;
  const L = modelLayout(c);
  const tape = new Tape();

  // One leaf per tensor, created on first use, so a tied tensor is one var that collects both gradients.
  const leaves = new Map<string, Var>();
  const param = (name: string, requiresGrad: boolean, value?: Float64Array): Var => {
    let v = leaves.get(name);
    if (!v) {
      const data = value ?? weights.get(name);
      if (!data) throw new Error(`referenceTrainStep: missing tensor ${name}`);
      v = tape.leaf(data, requiresGrad);
      leaves.set(name, v);
    }
    return v;
  };
  const base = (name: string): Var => param(name, opts.trainable(name));

  const lora = opts.lora;
  const scale = lora ? (lora.rslora ? lora.alpha / Math.sqrt(lora.r) : lora.alpha / lora.r) : 0;
  const usedAdapters = new Set<string>();

  /** Base linear plus, when the module has an adapter, its LoRA branch (peft-spec §1.2). */
  const linear = (x: Var, l: LinearDesc, weightName = `${l.module}.weight`): Var => {
    const y = tape.linear(x, base(weightName), l.bias ? base(`${l.module}.bias`) : null, {
      rows: N,
      in: l.in,
      out: l.out,
      layout: l.layout,
    });
    const ad = lora?.adapters.get(l.module);
    if (!lora || !ad) return y;
    usedAdapters.add(l.module);
    const R = lora.r;
    if (ad.A.length !== R * l.in || ad.B.length !== l.out * R) {
      throw new Error(`referenceTrainStep: adapter ${l.module} wants A [${R}, ${l.in}] and B [${l.out}, ${R}]`);
    }
    const mask = lora.dropout?.masks.get(l.module);
    const branch = tape.lora(
      x,
      param(`${l.module}.lora_A.weight`, true, ad.A),
      param(`${l.module}.lora_B.weight`, true, ad.B),
      { n: N, inFeatures: l.in, outFeatures: l.out, rank: R },
      scale,
      mask && lora.dropout ? { mask, p: lora.dropout.p } : undefined,
    );
    return tape.add(y, branch);
  };

  const norm = (x: Var, n: NormDesc): Var =>
    c.norm === 'rmsnorm'
      ? tape.rmsnorm(x, base(`${n.module}.weight`), N, C, c.normEps)
      : tape.layernorm(x, base(`${n.module}.weight`), base(`${n.module}.bias`), N, C, c.normEps);

  let x = tape.embedding(
    batch.ids.flat(),
    base(L.embed),
    V,
    C,
    L.positions ? { table: base(L.positions), nPos: c.maxPositions, seqLen: T, start: 0 } : undefined,
  );
  const invFreq = c.positions === 'rope' ? referenceInvFreq(c) : null;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const heads = { batch: B, seqLen: T, headDim: c.headDim };
  for (const blk of L.blocks) {
    const h = norm(x, blk.attnNorm);
    let q: Var;
    let k: Var;
    let v: Var;
    if ('fused' in blk.qkv) {
      // GPT-2 c_attn: one (N, qDim + 2·kvDim) output split into [q | k | v].
      const qkv = linear(h, blk.qkv.fused);
      const cols = qDim + 2 * kvDim;
      q = tape.sliceCols(qkv, N, cols, 0, qDim);
      k = tape.sliceCols(qkv, N, cols, qDim, kvDim);
      v = tape.sliceCols(qkv, N, cols, qDim + kvDim, kvDim);
    } else {
      q = linear(h, blk.qkv.q);
      k = linear(h, blk.qkv.k);
      v = linear(h, blk.qkv.v);
    }
    if (invFreq) {
      q = tape.rope(q, invFreq, { ...heads, heads: c.numHeads });
      k = tape.rope(k, invFreq, { ...heads, heads: c.numKvHeads });
    }
    const att = tape.attention(q, k, v, { ...heads, heads: c.numHeads, kvHeads: c.numKvHeads });
    x = tape.add(x, linear(att, blk.o));
    const h2 = norm(x, blk.mlpNorm);
    const act = blk.gate ? tape.swiglu(linear(h2, blk.gate), linear(h2, blk.up)) : tape.gelu(linear(h2, blk.up));
    x = tape.add(x, linear(act, blk.down));
  }
  const hf = norm(x, L.finalNorm);
  const head: LinearDesc = { module: 'lm_head', short: 'lm_head', in: C, out: V, layout: 'out_in', bias: false };
  const logits = linear(hf, head, L.lmHead ?? L.embed);

  if (lora) {
    const unused = [...lora.adapters.keys()].filter((m) => !usedAdapters.has(m));
    if (unused.length) throw new Error(`referenceTrainStep: no linear layer named ${unused.join(', ')} for a LoRA adapter`);
  }

  const { loss, count } = tape.causalLmLoss(logits, batch.labels.flat(), B, T, V);
  tape.backward(loss);
  const grads = new Map<string, Float64Array>();
  for (const [name, leaf] of leaves) {
    if (leaf.requiresGrad) grads.set(name, leaf.grad ?? new Float64Array(leaf.length));
  }
  return { loss: loss.value[0], count, grads };
}
