// A model's frozen weights on the GPU, uploaded tensor by tensor from a Checkpoint.
// GPT-2's fused c_attn is split at load into q, k, v parts (columns of the Conv1D weight), so every
// architecture runs the same block code; LoRA over c_attn (issue 4) handles the split on export.
import type { GpuContext, GpuTensor } from '../gpu';
import { uploadF16 } from '../kernels/matmul_f16w';
import { releaseNf4Weight, uploadNf4Weight, type Nf4Weight } from '../kernels/nf4_matmul';
import { quantizeLinearWeight, type BnbCheckpoint } from '../io/bnb';
import { dynamicMap } from '../quant/nf4';
import { ropeInvFreq, ropeInvFreqTensor } from '../kernels/rope';
import { CheckpointError, type Checkpoint } from './checkpoint';
import type { ModelConfig } from './config';
import { uploadVocabTable, type VocabPart } from './vocab';
import { linears, modelLayout, type LinearDesc, type ModelLayout, type NormDesc } from './layout';

export interface GpuLinear {
  desc: LinearDesc;
  /** [out, in] for nn.Linear, [in, out] for Conv1D (desc.layout); for NF4 the packed codes. */
  weight: GpuTensor;
  bias: GpuTensor | null;
  /** QLoRA: the frozen weight as NF4 codes + scales ([out, in] whatever desc.layout says); else null. */
  nf4?: Nf4Weight | null;
}

export type WeightDType = 'f32' | 'f16' | 'nf4';

export interface LoadOptions {
  /**
   * Residency of the linear layers' matrices: f32, packed f16 (half the memory; unpacked in WGSL, no
   * `shader-f16` needed), or NF4 as bitsandbytes quantizes it (QLoRA; ~4.13 bits/parameter with double
   * quantization). Embeddings, norms, biases and lm_head always stay f32. f16 and NF4 are for
   * inference and frozen-base methods (LoRA/QLoRA); full / partial fine-tuning needs f32.
   */
  weightDType?: WeightDType;
  /** NF4 block size (default 64) and double quantization (default true). */
  nf4?: { blocksize?: number; doubleQuant?: boolean };
  /** Test hook: split vocabulary tables above this many bytes. */
  maxBindingBytes?: number;
}

/** Where weights come from: an HF checkpoint, or a pre-quantized transformers + bitsandbytes one. */
export type WeightSource = Checkpoint | BnbCheckpoint;

export interface GpuNorm {
  desc: NormDesc;
  weight: GpuTensor;
  bias: GpuTensor | null;
}

export interface GpuBlock {
  attnNorm: GpuNorm;
  q: GpuLinear;
  k: GpuLinear;
  v: GpuLinear;
  o: GpuLinear;
  mlpNorm: GpuNorm;
  gate: GpuLinear | null;
  up: GpuLinear;
  down: GpuLinear;
}

export interface LoadProgress {
  tensor: string;
  done: number;
  total: number;
  bytes: number;
}

export class GpuModel {
  private constructor(
    readonly ctx: GpuContext,
    readonly config: ModelConfig,
    readonly layout: ModelLayout,
    /** The token embedding as row blocks (one block unless V·C exceeds a binding). */
    readonly embedParts: VocabPart[],
    readonly positions: GpuTensor | null,
    readonly blocks: GpuBlock[],
    readonly finalNorm: GpuNorm,
    /** The output projection [V, C] as row blocks: the embedding's blocks when tied. */
    readonly headParts: VocabPart[],
    readonly invFreq: GpuTensor | null,
  ) {}

  /** The 8-bit map shared by the NF4 layers (QLoRA), else null. */
  sharedCode8: GpuTensor | null = null;

  /** Residency of the linear layers' matrices. */
  get weightDType(): WeightDType {
    const w = this.blocks[0]?.q;
    return w?.nf4 ? 'nf4' : w?.weight.dtype === 'f16x2' ? 'f16' : 'f32';
  }

  /** Bytes and parameters of the linear layers' frozen matrices as allocated on the GPU (bits/param = 8·bytes/params). */
  linearWeightFootprint(): { bytes: number; params: number } {
    let bytes = 0;
    let params = 0;
    for (const { linear } of this.linearLayers()) {
      params += linear.desc.in * linear.desc.out;
      const w = linear.nf4;
      if (w) {
        for (const t of [w.codes, w.absmax, w.double?.qabsmax, w.double?.absmax2]) if (t) bytes += Math.ceil(t.byteLength / 4) * 4;
      } else bytes += Math.ceil(linear.weight.byteLength / 4) * 4;
    }
    if (this.sharedCode8) bytes += this.sharedCode8.byteLength;
    return { bytes, params };
  }

