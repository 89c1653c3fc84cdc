// float64 reference forward of a whole model (Llama, Qwen2, GPT-2), composed from the float64 op
// references. The GPU model's logits are checked against this; nothing here touches the GPU.
import type { ModelConfig } from '../model/config';
import { linears, modelLayout, type LinearDesc } from '../model/layout';
import { attentionForward } from './attention';
import { embeddingForward } from './embedding';
import { geluForward } from './gelu';
import { layernormForward } from './layernorm';
import { rmsnormForward } from './rmsnorm';
import { llama3InvFreq, ropeForward, ropeInvFreq } from './rope';
import { swigluForward } from './swiglu';

export type RefWeights = Map<string, Float64Array>;

function get(w: RefWeights, name: string): Float64Array {
  const t = w.get(name);
  if (!t) throw new Error(`reference model: missing tensor ${name}`);
  return t;
}

/** y (N, out) = x (N, in) · Wᵀ + b, W stored [out, in] (nn.Linear) or [in, out] (Conv1D). */
export function linearRef(x: Float64Array, N: number, l: LinearDesc, w: RefWeights, extraWeight?: Float64Array): Float64Array {
  const W = extraWeight ?? get(w, `${l.module}.weight`);
  const b = l.bias ? get(w, `${l.module}.bias`) : null;
  const y = new Float64Array(N * l.out);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < l.out; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < l.in; i++) s += x[n * l.in + i] * (l.layout === 'out_in' ? W[o * l.in + i] : W[i * l.out + o]);
      y[n * l.out + o] = s;
    }
  }
  return y;
}

/** RoPE inverse frequencies (llama3 scaling when configured), rounded to f32 once as HF computes them. */
export function referenceInvFreq(c: ModelConfig): Float64Array {
  let invFreq = ropeInvFreq(c.headDim, c.ropeTheta);
  if (c.ropeScaling) {
    const s = c.ropeScaling;
    invFreq = llama3InvFreq(invFreq, {
      factor: s.factor,
      low_freq_factor: s.lowFreqFactor,
      high_freq_factor: s.highFreqFactor,
      original_max_position_embeddings: s.originalMaxPositionEmbeddings,
    });
  }
  return invFreq.map((f) => Math.fround(f));
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return a.map((v, i) => v + b[i]);
}

function norm(c: ModelConfig, x: Float64Array, N: number, module: string, w: RefWeights): Float64Array {
  const C = c.hiddenSize;
  if (c.norm === 'rmsnorm') return rmsnormForward(x, get(w, `${module}.weight`), N, C, c.normEps).out;
  return layernormForward(x, get(w, `${module}.weight`), get(w, `${module}.bias`), N, C, c.normEps).out;
}

/**
 * Logits (B·T, V) for token ids (B, T) starting at position 0. `hook(module, x, y)` may modify a
 * linear layer's output (used to add LoRA deltas in reference checks).
 */
export function referenceLogits(
  c: ModelConfig,
  w: RefWeights,
  ids: number[][],
  hook?: (l: LinearDesc, x: Float64Array, y: Float64Array, N: number) => void,
): Float64Array {
  const B = ids.length;
  const T = ids[0].length;
  const N = B * T;
  const C = c.hiddenSize;
  const L = modelLayout(c);
  const flat = ids.flat();
  const lin = (x: Float64Array, l: LinearDesc): Float64Array => {
    const y = linearRef(x, N, l, w);
    hook?.(l, x, y, N);
    return y;
  };
  let x = embeddingForward(
    flat,
    get(w, L.embed),
    c.vocabSize,
    C,
    L.positions ? { table: get(w, L.positions), nPos: c.maxPositions, seqLen: T, start: 0 } : undefined,
  );
  const invFreq = c.positions === 'rope' ? referenceInvFreq(c) : null;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  for (const blk of L.blocks) {
    const h = norm(c, x, N, blk.attnNorm.module, w);
    let q: Float64Array;
    let k: Float64Array;
    let v: Float64Array;
    if ('fused' in blk.qkv) {
      const qkv = lin(h, blk.qkv.fused);
      q = new Float64Array(N * qDim);
      k = new Float64Array(N * kvDim);
      v = new Float64Array(N * kvDim);
      for (let n = 0; n < N; n++) {
        q.set(qkv.subarray(n * 3 * C, n * 3 * C + C), n * qDim);
        k.set(qkv.subarray(n * 3 * C + C, n * 3 * C + 2 * C), n * kvDim);
        v.set(qkv.subarray(n * 3 * C + 2 * C, n * 3 * C + 3 * C), n * kvDim);
      }
    } else {
      q = lin(h, blk.qkv.q);
      k = lin(h, blk.qkv.k);
      v = lin(h, blk.qkv.v);
    }
    if (invFreq) {
      q = ropeForward(q, invFreq, { batch: B, seqLen: T, heads: c.numHeads, headDim: c.headDim });
      k = ropeForward(k, invFreq, { batch: B, seqLen: T, heads: c.numKvHeads, headDim: c.headDim });
    }
    const att = attentionForward(q, k, v, {
      batch: B,
      seqLen: T,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
    }).out;
    x = add(x, lin(att, blk.o));
    const h2 = norm(c, x, N, blk.mlpNorm.module, w);
    const act = blk.gate ? swigluForward(lin(h2, blk.gate), lin(h2, blk.up)) : geluForward(lin(h2, blk.up));
    x = add(x, lin(act, blk.down));
  }
  const hf = norm(c, x, N, L.finalNorm.module, w);
  const head: LinearDesc = { module: 'lm_head', short: 'lm_head', in: C, out: c.vocabSize, layout: 'out_in', bias: false };
  return linearRef(hf, N, head, w, get(w, L.lmHead ?? L.embed));
}

export { linears };
