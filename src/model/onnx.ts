// A model as an ONNX graph (opset 17, float32) with the inputs and outputs Hugging Face Optimum gives
// decoders exported with a KV cache ("text-generation-with-past"; the consumers of that layout, e.g.
// Optimum's ORTModelForCausalLM, were not run here — onnxruntime-web is):
//   inputs   input_ids [batch, sequence] int64, attention_mask [batch, past + sequence] int64 (1 = token,
//            0 = padding), position_ids [batch, sequence] int64, past_key_values.{i}.key / .value
//            [batch, kv_heads, past, head_dim] float32 (past = 0 on the first call)
//   outputs  logits [batch, sequence, vocab], present.{i}.key / .value [batch, kv_heads, past + sequence,
//            head_dim] (keys after RoPE, as transformers caches them)
// The math is the Hugging Face models' (peft-spec §6), written with standard ONNX operators only
// (onnxruntime-web is the tests' independent oracle):
//   Llama / Qwen2: Gather embedding → per block RMSNorm → q, k, v (+ biases) → RoPE at position_ids
//   (rotate_half, inv_freq with llama3 scaling when configured) → keys and values appended to the past
//   → grouped-query attention, causal and padding-masked → o_proj → residual → RMSNorm → SiLU(gate)·up
//   → down_proj → residual; final RMSNorm; lm_head (or the tied embedding).
//   GPT-2: wte + wpe[position_ids] → LayerNorm → c_attn (Conv1D [in, out]) split in q, k, v →
//   attention → c_proj → residual → LayerNorm → c_fc → GELU (tanh) → c_proj → residual; ln_f; tied head.
// Linear weights become initializers in [in, out] layout (MatMul without a Transpose node).
import { OnnxGraph, ONNX_BOOL, ONNX_FLOAT, ONNX_INT64, OnnxExportError } from '../io/onnx';
import { ropeInvFreq } from '../kernels/rope';
import type { ModelConfig } from './config';
import { linears, modelLayout, transposed, type LinearDesc, type NormDesc } from './layout';

export interface OnnxWeights {
  config: ModelConfig;
  /** A tensor by its Hugging Face name, as f32 in its stored layout. */
  readF32(name: string): Promise<Float32Array>;
}

export interface OnnxExportOptions {
  /** Recorded in the model's metadata (e.g. the base model and the adapter merged into it). */
  metadata?: Record<string, string>;
  onProgress?: (p: { tensor: string; done: number; total: number }) => void;
}

export const ONNX_OPSET = 17;

