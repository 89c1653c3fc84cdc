// The training engine: one micro-batch forward (saving what backward needs) and backward on the WGSL
// kernels, gradients accumulated into per-parameter buffers, then the optimizer step.
//   B batch, T sequence, N = B·T tokens, C hidden, V vocab, L layers, NH/NKV heads, D head dim,
//   I MLP size, r LoRA rank.
// What each method trains comes from its MethodPlan; this file never branches on method names.
import type { CommandBatch, GpuContext, GpuTensor } from '../gpu';
import { adamwUpdate } from '../kernels/adamw';
import { attentionBackward, attentionForward } from '../kernels/attention';
import { crossEntropyBackward, crossEntropyForward } from '../kernels/cross_entropy';
import { dropoutBackward, dropoutForward } from '../kernels/dropout';
import { buildEmbeddingIndex, embeddingBackward, embeddingPositionsBackward, uploadEmbeddingIndex } from '../kernels/embedding';
import { geluBackward, geluForward } from '../kernels/gelu';
import { gradNorm, gradNormPartialsLength } from '../kernels/grad_norm';
import { layernormBackward, layernormForward } from '../kernels/layernorm';
import { loraBackwardDa, loraBackwardDb, loraBackwardDu, loraBackwardDx, loraForwardDown, loraForwardUp } from '../kernels/lora';
import { matmul } from '../kernels/matmul';
import { residualAccumulate, residualForward } from '../kernels/residual';
import { rmsnormBackward, rmsnormForward } from '../kernels/rmsnorm';
import { ropeBackward, ropeForward } from '../kernels/rope';
import { swigluBackward, swigluForward } from '../kernels/swiglu';
import type { GpuLinear, GpuModel, GpuNorm } from '../model/gpu-model';
import { linearBackwardInput, linearBackwardParams, linearForward } from '../model/linear';
import { embedTokens, projectVocab, projectVocabBackwardInput } from '../model/vocab';
import type { LoraGroup, MethodPlan } from './methods';

/** One micro-batch: ids and already-shifted targets (target[t] = label[t+1], −100 = not counted). */
export interface MicroBatch {
  B: number;
  T: number;
  ids: Uint32Array;
  targets: Int32Array;
}

export interface OptimizerSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 0 or Infinity: no clipping (the norm is still measured and logged). */
  maxGradNorm: number;
}

export interface StepScalars {
  /** Mean loss over the step's counted targets. */
  loss: number;
  /** Counted targets in the step. */
  count: number;
  gradNorm: number;
}

/** HF causal-LM targets: target[b, t] = labels[b, t+1]; the last position of each row is −100. */
export function shiftTargets(labels: Int32Array, B: number, T: number): Int32Array {
  const out = new Int32Array(B * T).fill(-100);
  for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) out[b * T + t] = labels[b * T + t + 1];
  return out;
}

interface LayerSaved {
  x: GpuTensor; // (N, C) block input
  h1: GpuTensor; // (N, C)
  s1a: GpuTensor; // (N) rstd or mean
  s1b: GpuTensor; // (N) rstd (LayerNorm)
  q: GpuTensor; // (N, NH·D) after RoPE
  k: GpuTensor; // (N, NKV·D) after RoPE
  v: GpuTensor; // (N, NKV·D)
  att: GpuTensor; // (N, NH·D)
  lse: GpuTensor; // (N, NH)
  xmid: GpuTensor; // (N, C) after attention residual
  h2: GpuTensor; // (N, C)
  s2a: GpuTensor;
  s2b: GpuTensor;
  g: GpuTensor | null; // (N, I) gate (SwiGLU)
  u: GpuTensor; // (N, I) up / c_fc output
  a: GpuTensor; // (N, I) activation
}