  /** The embedding table [V, C] when it is one tensor (the first block otherwise; see embedParts). */
  get embed(): GpuTensor {
    return this.embedParts[0].table;
  }

  /** The output projection [V, C] when it is one tensor (the first block otherwise). */
  get lmHead(): GpuTensor {
    return this.headParts[0].table;
  }

  /** True when the vocabulary tables are split across bindings (they cannot be trained then). */
  get vocabSplit(): boolean {
    return this.embedParts.length > 1 || this.headParts.length > 1;
  }

  /** Upload a checkpoint's weights with the residency `opts.weightDType` (see LoadOptions). */
  static async load(ctx: GpuContext, ck: WeightSource, onProgress?: (p: LoadProgress) => void, opts: LoadOptions = {}): Promise<GpuModel> {
    const maxBinding = Math.min(opts.maxBindingBytes ?? Infinity, ctx.limits.maxStorageBufferBindingSize);
    const prequantized = 'readNf4' in ck;
    const dtype: WeightDType = prequantized ? 'nf4' : (opts.weightDType ?? 'f32');
    const f16 = dtype === 'f16';
    // One 8-bit map (bitsandbytes' dynamic map) shared by every double-quantized layer.
    const code8Values = dynamicMap();
    const sharedCode8 = dtype === 'nf4' ? ctx.tensor([256], { role: 'weights', label: 'nf4 code8 (shared)', data: code8Values }) : null;
    const uploadMatrix = (shape: number[], values: Float32Array, label: string): GpuTensor =>
      f16 ? uploadF16(ctx, shape, values, label) : ctx.tensor(shape, { role: 'weights', label, data: values });
    /** A linear layer's weight in the chosen residency. */
    const linearWeight = async (d: LinearDesc, values: Float32Array | null, label: string): Promise<{ weight: GpuTensor; nf4: Nf4Weight | null }> => {
      if (dtype !== 'nf4') return { weight: uploadMatrix(d.layout === 'out_in' ? [d.out, d.in] : [d.in, d.out], values!, label), nf4: null };
      const q = values
        ? quantizeLinearWeight(values, d, { blocksize: opts.nf4?.blocksize ?? 64, doubleQuant: opts.nf4?.doubleQuant ?? true, code8: code8Values })
        : await (ck as BnbCheckpoint).readNf4(d.module);
      const same = q.nested && q.nested.code8.every((v, i) => Object.is(v, code8Values[i]));
      const nf4 = uploadNf4Weight(ctx, q, { label, sharedCode8: same ? sharedCode8! : undefined });
      return { weight: nf4.codes, nf4 };
    };
    const c = ck.config;
    const L = modelLayout(c);
    const total = ck.tensors.size;
    let done = 0;
    let bytes = 0;
    const upload = async (name: string, shape: number[], data?: Float32Array): Promise<GpuTensor> => {
      const values = data ?? (await ck.readF32(name));
      const t = ctx.tensor(shape, { role: 'weights', label: name, data: values });
      done++;
      bytes += values.byteLength;
      onProgress?.({ tensor: name, done, total, bytes });
      return t;
    };
    const norm = async (d: NormDesc): Promise<GpuNorm> => ({
      desc: d,
      weight: await upload(`${d.module}.weight`, [d.size]),
      bias: d.bias ? await upload(`${d.module}.bias`, [d.size]) : null,
    });
    const linear = async (d: LinearDesc): Promise<GpuLinear> => {
      const name = `${d.module}.weight`;
      const values = prequantized ? null : await ck.readF32(name);
      const { weight, nf4 } = await linearWeight(d, values, name);
      done++;
      bytes += weight.byteLength;
      onProgress?.({ tensor: name, done, total, bytes });
      return { desc: d, weight, nf4, bias: d.bias ? await upload(`${d.module}.bias`, [d.out]) : null };
    };
    const vocabTable = async (name: string): Promise<VocabPart[]> => {
      const values = await ck.readF32(name);
      done++;
      bytes += values.byteLength;
      onProgress?.({ tensor: name, done, total, bytes });
      return uploadVocabTable(ctx, values, c.vocabSize, c.hiddenSize, name, maxBinding);
    };
    const embedParts = await vocabTable(L.embed);
    const positions = L.positions ? await upload(L.positions, [c.maxPositions, c.hiddenSize]) : null;
    const blocks: GpuBlock[] = [];
    for (const b of L.blocks) {
      let q: GpuLinear;
      let k: GpuLinear;
      let v: GpuLinear;
      if ('fused' in b.qkv) {
        // Conv1D c_attn: weight [C, 3C], bias [3C]; split columns into q | k | v.
        const f = b.qkv.fused;
        if (prequantized) {
          throw new CheckpointError(
            `${f.module}: pre-quantized GPT-2 checkpoints are not supported (the fused c_attn would have to be dequantized to split it); load the f32/f16 checkpoint with 4-bit quantization instead (--method qlora)`,
          );
        }
        const C = f.in;
        const W = await ck.readF32(`${f.module}.weight`);
        const bias = await ck.readF32(`${f.module}.bias`);
        const part = async (j: number, short: string): Promise<GpuLinear> => {
          const w = new Float32Array(C * C);
          for (let i = 0; i < C; i++) w.set(W.subarray(i * 3 * C + j * C, i * 3 * C + (j + 1) * C), i * C);
          const desc: LinearDesc = { ...f, short, out: C };
          const { weight: t, nf4 } = await linearWeight(desc, w, `${f.module}.weight[${short}]`);
          const bt = ctx.tensor([C], { role: 'weights', label: `${f.module}.bias[${short}]`, data: bias.slice(j * C, (j + 1) * C) });
          return { desc, weight: t, nf4, bias: bt };
        };
        q = await part(0, 'c_attn.q');
        k = await part(1, 'c_attn.k');
        v = await part(2, 'c_attn.v');
        done += 2;
        bytes += W.byteLength + bias.byteLength;
        onProgress?.({ tensor: f.module, done, total, bytes });
      } else {
        q = await linear(b.qkv.q);
        k = await linear(b.qkv.k);
        v = await linear(b.qkv.v);
      }
      blocks.push({
        attnNorm: await norm(b.attnNorm),
        q,
        k,
        v,
        o: await linear(b.o),
        mlpNorm: await norm(b.mlpNorm),
        gate: b.gate ? await linear(b.gate) : null,
        up: await linear(b.up),
        down: await linear(b.down),
      });
    }
    const finalNorm = await norm(L.finalNorm);
    const headParts = L.lmHead ? await vocabTable(L.lmHead) : embedParts;
    let invFreq: GpuTensor | null = null;
    if (c.positions === 'rope') {
      const s = c.ropeScaling;
      invFreq = ropeInvFreqTensor(
        ctx,
        ropeInvFreq(
          c.headDim,
          c.ropeTheta,
          s
            ? {
                factor: s.factor,
                low_freq_factor: s.lowFreqFactor,
                high_freq_factor: s.highFreqFactor,
                original_max_position_embeddings: s.originalMaxPositionEmbeddings,
              }
            : undefined,
        ),
      );
    }
    const model = new GpuModel(ctx, c, L, embedParts, positions, blocks, finalNorm, headParts, invFreq);
    model.sharedCode8 = sharedCode8;
    return model;
  }

