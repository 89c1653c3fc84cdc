// The tensors each architecture has, named exactly as Hugging Face stores them, with the shapes
// the config implies. Linear weights are nn.Linear [out, in] for Llama/Qwen2 and Conv1D [in, out]
// for GPT-2 (peft-spec §6).
import type { ModelConfig } from './config';

export type LinearLayout = 'out_in' | 'in_out';

/** One linear layer: its HF module path, sizes and where its weight/bias live. */
export interface LinearDesc {
  /** HF module path, e.g. `model.layers.0.self_attn.q_proj` or `transformer.h.0.attn.c_attn`. */
  module: string;
  /** Short name used by target_modules matching, e.g. `q_proj`, `c_attn`. */
  short: string;
  in: number;
  out: number;
  layout: LinearLayout;
  bias: boolean;
}

export interface NormDesc {
  module: string;
  size: number;
  bias: boolean;
}

export interface BlockDesc {
  attnNorm: NormDesc;
  /** Llama/Qwen2: q, k, v separate; GPT-2: one fused c_attn [q | k | v]. */
  qkv: { q: LinearDesc; k: LinearDesc; v: LinearDesc } | { fused: LinearDesc };
  o: LinearDesc;
  mlpNorm: NormDesc;
  /** Llama/Qwen2: gate + up (SwiGLU); GPT-2: c_fc (up only). */
  gate: LinearDesc | null;
  up: LinearDesc;
  down: LinearDesc;
}

export interface ModelLayout {
  embed: string; // [V, C]
  positions: string | null; // GPT-2 wpe [P, C]
  blocks: BlockDesc[];
  finalNorm: NormDesc;
  /** null when tied to the embedding. */
  lmHead: string | null;
}

export function modelLayout(c: ModelConfig): ModelLayout {
  const C = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  if (c.architecture === 'gpt2') {
    const blocks: BlockDesc[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `transformer.h.${i}`;
      const lin = (m: string, short: string, inF: number, outF: number): LinearDesc => ({
        module: `${p}.${m}`, short, in: inF, out: outF, layout: 'in_out', bias: true,
      });
      blocks.push({
        attnNorm: { module: `${p}.ln_1`, size: C, bias: true },
        qkv: { fused: lin('attn.c_attn', 'c_attn', C, 3 * C) },
        o: lin('attn.c_proj', 'c_proj', C, C),
        mlpNorm: { module: `${p}.ln_2`, size: C, bias: true },
        gate: null,
        up: lin('mlp.c_fc', 'c_fc', C, I),
        down: lin('mlp.c_proj', 'c_proj', I, C),
      });
    }
    return {
      embed: 'transformer.wte.weight',
      positions: 'transformer.wpe.weight',
      blocks,
      finalNorm: { module: 'transformer.ln_f', size: C, bias: true },
      lmHead: c.tieWordEmbeddings ? null : 'lm_head.weight',
    };
  }
  const blocks: BlockDesc[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    const lin = (m: string, short: string, inF: number, outF: number, bias: boolean): LinearDesc => ({
      module: `${p}.${m}`, short, in: inF, out: outF, layout: 'out_in', bias,
    });
    blocks.push({
      attnNorm: { module: `${p}.input_layernorm`, size: C, bias: false },
      qkv: {
        q: lin('self_attn.q_proj', 'q_proj', C, q, c.attentionBias),
        k: lin('self_attn.k_proj', 'k_proj', C, kv, c.attentionBias),
        v: lin('self_attn.v_proj', 'v_proj', C, kv, c.attentionBias),
      },
      o: lin('self_attn.o_proj', 'o_proj', q, C, c.architecture === 'llama' && c.attentionBias),
      mlpNorm: { module: `${p}.post_attention_layernorm`, size: C, bias: false },
      gate: lin('mlp.gate_proj', 'gate_proj', C, I, false),
      up: lin('mlp.up_proj', 'up_proj', C, I, false),
      down: lin('mlp.down_proj', 'down_proj', I, C, false),
    });
  }
  return {
    embed: 'model.embed_tokens.weight',
    positions: null,
    blocks,
    finalNorm: { module: 'model.norm', size: C, bias: false },
    lmHead: c.tieWordEmbeddings ? null : 'lm_head.weight',
  };
}

/** A row-major [rows, cols] matrix as [cols, rows] (between nn.Linear [out, in] and Conv1D [in, out]). */
export function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

export function linears(block: BlockDesc): LinearDesc[] {
  const qkv = 'fused' in block.qkv ? [block.qkv.fused] : [block.qkv.q, block.qkv.k, block.qkv.v];
  return [...qkv, block.o, ...(block.gate ? [block.gate] : []), block.up, block.down];
}

/** Every tensor the checkpoint must hold, with its shape. */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const L = modelLayout(c);
  const m = new Map<string, number[]>();
  m.set(L.embed, [c.vocabSize, c.hiddenSize]);
  if (L.positions) m.set(L.positions, [c.maxPositions, c.hiddenSize]);
  for (const b of L.blocks) {
    for (const n of [b.attnNorm, b.mlpNorm]) {
      m.set(`${n.module}.weight`, [n.size]);
      if (n.bias) m.set(`${n.module}.bias`, [n.size]);
    }
    for (const l of linears(b)) {
      m.set(`${l.module}.weight`, l.layout === 'out_in' ? [l.out, l.in] : [l.in, l.out]);
      if (l.bias) m.set(`${l.module}.bias`, [l.out]);
    }
  }
  m.set(`${L.finalNorm.module}.weight`, [L.finalNorm.size]);
  if (L.finalNorm.bias) m.set(`${L.finalNorm.module}.bias`, [L.finalNorm.size]);
  if (L.lmHead) m.set(L.lmHead, [c.vocabSize, c.hiddenSize]);
  return m;
}