interface Workspace {
  B: number;
  T: number;
  N: number;
  /** One ids/targets pair per micro-batch slot: uploads happen before the submission runs. */
  ids: GpuTensor[];
  targets: GpuTensor[];
  layers: LayerSaved[];
  xf: GpuTensor; // (N, C) final residual
  hf: GpuTensor;
  sfa: GpuTensor;
  sfb: GpuTensor;
  logits: GpuTensor; // (N, V)
  dlogits: GpuTensor; // (N, V)
  ceLse: GpuTensor; // (N)
  ceLosses: GpuTensor; // (N)
  ceStats: GpuTensor; // (3)
  o: GpuTensor; // (N, C) scratch for projections
  dx: GpuTensor; // (N, C)
  dh: GpuTensor; // (N, C)
  dtmp: GpuTensor; // (N, C)
  dq: GpuTensor;
  dk: GpuTensor;
  dv: GpuTensor;
  datt: GpuTensor;
  delta: GpuTensor; // (N, NH)
  dg: GpuTensor | null;
  du: GpuTensor;
  da: GpuTensor;
  /** LoRA: per group, the (dropped-out) input and u = x_d·Aᵀ. */
  lora: Map<LoraGroup, { xd: GpuTensor | null; u: GpuTensor; du: GpuTensor; dxd: GpuTensor | null; dxs: GpuTensor | null }>;
  all: GpuTensor[];
}

export class TrainingEngine {
  readonly grads = new Map<GpuTensor, GpuTensor>();
  private readonly moments = new Map<GpuTensor, { m: GpuTensor; v: GpuTensor }>();
  private readonly normScratch: { w: GpuTensor; b: GpuTensor };
  private readonly partials: GpuTensor;
  private readonly totalNorm: GpuTensor;
  private readonly clipCoef: GpuTensor;
  /** Per-micro-batch [mean, sum, count] copied out of the CE stats, 3 per micro-batch. */
  private stepStats: GpuTensor;
  /** Activation workspaces by (B, T); several may be live within one submission. */
  private readonly workspaces = new Map<string, Workspace>();
  /** Workspaces recorded into the batch being built (never released before it is submitted). */
  private readonly inUse = new Set<string>();
  /** AdamW step count t (1-based after the first update). */
  step = 0;
  /** Position in the dropout random stream (part of the resumable state). */
  dropoutOffset = 0;
  /** Earliest block whose backward is needed (nothing trainable before it). */
  private readonly firstNeededBlock: number;
  private readonly embedTrainable: boolean;