/** The ONNX model (one .onnx file, weights inside) of `weights`. */
export async function exportOnnx(weights: OnnxWeights, options: OnnxExportOptions = {}): Promise<Uint8Array> {
  const c = weights.config;
  const L = modelLayout(c);
  const g = new OnnxGraph(`webtune ${c.hfClass}`);
  const total = L.blocks.length * 9 + 4;
  let done = 0;
  const progress = (tensor: string): void => options.onProgress?.({ tensor, done: ++done, total });

  const C = c.hiddenSize;
  const NH = c.numHeads;
  const NKV = c.numKvHeads;
  const D = c.headDim;
  const groups = NH / NKV;
  if (!Number.isInteger(groups)) throw new OnnxExportError(`num_attention_heads ${NH} is not a multiple of num_key_value_heads ${NKV}`);

  // Inputs.
  const ids = g.input('input_ids', ONNX_INT64, ['batch_size', 'sequence_length']);
  const attentionMask = g.input('attention_mask', ONNX_INT64, ['batch_size', 'total_sequence_length']);
  const positionIds = g.input('position_ids', ONNX_INT64, ['batch_size', 'sequence_length']);
  const past = L.blocks.map((_, i) => ({
    key: g.input(`past_key_values.${i}.key`, ONNX_FLOAT, ['batch_size', NKV, 'past_sequence_length', D]),
    value: g.input(`past_key_values.${i}.value`, ONNX_FLOAT, ['batch_size', NKV, 'past_sequence_length', D]),
  }));

  // Sequence lengths as scalars: S (new tokens), T (past + new), P = T − S.
  const dim1 = (t: string, name: string): string =>
    g.node('Squeeze', [g.node('Slice', [g.node('Shape', [t]), g.ints('one', [1]), g.ints('two', [2])]), g.ints('axis0', [0])], {}, undefined, name);
  const S = dim1(ids, 'seq_len');
  const T = dim1(attentionMask, 'total_len');
  const P = g.node('Sub', [T, S], {}, undefined, 'past_len');

  // Mask [B, 1, S, T]: query i (absolute position P + i) sees key j when j ≤ P + i and attention_mask[b, j] = 1;
  // elsewhere float32's lowest value (as transformers; a fully padded row then stays finite).
  const one = g.intScalar('one_i64', 1);
  const queryPos = g.node('Unsqueeze', [g.node('Range', [P, T, one]), g.ints('axis1', [1])], {}, undefined, 'query_positions'); // [S, 1]
  const keyPos = g.node('Unsqueeze', [g.node('Range', [g.intScalar('zero_i64', 0), T, one]), g.ints('axis0', [0])], {}, undefined, 'key_positions'); // [1, T]
  const causal = g.node('LessOrEqual', [keyPos, queryPos], {}, undefined, 'causal'); // [S, T]
  const notPad = g.node('Unsqueeze', [g.node('Cast', [attentionMask], { to: ONNX_BOOL }), g.ints('axes12', [1, 2])], {}, undefined, 'not_padding'); // [B, 1, 1, T]
  const visible = g.node('And', [causal, notPad], {}, undefined, 'visible'); // [B, 1, S, T]
  const mask4 = g.node('Where', [visible, g.scalar('zero_f', 0), g.scalar('lowest_f32', -3.4028234663852886e38)], {}, undefined, 'attention_bias');
  const mask = g.node('Unsqueeze', [mask4, g.ints('axis1', [1])], {}, undefined, 'attention_bias5'); // [B, 1, 1, S, T]

  // Embeddings.
  const embed = g.weight(L.embed, [c.vocabSize, C], await weights.readF32(L.embed));
  progress(L.embed);
  let x = g.node('Gather', [embed, ids], { axis: 0 }, undefined, 'embed'); // [B, S, C]
  if (L.positions) {
    const wpe = g.weight(L.positions, [c.maxPositions, C], await weights.readF32(L.positions));
    progress(L.positions);
    x = g.node('Add', [x, g.node('Gather', [wpe, positionIds], { axis: 0 }, undefined, 'wpe_lookup')], {}, undefined, 'embed_pos');
  }

  // RoPE at position_ids, computed in the graph as transformers does: freqs = position ⊗ inv_freq.
  let cos: string | null = null;
  let sin: string | null = null;
  if (c.positions === 'rope') {
    const s = c.ropeScaling;
    const inv = ropeInvFreq(
      D,
      c.ropeTheta,
      s ? { factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor, original_max_position_embeddings: s.originalMaxPositionEmbeddings } : undefined,
    );
    const posF = g.node('Unsqueeze', [g.node('Cast', [positionIds], { to: ONNX_FLOAT }), g.ints('axis2', [2])], {}, undefined, 'positions_f32'); // [B, S, 1]
    const freqs = g.node('Mul', [posF, g.weight('rope_inv_freq', [D / 2], inv)], {}, undefined, 'rope_freqs'); // [B, S, D/2]
    const emb = g.node('Unsqueeze', [g.node('Concat', [freqs, freqs], { axis: -1 }), g.ints('axis1', [1])], {}, undefined, 'rope_emb'); // [B, 1, S, D]
    cos = g.node('Cos', [emb], {}, undefined, 'rope_cos');
    sin = g.node('Sin', [emb], {}, undefined, 'rope_sin');
  }

  const norm = async (d: NormDesc, input: string): Promise<string> => {
    const w = g.weight(`${d.module}.weight`, [d.size], await weights.readF32(`${d.module}.weight`));
    if (c.norm === 'layernorm') {
      const b = d.bias ? g.weight(`${d.module}.bias`, [d.size], await weights.readF32(`${d.module}.bias`)) : g.weight(`${d.module}.zero_bias`, [d.size], new Float32Array(d.size));
      return g.node('LayerNormalization', [input, w, b], { axis: -1, epsilon: { float: c.normEps } }, undefined, d.module);
    }
    // RMSNorm: x / sqrt(mean(x²) + eps) · w
    const ms = g.node('ReduceMean', [g.node('Mul', [input, input])], { axes: [-1], keepdims: 1 });
    const rms = g.node('Sqrt', [g.node('Add', [ms, g.scalar(`${d.module}.eps`, c.normEps)])]);
    return g.node('Mul', [g.node('Div', [input, rms]), w], {}, undefined, d.module);
  };

  /** x · W (+ b) with W as [in, out] (nn.Linear weights transposed here, Conv1D weights as stored). */
  const linear = async (d: LinearDesc, input: string): Promise<string> => {
    const w = await weights.readF32(`${d.module}.weight`);
    const inOut = d.layout === 'out_in' ? transposed(w, d.out, d.in) : w;
    progress(`${d.module}.weight`);
    let y = g.node('MatMul', [input, g.weight(`${d.module}.weight`, [d.in, d.out], inOut)], {}, undefined, d.module);
    if (d.bias) y = g.node('Add', [y, g.weight(`${d.module}.bias`, [d.out], await weights.readF32(`${d.module}.bias`))], {}, undefined, `${d.module}.add_bias`);
    return y;
  };

  /** [B, S, heads·D] → [B, heads, S, D] */
  const heads = (t: string, n: number): string =>
    g.node('Transpose', [g.node('Reshape', [t, g.ints('shape_heads', [0, 0, n, D])])], { perm: [0, 2, 1, 3] });
  const rope = (t: string): string => {
    if (!cos || !sin) return t;
    const [x1, x2] = g.nodeN('Split', [t, g.ints('halves', [D / 2, D / 2])], 2, { axis: -1 });
    const rotated = g.node('Concat', [g.node('Neg', [x2]), x1], { axis: -1 });
    return g.node('Add', [g.node('Mul', [t, cos]), g.node('Mul', [rotated, sin])]);
  };
  const scale = g.scalar('attn_scale', 1 / Math.sqrt(D));

  for (const [i, b] of L.blocks.entries()) {
    const h = await norm(b.attnNorm, x);
    let q: string, k: string, v: string;
    if ('fused' in b.qkv) {
      const qkv = await linear(b.qkv.fused, h);
      [q, k, v] = g.nodeN('Split', [qkv, g.ints('qkv_split', [C, C, C])], 3, { axis: -1 }, `layer${i}.qkv_split`);
    } else {
      q = await linear(b.qkv.q, h);
      k = await linear(b.qkv.k, h);
      v = await linear(b.qkv.v, h);
    }
    // The new keys (after RoPE) and values appended to the past: the present, returned for the next call.
    const keys = g.node('Concat', [past[i].key, rope(heads(k, NKV))], { axis: 2 }, [`present.${i}.key`]);
    const values = g.node('Concat', [past[i].value, heads(v, NKV)], { axis: 2 }, [`present.${i}.value`]);
    // Grouped-query attention without repeating k and v: q as [B, NKV, G, S, D] against k, v as [B, NKV, 1, T, D].
    const q5 = g.node('Reshape', [rope(heads(q, NH)), g.ints('shape_q5', [0, NKV, groups, -1, D])]);
    const k5 = g.node('Unsqueeze', [keys, g.ints('axis2', [2])]);
    const v5 = g.node('Unsqueeze', [values, g.ints('axis2', [2])]);
    const scores = g.node('Add', [g.node('Mul', [g.node('MatMul', [q5, g.node('Transpose', [k5], { perm: [0, 1, 2, 4, 3] })]), scale]), mask]);
    const probs = g.node('Softmax', [scores], { axis: -1 }, undefined, `layer${i}.attn_probs`);
    const ctx5 = g.node('MatMul', [probs, v5]); // [B, NKV, G, S, D]
    const ctx = g.node('Reshape', [g.node('Transpose', [g.node('Reshape', [ctx5, g.ints('shape_ctx4', [0, NH, -1, D])])], { perm: [0, 2, 1, 3] }), g.ints('shape_merge', [0, 0, NH * D])]);
    x = g.node('Add', [x, await linear(b.o, ctx)], {}, undefined, `layer${i}.attn_residual`);

    const h2 = await norm(b.mlpNorm, x);
    let act: string;
    if (b.gate) {
      const gate = await linear(b.gate, h2);
      const up = await linear(b.up, h2);
      act = g.node('Mul', [g.node('Mul', [gate, g.node('Sigmoid', [gate])]), up], {}, undefined, `layer${i}.swiglu`);
    } else {
      // GELU, tanh approximation (gelu_new): 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³)))
      const u = await linear(b.up, h2);
      const cube = g.node('Mul', [g.node('Mul', [u, u]), u]);
      const inner = g.node('Mul', [g.node('Add', [u, g.node('Mul', [cube, g.scalar('gelu_c', 0.044715)])]), g.scalar('gelu_k', Math.sqrt(2 / Math.PI))]);
      const t = g.node('Add', [g.node('Tanh', [inner]), g.scalar('gelu_one', 1)]);
      act = g.node('Mul', [g.node('Mul', [u, t]), g.scalar('gelu_half', 0.5)], {}, undefined, `layer${i}.gelu`);
    }
    x = g.node('Add', [x, await linear(b.down, act)], {}, undefined, `layer${i}.mlp_residual`);
  }
  const final = await norm(L.finalNorm, x);
  let head: string;
  if (L.lmHead) {
    const w = await weights.readF32(L.lmHead);
    head = g.node('Transpose', [g.weight(L.lmHead, [c.vocabSize, C], w)], { perm: [1, 0] }, undefined, 'lm_head_t');
  } else {
    head = g.node('Transpose', [embed], { perm: [1, 0] }, undefined, 'tied_lm_head');
  }
  progress(L.lmHead ?? 'lm_head (tied)');
  const logits = g.node('MatMul', [final, head], {}, undefined, 'lm_head');
  g.output(logits, 'logits', ONNX_FLOAT, ['batch_size', 'sequence_length', c.vocabSize]);
  for (const [i] of L.blocks.entries()) {
    for (const kind of ['key', 'value']) g.declareOutput(`present.${i}.${kind}`, ONNX_FLOAT, ['batch_size', NKV, 'total_sequence_length', D]);
  }
  return g.serialize({
    opset: ONNX_OPSET,
    producer: 'webtune',
    producerVersion: '0.1.0',
    doc: `${c.hfClass} with a KV cache: input_ids, attention_mask, position_ids, past_key_values.* → logits, present.*`,
    metadata: { architecture: c.hfClass, ...options.metadata },
  });
}