  /** Every linear layer of the model with its block index (for methods such as LoRA). */
  *linearLayers(): Generator<{ block: number; linear: GpuLinear }> {
    for (let i = 0; i < this.blocks.length; i++) {
      const b = this.blocks[i];
      for (const l of [b.q, b.k, b.v, b.o, ...(b.gate ? [b.gate] : []), b.up, b.down]) yield { block: i, linear: l };
    }
  }

  release(): void {
    const seen = new Set<GpuTensor>();
    const rel = (t: GpuTensor | null): void => {
      if (t && !seen.has(t)) {
        seen.add(t);
        this.ctx.release(t);
      }
    };
    for (const p of [...this.embedParts, ...this.headParts]) rel(p.table);
    rel(this.positions);
    rel(this.invFreq);
    for (const b of this.blocks) {
      for (const n of [b.attnNorm, b.mlpNorm]) {
        rel(n.weight);
        rel(n.bias);
      }
      for (const l of [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) {
        if (!l) continue;
        if (l.nf4) releaseNf4Weight(this.ctx, l.nf4, l.nf4.double?.code8 !== this.sharedCode8);
        else rel(l.weight);
        rel(l.bias);
      }
    }
    rel(this.finalNorm.weight);
    rel(this.finalNorm.bias);
    rel(this.sharedCode8);
  }
}

export { linears };