  constructor(
    readonly ctx: GpuContext,
    readonly model: GpuModel,
    readonly plan: MethodPlan,
    readonly seed: number,
  ) {
    for (const t of plan.trainables) {
      this.grads.set(t.param, ctx.tensor(t.param.shape, { role: 'gradients', label: `grad ${t.name}` }));
      this.moments.set(t.param, {
        m: ctx.tensor(t.param.shape, { role: 'optimizer', label: `adam.m ${t.name}` }),
        v: ctx.tensor(t.param.shape, { role: 'optimizer', label: `adam.v ${t.name}` }),
      });
    }
    const C = model.config.hiddenSize;
    this.normScratch = {
      w: ctx.tensor([C], { role: 'scratch', label: 'frozen norm dw' }),
      b: ctx.tensor([C], { role: 'scratch', label: 'frozen norm db' }),
    };
    const sizes = plan.trainables.map((t) => t.param.shape.reduce((a, b) => a * b, 1));
    this.partials = ctx.tensor([gradNormPartialsLength(sizes)], { role: 'scratch', label: 'grad norm partials' });
    this.totalNorm = ctx.tensor([1], { role: 'scratch', label: 'grad norm' });
    this.clipCoef = ctx.tensor([1], { role: 'scratch', label: 'clip coef' });
    this.stepStats = ctx.tensor([3], { role: 'scratch', label: 'step stats' });
    this.embedTrainable = plan.baseTrainable.has(model.embed) || (model.positions !== null && plan.baseTrainable.has(model.positions));
    let first = model.blocks.length;
    const blockHasTrainable = (i: number): boolean => {
      const b = model.blocks[i];
      const ts = [b.attnNorm.weight, b.attnNorm.bias, b.mlpNorm.weight, b.mlpNorm.bias];
      for (const l of [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) if (l) ts.push(l.weight, l.bias);
      return ts.some((t) => t && plan.baseTrainable.has(t)) || plan.loraGroups.some((g) => g.block === i);
    };
    for (let i = 0; i < model.blocks.length; i++) if (blockHasTrainable(i)) { first = i; break; }
    this.firstNeededBlock = this.embedTrainable ? 0 : first;
  }

  gradOf(t: GpuTensor | null): GpuTensor | null {
    return t ? (this.grads.get(t) ?? null) : null;
  }

  momentsOf(t: GpuTensor): { m: GpuTensor; v: GpuTensor } {
    const mv = this.moments.get(t);
    if (!mv) throw new Error(`no optimizer state for ${t.label}`);
    return mv;
  }

  private ensureWorkspace(B: number, T: number): Workspace {
    const key = `${B}x${T}`;
    this.inUse.add(key);
    const hit = this.workspaces.get(key);
    if (hit) {
      // Most recently used last.
      this.workspaces.delete(key);
      this.workspaces.set(key, hit);
      return hit;
    }
    const c = this.model.config;
    const N = B * T;
    const C = c.hiddenSize;
    const qd = c.numHeads * c.headDim;
    const kvd = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    const all: GpuTensor[] = [];
    const t = (shape: number[], label: string, dtype: 'f32' | 'u32' | 'i32' = 'f32'): GpuTensor => {
      const x = this.ctx.tensor(shape, { role: 'activations', label, dtype });
      all.push(x);
      return x;
    };
    const swiglu = c.activation === 'silu';
    const layers: LayerSaved[] = this.model.blocks.map((_, l) => ({
      x: t([N, C], `L${l}.x`),
      h1: t([N, C], `L${l}.h1`),
      s1a: t([N], `L${l}.s1a`),
      s1b: t([N], `L${l}.s1b`),
      q: t([N, qd], `L${l}.q`),
      k: t([N, kvd], `L${l}.k`),
      v: t([N, kvd], `L${l}.v`),
      att: t([N, qd], `L${l}.att`),
      lse: t([N, c.numHeads], `L${l}.lse`),
      xmid: t([N, C], `L${l}.xmid`),
      h2: t([N, C], `L${l}.h2`),
      s2a: t([N], `L${l}.s2a`),
      s2b: t([N], `L${l}.s2b`),
      g: swiglu ? t([N, I], `L${l}.g`) : null,
      u: t([N, I], `L${l}.u`),
      a: t([N, I], `L${l}.a`),
    }));
    const lora = new Map<LoraGroup, { xd: GpuTensor | null; u: GpuTensor; du: GpuTensor; dxd: GpuTensor | null; dxs: GpuTensor | null }>();
    for (const g of this.plan.loraGroups) {
      const drop = g.dropout > 0;
      lora.set(g, {
        xd: drop ? t([N, g.inFeatures], `${g.module}.x_d`) : null,
        u: t([N, g.r], `${g.module}.u`),
        du: t([N, g.r], `${g.module}.du`),
        dxd: drop ? t([N, g.inFeatures], `${g.module}.dx_d`) : null,
        dxs: drop ? t([N, g.inFeatures], `${g.module}.dx_s`) : null,
      });
    }
    const V = c.vocabSize;
    const ws: Workspace = {
      B,
      T,
      N,
      ids: [],
      targets: [],
      layers,
      xf: t([N, C], 'xf'),
      hf: t([N, C], 'hf'),
      sfa: t([N], 'sfa'),
      sfb: t([N], 'sfb'),
      logits: t([N, V], 'logits'),
      dlogits: t([N, V], 'dlogits'),
      ceLse: t([N], 'ce.lse'),
      ceLosses: t([N], 'ce.losses'),
      ceStats: t([3], 'ce.stats'),
      o: t([N, C], 'o'),
      dx: t([N, C], 'dx'),
      dh: t([N, C], 'dh'),
      dtmp: t([N, C], 'dtmp'),
      dq: t([N, qd], 'dq'),
      dk: t([N, kvd], 'dk'),
      dv: t([N, kvd], 'dv'),
      datt: t([N, qd], 'datt'),
      delta: t([N, c.numHeads], 'delta'),
      dg: swiglu ? t([N, I], 'dg') : null,
      du: t([N, I], 'du'),
      da: t([N, I], 'da'),
      lora,
      all,
    };
    this.workspaces.set(key, ws);
    return ws;
  }

  /** After a submission: keep at most a few workspaces (least recently used go first). */
  private pruneWorkspaces(keep = 3): void {
    this.inUse.clear();
    while (this.workspaces.size > keep) {
      const [oldest, w] = this.workspaces.entries().next().value as [string, Workspace];
      for (const t of w.all) this.ctx.release(t);
      this.workspaces.delete(oldest);
    }
  }

  private releaseWorkspace(): void {
    for (const w of this.workspaces.values()) for (const t of w.all) this.ctx.release(t);
    this.workspaces.clear();
  }

  // ------------------------------------------------------------------ forward pieces

  private normForward(b: CommandBatch, out: GpuTensor, sa: GpuTensor, sb: GpuTensor, x: GpuTensor, n: GpuNorm, N: number): void {
    const c = this.model.config;
    if (c.norm === 'rmsnorm') rmsnormForward(b, out, sa, x, n.weight, N, c.hiddenSize, c.normEps);
    else layernormForward(b, out, sa, sb, x, n.weight, n.bias!, N, c.hiddenSize, c.normEps);
  }

  /** dxOut (=) ← norm backward; parameter grads accumulate (into scratch when frozen). */
  private normBackward(b: CommandBatch, dxOut: GpuTensor, dy: GpuTensor, x: GpuTensor, n: GpuNorm, sa: GpuTensor, sb: GpuTensor, N: number): void {
    const c = this.model.config;
    const dw = this.gradOf(n.weight) ?? this.normScratch.w;
    if (c.norm === 'rmsnorm') rmsnormBackward(b, dxOut, dw, dy, x, n.weight, sa, N, c.hiddenSize);
    else layernormBackward(b, dxOut, dw, this.gradOf(n.bias) ?? this.normScratch.b, dy, x, n.weight, sa, sb, N, c.hiddenSize);
  }

  /** y = x·W(+b) plus the LoRA branch when the linear is adapted. */
  private linear(b: CommandBatch, w: Workspace, y: GpuTensor, x: GpuTensor, l: GpuLinear): void {
    linearForward(b, y, x, l, w.N);
    const hit = this.plan.loraByLinear.get(l);
    if (!hit) return;
    const { group: g, part } = hit;
    const ws = w.lora.get(g)!;
    const dims = (out: number) => ({ n: w.N, inFeatures: g.inFeatures, outFeatures: out, rank: g.r });
    if (part === 0) {
      let xd = x;
      if (ws.xd && this.training) {
        dropoutForward(b, ws.xd, x, { p: g.dropout, seed: this.seed, offset: this.dropoutOffsetOf(g, w) });
        xd = ws.xd;
      }
      loraForwardDown(b, ws.u, xd, g.A, dims(g.parts[0].outFeatures));
    }
    const p = g.parts[part];
    loraForwardUp(b, y, ws.u, p.B, dims(p.outFeatures), g.scale);
  }

  private dropoutBase = 0;
  /** Dropout is active only in training micro-batches (eval mode is deterministic). */
  private training = true;
  private dropoutOffsetOf(g: LoraGroup, w: Workspace): number {
    // Each group draws N·in stream positions per micro-batch, after the groups before it.
    let off = this.dropoutBase;
    for (const h of this.plan.loraGroups) {
      if (h === g) break;
      if (h.dropout > 0) off += w.N * h.inFeatures;
    }
    return off;
  }

  /** dx (= or +=) ← input gradient of a linear; parameter (and LoRA) gradients accumulate. */
  private linearBackward(b: CommandBatch, w: Workspace, dx: GpuTensor, dy: GpuTensor, x: GpuTensor, l: GpuLinear, accumulate: boolean): void {
    linearBackwardInput(b, dx, dy, l, w.N, accumulate);
    const dW = this.gradOf(l.weight);
    const dB = this.gradOf(l.bias);
    if (dW || dB) linearBackwardParams(b, dW, dB, dy, x, l, w.N);
    const hit = this.plan.loraByLinear.get(l);
    if (!hit) return;
    const { group: g, part } = hit;
    const ws = w.lora.get(g)!;
    const p = g.parts[part];
    const d = { n: w.N, inFeatures: g.inFeatures, outFeatures: p.outFeatures, rank: g.r };
    const xd = ws.xd ?? x;
    loraBackwardDb(b, this.gradOf(p.B)!, dy, ws.u, d, g.scale);
    loraBackwardDu(b, ws.du, dy, p.B, d, g.scale);
    loraBackwardDa(b, this.gradOf(g.A)!, ws.du, xd, d);
    if (!ws.dxd) {
      loraBackwardDx(b, dx, ws.du, g.A, d);
    } else {
      // ∂L/∂x_d = du·A, then through the dropout mask (regenerated from the same stream position).
      b.clear(ws.dxd);
      loraBackwardDx(b, ws.dxd, ws.du, g.A, d);
      dropoutBackward(b, ws.dxs!, ws.dxd, { p: g.dropout, seed: this.seed, offset: this.dropoutOffsetOf(g, w) });
      residualAccumulate(b, dx, ws.dxs!);
    }
  }

  // ------------------------------------------------------------------ one micro-batch

  /**
   * Record forward + backward of one micro-batch into `b`. Gradients accumulate; `scale` is
   * 1 / (counted targets of the whole optimizer step), so accumulated micro-batches give the mean.
   * The micro-batch's [mean, sum, count] land in slot `slot` of the step statistics.
   */
  recordMicroBatch(b: CommandBatch, mb: MicroBatch, scale: number, slot: number, withBackward = true): void {
    const m = this.model;
    const c = m.config;
    const w = this.ensureWorkspace(mb.B, mb.T);
    const N = w.N;
    const C = c.hiddenSize;
    while (w.ids.length <= slot) {
      const i = w.ids.length;
      const ids = this.ctx.tensor([N], { role: 'activations', label: `ids[${i}]`, dtype: 'u32' });
      const tg = this.ctx.tensor([N], { role: 'activations', label: `targets[${i}]`, dtype: 'i32' });
      w.ids.push(ids);
      w.targets.push(tg);
      w.all.push(ids, tg);
    }
    const ids = w.ids[slot];
    const targets = w.targets[slot];
    this.ctx.write(ids, mb.ids);
    this.ctx.write(targets, mb.targets);
    this.training = withBackward;
    const rope = (x: GpuTensor, heads: number, back: boolean): void => {
      if (!m.invFreq) return;
      const s = { batch: mb.B, seqLen: mb.T, heads, headDim: c.headDim };
      if (back) ropeBackward(b, x, m.invFreq, s);
      else ropeForward(b, x, m.invFreq, s);
    };
    const attnSizes = { batch: mb.B, seqLen: mb.T, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim };
    // ---- forward
    embedTokens(b, w.layers[0].x, ids, mb.ids, m.embedParts, m.positions ? { table: m.positions, seqLen: mb.T, start: 0 } : undefined, this.pendingRelease);
    for (let l = 0; l < m.blocks.length; l++) {
      const blk = m.blocks[l];
      const s = w.layers[l];
      this.normForward(b, s.h1, s.s1a, s.s1b, s.x, blk.attnNorm, N);
      this.linear(b, w, s.q, s.h1, blk.q);
      this.linear(b, w, s.k, s.h1, blk.k);
      this.linear(b, w, s.v, s.h1, blk.v);
      rope(s.q, c.numHeads, false);
      rope(s.k, c.numKvHeads, false);
      attentionForward(b, s.att, s.lse, s.q, s.k, s.v, attnSizes);
      this.linear(b, w, w.o, s.att, blk.o);
      residualForward(b, s.xmid, s.x, w.o);
      this.normForward(b, s.h2, s.s2a, s.s2b, s.xmid, blk.mlpNorm, N);
      if (blk.gate) {
        this.linear(b, w, s.g!, s.h2, blk.gate);
        this.linear(b, w, s.u, s.h2, blk.up);
        swigluForward(b, s.a, s.g!, s.u);
      } else {
        this.linear(b, w, s.u, s.h2, blk.up);
        geluForward(b, s.a, s.u);
      }
      this.linear(b, w, w.o, s.a, blk.down);
      residualForward(b, l + 1 < m.blocks.length ? w.layers[l + 1].x : w.xf, s.xmid, w.o);
    }
    this.normForward(b, w.hf, w.sfa, w.sfb, w.xf, m.finalNorm, N);
    projectVocab(b, w.logits, w.hf, m.headParts, N, this.pendingRelease);
    crossEntropyForward(b, w.ceLosses, w.ceLse, w.ceStats, w.logits, targets, { hostTargets: mb.targets });
    b.copyElements(w.ceStats, 0, this.stepStats, slot * 3, 3);
    if (!withBackward) return;
    // ---- backward
    crossEntropyBackward(b, w.dlogits, w.logits, w.ceLse, targets, scale);
    const V = c.vocabSize;
    projectVocabBackwardInput(b, w.dh, w.dlogits, m.headParts, N, this.pendingRelease); // dhf = dlogits · E
    const dHead = this.gradOf(m.lmHead);
    if (dHead) matmul(b, dHead, w.dlogits, w.hf, { m: V, n: C, k: N, transA: true, beta: 1 });
    this.normBackward(b, w.dx, w.dh, w.xf, m.finalNorm, w.sfa, w.sfb, N);
    for (let l = m.blocks.length - 1; l >= this.firstNeededBlock; l--) {
      const blk = m.blocks[l];
      const s = w.layers[l];
      // MLP: dx holds ∂L/∂(block output) = ∂L/∂(down output).
      this.linearBackward(b, w, w.da, w.dx, s.a, blk.down, false);
      if (blk.gate) {
        swigluBackward(b, w.dg!, w.du, w.da, s.g!, s.u);
        this.linearBackward(b, w, w.dh, w.dg!, s.h2, blk.gate, false);
        this.linearBackward(b, w, w.dh, w.du, s.h2, blk.up, true);
      } else {
        geluBackward(b, w.du, w.da, s.u);
        this.linearBackward(b, w, w.dh, w.du, s.h2, blk.up, false);
      }
      this.normBackward(b, w.dtmp, w.dh, s.xmid, blk.mlpNorm, s.s2a, s.s2b, N);
      residualAccumulate(b, w.dx, w.dtmp); // ∂L/∂xmid
      // Attention.
      this.linearBackward(b, w, w.datt, w.dx, s.att, blk.o, false);
      attentionBackward(b, { dq: w.dq, dk: w.dk, dv: w.dv, delta: w.delta }, { q: s.q, k: s.k, v: s.v, out: s.att, lse: s.lse }, w.datt, attnSizes);
      rope(w.dq, c.numHeads, true);
      rope(w.dk, c.numKvHeads, true);
      this.linearBackward(b, w, w.dh, w.dq, s.h1, blk.q, false);
      this.linearBackward(b, w, w.dh, w.dk, s.h1, blk.k, true);
      this.linearBackward(b, w, w.dh, w.dv, s.h1, blk.v, true);
      this.normBackward(b, w.dtmp, w.dh, s.x, blk.attnNorm, s.s1a, s.s1b, N);
      residualAccumulate(b, w.dx, w.dtmp); // ∂L/∂x (block input)
    }
    if (this.embedTrainable) {
      const dE = this.gradOf(m.embed);
      if (dE) {
        const index = uploadEmbeddingIndex(this.ctx, buildEmbeddingIndex(mb.ids, c.vocabSize));
        embeddingBackward(b, dE, w.dx, index);
        this.pendingRelease.push(index.rows, index.offsets, index.order);
      }
      const dP = this.gradOf(m.positions);
      if (dP) embeddingPositionsBackward(b, dP, w.dx, { seqLen: mb.T });
    }
    // Advance the dropout stream past this micro-batch's draws.
    for (const g of this.plan.loraGroups) if (g.dropout > 0) this.dropoutBase += N * g.inFeatures;
    this.dropoutOffset = this.dropoutBase;
  }

  private pendingRelease: GpuTensor[] = [];

  /** Room for the [mean, sum, count] of `n` micro-batches. */
  private ensureStats(n: number): void {
    if (numelOf(this.stepStats) >= 3 * n) return;
    this.ctx.release(this.stepStats);
    this.stepStats = this.ctx.tensor([3 * n], { role: 'scratch', label: 'step stats' });
  }

  /**
   * One optimizer step over micro-batches (gradient accumulation): forward/backward of each, the
   * global gradient norm; then (if the loss and norm are finite) clipping + AdamW, and zeroed
   * gradients. Returns the logged scalars; a non-finite step is skipped and reported, not applied.
   */
  async trainStep(micro: MicroBatch[], opt: OptimizerSettings, lr: number): Promise<StepScalars & { skipped: boolean }> {
    let total = 0;
    for (const mb of micro) for (const t of mb.targets) if (t !== -100) total++;
    if (total === 0) throw new Error('this step has no counted targets (every label is -100): nothing to train on');
    this.ensureStats(micro.length);
    this.dropoutBase = this.dropoutOffset;
    const b = this.ctx.batch();
    micro.forEach((mb, i) => this.recordMicroBatch(b, mb, 1 / total, i));
    const grads = this.plan.trainables.map((t) => this.grads.get(t.param)!);
    const maxNorm = opt.maxGradNorm > 0 ? opt.maxGradNorm : Infinity;
    gradNorm(b, { totalNorm: this.totalNorm, clipCoef: this.clipCoef }, this.partials, grads, maxNorm);
    try {
      await this.ctx.submit(b);
    } catch (e) {
      this.inUse.clear();
      throw e;
    }
    const stats = await this.ctx.readF32(this.stepStats);
    const norm = (await this.ctx.readF32(this.totalNorm))[0];
    for (const t of this.pendingRelease.splice(0)) this.ctx.release(t);
    const { sum, count } = sumStats(stats, micro.length);
    const loss = sum / count;
    const skipped = !Number.isFinite(loss) || !Number.isFinite(norm);
    const u = this.ctx.batch();
    if (!skipped) {
      this.step++;
      for (const t of this.plan.trainables) {
        const { m, v } = this.momentsOf(t.param);
        adamwUpdate(u, t.param, m, v, this.grads.get(t.param)!, this.clipCoef, {
          lr,
          beta1: opt.beta1,
          beta2: opt.beta2,
          eps: opt.eps,
          weightDecay: t.decay ? opt.weightDecay : 0,
          step: this.step,
        });
      }
    }
    for (const g of grads) u.clear(g);
    await this.ctx.submit(u);
    this.pruneWorkspaces();
    return { loss, count, gradNorm: norm, skipped };
  }

  /**
   * Forward + backward only: the gradients of the mean loss over `micro` are left in `grads`
   * (accumulated onto what is there). Used by gradient checks; trainStep is the training path.
   */
  async computeGradients(micro: MicroBatch[]): Promise<{ loss: number; count: number }> {
    let total = 0;
    for (const mb of micro) for (const t of mb.targets) if (t !== -100) total++;
    this.ensureStats(micro.length);
    this.dropoutBase = this.dropoutOffset;
    const b = this.ctx.batch();
    micro.forEach((mb, i) => this.recordMicroBatch(b, mb, 1 / total, i));
    await this.ctx.submit(b);
    const stats = await this.ctx.readF32(this.stepStats);
    for (const t of this.pendingRelease.splice(0)) this.ctx.release(t);
    this.pruneWorkspaces();
    const { sum, count } = sumStats(stats, micro.length);
    return { loss: sum / count, count };
  }

  /** Loss over micro-batches without updating anything (validation / reference sets). */
  async evaluate(micro: MicroBatch[]): Promise<{ loss: number; count: number }> {
    if (micro.length === 0) return { loss: NaN, count: 0 };
    this.ensureStats(micro.length);
    const b = this.ctx.batch();
    micro.forEach((mb, i) => this.recordMicroBatch(b, mb, 0, i, false));
    await this.ctx.submit(b);
    this.pruneWorkspaces();
    const stats = await this.ctx.readF32(this.stepStats);
    const { sum, count } = sumStats(stats, micro.length);
    return { loss: sum / count, count };
  }

  release(): void {
    this.releaseWorkspace();
    for (const g of this.grads.values()) this.ctx.release(g);
    for (const { m, v } of this.moments.values()) {
      this.ctx.release(m);
      this.ctx.release(v);
    }
    for (const t of [this.normScratch.w, this.normScratch.b, this.partials, this.totalNorm, this.clipCoef, this.stepStats]) this.ctx.release(t);
  }
}

/** Σ sum and Σ count over the [mean, sum, count] triples of `n` micro-batches. */
function sumStats(stats: Float32Array, n: number): { sum: number; count: number } {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    sum += stats[i * 3 + 1];
    count += stats[i * 3 + 2];
  }
  return { sum, count };
}

function numelOf(t: GpuTensor): number {
  return t.shape.reduce((a, b) => a * b, 1);
}
