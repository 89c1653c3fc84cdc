// Inference with a KV cache: prefill a prompt, then decode one token at a time. Each call runs the
// whole model as one queue submission and reads back only the last position's logits.
//   B batch (1 here), T tokens in this chunk, P tokens already cached, S cache capacity,
//   C hidden, NH/NKV heads, D head dim, I MLP size, V vocabulary.
import type { GpuContext, GpuTensor } from '../gpu';
import { attentionForward } from '../kernels/attention';
import { geluForward } from '../kernels/gelu';
import { layernormForward } from '../kernels/layernorm';
import { residualAccumulate } from '../kernels/residual';
import { rmsnormForward } from '../kernels/rmsnorm';
import { ropeForward } from '../kernels/rope';
import { swigluForward } from '../kernels/swiglu';
import type { CommandBatch } from '../gpu';
import type { GpuModel, GpuNorm } from './gpu-model';
import { loraForwardDown, loraForwardUp } from '../kernels/lora';
import type { AdapterSet, LoraGroupTensors } from './adapters';
import type { GpuLinear } from './gpu-model';
import { linearForward } from './linear';
import { embedTokens, projectVocab } from './vocab';

export class ContextLengthError extends Error {
  override name = 'ContextLengthError';
}

/** Activation buffers for one chunk length T (reused across layers and calls). */
interface Workspace {
  T: number;
  ids: GpuTensor; // (T) u32
  x: GpuTensor; // (T, C) residual stream
  h: GpuTensor; // (T, C) normed
  stat1: GpuTensor; // (T) rstd (or mean for LayerNorm)
  stat2: GpuTensor; // (T) rstd for LayerNorm
  q: GpuTensor; // (T, NH·D)
  k: GpuTensor; // (T, NKV·D)
  v: GpuTensor; // (T, NKV·D)
  att: GpuTensor; // (T, NH·D)
  lse: GpuTensor; // (T, NH)
  o: GpuTensor; // (T, C)
  g: GpuTensor; // (T, I)
  u: GpuTensor; // (T, I)
  a: GpuTensor; // (T, I)
  /** LoRA: u = x·Aᵀ (T, r) per adapter group. */
  loraU: Map<LoraGroupTensors, GpuTensor>;
}

export class InferenceSession {
  /** Tokens in the cache. */
  past = 0;
  private readonly kCache: GpuTensor[] = [];
  private readonly vCache: GpuTensor[] = [];
  private readonly workspaces = new Map<number, Workspace>();
  private readonly last: GpuTensor; // (1, C)
  private readonly lastNormed: GpuTensor; // (1, C)
  private readonly lastStat1: GpuTensor;
  private readonly lastStat2: GpuTensor;
  private readonly logits: GpuTensor; // (1, V)
  private readonly ctx: GpuContext;

  /** LoRA adapters applied on top of the frozen weights (null: the base model). Switchable between calls. */
  adapters: AdapterSet | null = null;

  constructor(
    readonly model: GpuModel,
    /** S: the most tokens this session can hold (prompt + generated). */
    readonly capacity: number = model.config.maxPositions,
    adapters: AdapterSet | null = null,
  ) {
    this.adapters = adapters;
    const c = model.config;
    this.ctx = model.ctx;
    if (capacity > c.maxPositions) {
      throw new ContextLengthError(`context of ${capacity} tokens exceeds the model's ${c.maxPositions} positions`);
    }
    const kv = c.numKvHeads * c.headDim;
    for (let l = 0; l < c.numLayers; l++) {
      this.kCache.push(this.ctx.tensor([1, capacity, c.numKvHeads, c.headDim], { role: 'activations', label: `k_cache.${l}` }));
      this.vCache.push(this.ctx.tensor([1, capacity, c.numKvHeads, c.headDim], { role: 'activations', label: `v_cache.${l}` }));
    }
    void kv;
    const C = c.hiddenSize;
    this.last = this.ctx.tensor([1, C], { role: 'activations', label: 'last' });
    this.lastNormed = this.ctx.tensor([1, C], { role: 'activations', label: 'last.normed' });
    this.lastStat1 = this.ctx.tensor([1], { role: 'activations', label: 'last.stat1' });
    this.lastStat2 = this.ctx.tensor([1], { role: 'activations', label: 'last.stat2' });
    this.logits = this.ctx.tensor([1, c.vocabSize], { role: 'activations', label: 'logits' });
  }

  private workspace(T: number): Workspace {
    let w = this.workspaces.get(T);
    if (w) return w;
    const c = this.model.config;
    const t = (shape: number[], label: string, dtype: 'f32' | 'u32' = 'f32'): GpuTensor =>
      this.ctx.tensor(shape, { role: 'activations', label: `${label}[T=${T}]`, dtype });
    const C = c.hiddenSize;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    w = {
      T,
      ids: t([T], 'ids', 'u32'),
      x: t([T, C], 'x'),
      h: t([T, C], 'h'),
      stat1: t([T], 'stat1'),
      stat2: t([T], 'stat2'),
      q: t([T, q], 'q'),
      k: t([T, kv], 'k'),
      v: t([T, kv], 'v'),
      att: t([T, q], 'att'),
      lse: t([T, c.numHeads], 'lse'),
      o: t([T, C], 'o'),
      g: t([T, I], 'g'),
      u: t([T, I], 'u'),
      a: t([T, I], 'a'),
      loraU: new Map(),
    };
    // Only keep a few chunk sizes alive (prompt length and 1).
    if (this.workspaces.size >= 3) {
      const [oldest] = this.workspaces.keys();
      this.releaseWorkspace(this.workspaces.get(oldest)!);
      this.workspaces.delete(oldest);
    }
    this.workspaces.set(T, w);
    return w;
  }

  private releaseWorkspace(w: Workspace): void {
    for (const [k, v] of Object.entries(w)) if (k !== 'T' && k !== 'loraU') this.ctx.release(v as GpuTensor);
    for (const u of w.loraU.values()) this.ctx.release(u);
  }

  /** y = x·W (+b), plus s·(x·Aᵀ)·Bᵀ when an adapter covers this layer (no dropout at inference). */
  private linear(b: CommandBatch, w: Workspace, y: GpuTensor, x: GpuTensor, l: GpuLinear): void {
    linearForward(b, y, x, l, w.T);
    const hit = this.adapters?.loraByLinear.get(l);
    if (!hit) return;
    const g = hit.group;
    let u = w.loraU.get(g);
    if (!u) {
      u = this.ctx.tensor([w.T, g.r], { role: 'activations', label: `${g.module}.u[T=${w.T}]` });
      w.loraU.set(g, u);
    }
    const p = g.parts[hit.part];
    const d = { n: w.T, inFeatures: g.inFeatures, outFeatures: p.outFeatures, rank: g.r };
    if (hit.part === 0) loraForwardDown(b, u, x, g.A, d);
    loraForwardUp(b, y, u, p.B, d, g.scale);
  }

  private norm(b: CommandBatch, out: GpuTensor, x: GpuTensor, n: GpuNorm, N: number, s1: GpuTensor, s2: GpuTensor): void {
    const c = this.model.config;
    if (c.norm === 'rmsnorm') rmsnormForward(b, out, s1, x, n.weight, N, c.hiddenSize, c.normEps);
    else layernormForward(b, out, s1, s2, x, n.weight, n.bias!, N, c.hiddenSize, c.normEps);
  }

  /**
   * Run `ids` (continuing the cached sequence) through the model and return the logits (V) of the
   * last of them. The cache then holds `past + ids.length` tokens.
   */
  async forward(ids: readonly number[]): Promise<Float32Array> {
    const m = this.model;
    const c = m.config;
    const T = ids.length;
    if (T === 0) throw new ContextLengthError('nothing to run: the token list is empty');
    if (this.past + T > this.capacity) {
      throw new ContextLengthError(
        `${this.past + T} tokens exceed this session's context of ${this.capacity} (model maximum ${c.maxPositions})`,
      );
    }
    const w = this.workspace(T);
    const P = this.past;
    const C = c.hiddenSize;
    const kvDim = c.numKvHeads * c.headDim;
    this.ctx.write(w.ids, Uint32Array.from(ids));
    const b = this.ctx.batch();
    const temps: GpuTensor[] = [];
    embedTokens(b, w.x, w.ids, ids, m.embedParts, m.positions ? { table: m.positions, seqLen: T, start: P } : undefined, temps);
    for (let l = 0; l < m.blocks.length; l++) {
      const blk = m.blocks[l];
      this.norm(b, w.h, w.x, blk.attnNorm, T, w.stat1, w.stat2);
      this.linear(b, w, w.q, w.h, blk.q);
      this.linear(b, w, w.k, w.h, blk.k);
      this.linear(b, w, w.v, w.h, blk.v);
      if (m.invFreq) {
        ropeForward(b, w.q, m.invFreq, { batch: 1, seqLen: T, heads: c.numHeads, headDim: c.headDim, posOffset: P });
        ropeForward(b, w.k, m.invFreq, { batch: 1, seqLen: T, heads: c.numKvHeads, headDim: c.headDim, posOffset: P });
      }
      b.copyElements(w.k, 0, this.kCache[l], P * kvDim, T * kvDim);
      b.copyElements(w.v, 0, this.vCache[l], P * kvDim, T * kvDim);
      attentionForward(b, w.att, w.lse, w.q, this.kCache[l], this.vCache[l], {
        batch: 1,
        seqLen: T,
        heads: c.numHeads,
        kvHeads: c.numKvHeads,
        headDim: c.headDim,
        past: P,
        kvLen: this.capacity,
      });
      this.linear(b, w, w.o, w.att, blk.o);
      residualAccumulate(b, w.x, w.o);
      this.norm(b, w.h, w.x, blk.mlpNorm, T, w.stat1, w.stat2);
      if (blk.gate) {
        this.linear(b, w, w.g, w.h, blk.gate);
        this.linear(b, w, w.u, w.h, blk.up);
        swigluForward(b, w.a, w.g, w.u);
      } else {
        this.linear(b, w, w.u, w.h, blk.up);
        geluForward(b, w.a, w.u);
      }
      this.linear(b, w, w.o, w.a, blk.down);
      residualAccumulate(b, w.x, w.o);
    }
    b.copyElements(w.x, (T - 1) * C, this.last, 0, C);
    this.norm(b, this.lastNormed, this.last, m.finalNorm, 1, this.lastStat1, this.lastStat2);
    projectVocab(b, this.logits, this.lastNormed, m.headParts, 1, temps);
    try {
      await this.ctx.submit(b);
    } finally {
      for (const t of temps) this.ctx.release(t);
    }
    const logits = await this.ctx.readF32(this.logits);
    this.past += T;
    return logits;
  }

  /** Forget the cached tokens (the buffers stay allocated). */
  reset(): void {
    this.past = 0;
  }

  release(): void {
    for (const t of [...this.kCache, ...this.vCache, this.last, this.lastNormed, this.lastStat1, this.lastStat2, this.logits]) {
      this.ctx.release(t);
    }
    for (const w of this.workspaces.values()) this.releaseWorkspace(w);
    this.workspaces.clear();
  }
}
