// A minimal reverse-mode autodiff tape over float64 arrays, for the float64 training reference
// (src/ref/train.ts). Every op calls the forward of its src/ref reference and, on the way back,
// that reference's backward: the tape only wires gradients between ops, it derives none of its own
// except for trivial data movement (column slices and concatenation, a fixed dropout mask).
//
// How it works: each op computes its output at once and pushes a closure onto the tape; `backward`
// seeds ∂L/∂L = 1 and runs the closures in reverse. A closure reads its output's `grad` and adds into
// its inputs' `grad` (+=), so a tensor used twice (the tied embedding as input table and as lm_head)
// sums both contributions. Gradients are only computed towards vars that can reach a leaf created
// with `requiresGrad` (`needsGrad`); frozen paths cost nothing.
//
// Letters: N rows (tokens, N = B·T), B batch, T tokens per sequence, C channels, V vocabulary,
// IN/OUT linear sizes, R LoRA rank. Activations are row-major [N, cols].
import type { LinearLayout } from '../model/layout';
import { attentionBackward, attentionForward, type AttentionShape } from './attention';
import { biasBackward, biasForward } from './bias';
import { crossEntropyBackward, crossEntropyForward, IGNORE_INDEX, shiftLabels } from './cross_entropy';
import { embeddingBackward, embeddingForward, embeddingPositionsBackward } from './embedding';
import { geluBackward, geluForward } from './gelu';
import { layernormBackward, layernormForward } from './layernorm';
import { loraBackward, loraForward, type LoraShape } from './lora';
import { matmul, matmulBackward } from './matmul';
import { residualBackward, residualForward } from './residual';
import { rmsnormBackward, rmsnormForward } from './rmsnorm';
import { ropeBackward, ropeForward, type RopeShape } from './rope';
import { swigluBackward, swigluForward } from './swiglu';

/** A value on the tape. Leaves that require grad (and every var downstream of one) accumulate `grad`. */
export class Var {
  /** Allocated (zeros) the first time a gradient reaches this var. */
  grad: Float64Array | null = null;
  constructor(
    readonly value: Float64Array,
    /** A leaf the caller wants ∂L/∂value for. */
    readonly requiresGrad: boolean,
    /** Some leaf that requires grad feeds this var, so backward must pass gradients through it. */
    readonly needsGrad: boolean,
  ) {}

  get length(): number {
    return this.value.length;
  }
}

/** Sizes of a linear layer y (N, OUT) = x (N, IN) · Wᵀ + b; W [OUT, IN] ('out_in') or [IN, OUT] ('in_out'). */
export interface LinearShape {
  rows: number;
  in: number;
  out: number;
  layout: LinearLayout;
}

/** A fixed dropout mask on a LoRA branch input: x_d = x ⊙ mask/(1 − p); mask (N, IN) of 0/1. */
export interface FixedDropout {
  mask: Uint8Array;
  p: number;
}

/** wpe and where each sequence starts, for GPT-2's learned positions. */
export interface TapePositions {
  table: Var; // (P, C)
  nPos: number;
  seqLen: number;
  start: number;
}

function transpose(x: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c];
  return t;
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`tape: ${what}`);
}

export class Tape {
  private readonly steps: (() => void)[] = [];

  /** A leaf (a weight, or an input with no gradient). */
  leaf(value: Float64Array, requiresGrad = false): Var {
    return new Var(value, requiresGrad, requiresGrad);
  }

  /** The result of an op: it needs a gradient when any input does. */
  private node(value: Float64Array, inputs: (Var | null)[]): Var {
    return new Var(value, false, inputs.some((v) => v?.needsGrad));
  }

  /** Records a backward closure, run only when a gradient reached `out`. */
  private record(out: Var, back: (dOut: Float64Array) => void): void {
    if (!out.needsGrad) return;
    this.steps.push(() => {
      if (out.grad) back(out.grad);
    });
  }

  /** v.grad += d (only where v takes part in the gradient). */
  private accumulate(v: Var | null, d: Float64Array): void {
    if (!v?.needsGrad) return;
    check(d.length === v.length, `gradient of length ${d.length} for a value of length ${v.length}`);
    if (!v.grad) v.grad = new Float64Array(v.length);
    for (let i = 0; i < d.length; i++) v.grad[i] += d[i];
  }

  /** Reverse pass from a scalar (or with an explicit upstream gradient `seed`). */
  backward(out: Var, seed?: Float64Array): void {
    check(seed !== undefined || out.length === 1, 'backward from a non-scalar needs a seed gradient');
    this.accumulate(out, seed ?? new Float64Array([1]));
    for (let i = this.steps.length - 1; i >= 0; i--) this.steps[i]();
    this.steps.length = 0;
  }

  /** y (N, OUT) = x (N, IN) · Wᵀ + b (matmul, bias references). */
  linear(x: Var, w: Var, b: Var | null, s: LinearShape): Var {
    const { rows: N, in: IN, out: OUT } = s;
    check(x.length === N * IN && w.length === IN * OUT && (!b || b.length === OUT), 'linear: shape mismatch');
    const outIn = s.layout === 'out_in';
    let y = matmul(x.value, w.value, { m: N, n: OUT, k: IN, transB: outIn });
    if (b) y = biasForward(y, b.value, N, OUT);
    const out = this.node(y, [x, w, b]);
    this.record(out, (dy) => {
      // matmulBackward takes the plain product A (N, IN) · B (IN, OUT); nn.Linear's W is Bᵀ.
      const wInOut = outIn ? transpose(w.value, OUT, IN) : w.value;
      const { dA, dB } = matmulBackward(x.value, wInOut, dy, N, OUT, IN);
      this.accumulate(x, dA);
      if (w.needsGrad) this.accumulate(w, outIn ? transpose(dB, IN, OUT) : dB);
      if (b) this.accumulate(b, biasBackward(dy, N, OUT).db);
    });
    return out;
  }

  /** y = a + b (residual reference). */
  add(a: Var, b: Var): Var {
    check(a.length === b.length, 'add: length mismatch');
    const out = this.node(residualForward(a.value, b.value), [a, b]);
    this.record(out, (dy) => {
      const { da, db } = residualBackward(dy);
      this.accumulate(a, da);
      this.accumulate(b, db);
    });
    return out;
  }

  rmsnorm(x: Var, w: Var, N: number, C: number, eps: number): Var {
    const out = this.node(rmsnormForward(x.value, w.value, N, C, eps).out, [x, w]);
    this.record(out, (dy) => {
      const { dx, dw } = rmsnormBackward(dy, x.value, w.value, N, C, eps);
      this.accumulate(x, dx);
      this.accumulate(w, dw);
    });
    return out;
  }

  layernorm(x: Var, w: Var, b: Var, N: number, C: number, eps: number): Var {
    const out = this.node(layernormForward(x.value, w.value, b.value, N, C, eps).out, [x, w, b]);
    this.record(out, (dy) => {
      const { dx, dw, db } = layernormBackward(dy, x.value, w.value, N, C, eps);
      this.accumulate(x, dx);
      this.accumulate(w, dw);
      this.accumulate(b, db);
    });
    return out;
  }

  /** x (B, T, heads, D) rotated by position; invFreq is a constant table. */
  rope(x: Var, invFreq: ArrayLike<number>, shape: RopeShape): Var {
    const out = this.node(ropeForward(x.value, invFreq, shape), [x]);
    this.record(out, (dy) => this.accumulate(x, ropeBackward(dy, invFreq, shape)));
    return out;
  }

  /** Causal GQA attention: q (B, T, NH, D), k/v (B, S, NKV, D) → (B, T, NH, D). */
  attention(q: Var, k: Var, v: Var, shape: AttentionShape): Var {
    const out = this.node(attentionForward(q.value, k.value, v.value, shape).out, [q, k, v]);
    this.record(out, (dy) => {
      const { dq, dk, dv } = attentionBackward(q.value, k.value, v.value, dy, shape);
      this.accumulate(q, dq);
      this.accumulate(k, dk);
      this.accumulate(v, dv);
    });
    return out;
  }

  /** silu(gate) ⊙ up. */
  swiglu(gate: Var, up: Var): Var {
    const out = this.node(swigluForward(gate.value, up.value), [gate, up]);
    this.record(out, (dy) => {
      const { dGate, dUp } = swigluBackward(dy, gate.value, up.value);
      this.accumulate(gate, dGate);
      this.accumulate(up, dUp);
    });
    return out;
  }

  /** gelu_new (tanh approximation). */
  gelu(x: Var): Var {
    const out = this.node(geluForward(x.value), [x]);
    this.record(out, (dy) => this.accumulate(x, geluBackward(dy, x.value)));
    return out;
  }

  /** (N, C) = wte[ids] (+ wpe[start + n mod T]). */
  embedding(ids: ArrayLike<number>, wte: Var, V: number, C: number, positions?: TapePositions): Var {
    const pos = positions
      ? { table: positions.table.value, nPos: positions.nPos, seqLen: positions.seqLen, start: positions.start }
      : undefined;
    const out = this.node(embeddingForward(ids, wte.value, V, C, pos), [wte, positions?.table ?? null]);
    this.record(out, (dy) => {
      if (wte.needsGrad) this.accumulate(wte, embeddingBackward(ids, dy, V, C));
      if (positions?.table.needsGrad) {
        const p = positions;
        this.accumulate(p.table, embeddingPositionsBackward(dy, ids.length, C, p.nPos, p.seqLen, p.start));
      }
    });
    return out;
  }

  /**
   * The LoRA branch alone, s · (x_d · Aᵀ) · Bᵀ (N, OUT), with x_d = x ⊙ mask/(1 − p) when a fixed
   * dropout mask is given (lora reference). The caller adds it to the base layer's output.
   */
  lora(x: Var, a: Var, b: Var, shape: LoraShape, scale: number, dropout?: FixedDropout): Var {
    const { n: N, inFeatures: IN, outFeatures: OUT, rank: R } = shape;
    check(x.length === N * IN && a.length === R * IN && b.length === OUT * R, 'lora: shape mismatch');
    check(!dropout || dropout.mask.length === N * IN, `lora: dropout mask of length ${dropout?.mask.length}, want ${N * IN}`);
    // Inverted dropout with a given mask: kept elements scaled by 1/(1 − p), dropped ones exactly 0.
    const drop = (v: Float64Array): Float64Array =>
      dropout ? v.map((e, i) => (dropout.mask[i] ? e / (1 - dropout.p) : 0)) : v;
    const xd = drop(x.value);
    const { y, u } = loraForward(xd, a.value, b.value, shape, scale);
    const out = this.node(y, [x, a, b]);
    this.record(out, (dy) => {
      const g = loraBackward(dy, xd, a.value, b.value, u, shape, scale);
      this.accumulate(a, g.dA);
      this.accumulate(b, g.dB);
      if (x.needsGrad) this.accumulate(x, drop(g.dx));
    });
    return out;
  }

  /** Columns [start, start + width) of x (rows, cols). */
  sliceCols(x: Var, rows: number, cols: number, start: number, width: number): Var {
    check(x.length === rows * cols && start >= 0 && start + width <= cols, 'sliceCols: out of range');
    const y = new Float64Array(rows * width);
    for (let r = 0; r < rows; r++) y.set(x.value.subarray(r * cols + start, r * cols + start + width), r * width);
    const out = this.node(y, [x]);
    this.record(out, (dy) => {
      const dx = new Float64Array(rows * cols);
      for (let r = 0; r < rows; r++) dx.set(dy.subarray(r * width, (r + 1) * width), r * cols + start);
      this.accumulate(x, dx);
    });
    return out;
  }

  /** [p₀ | p₁ | …] side by side: each part (rows, widthᵢ) → (rows, Σ widthᵢ). */
  concatCols(parts: Var[], rows: number): Var {
    const widths = parts.map((p) => p.length / rows);
    check(widths.every((w) => Number.isInteger(w)), 'concatCols: a part is not a whole number of rows');
    const cols = widths.reduce((s, w) => s + w, 0);
    const y = new Float64Array(rows * cols);
    let start = 0;
    parts.forEach((p, i) => {
      const w = widths[i];
      for (let r = 0; r < rows; r++) y.set(p.value.subarray(r * w, (r + 1) * w), r * cols + start);
      start += w;
    });
    const out = this.node(y, parts);
    this.record(out, (dy) => {
      let s = 0;
      parts.forEach((p, i) => {
        const w = widths[i];
        if (p.needsGrad) {
          const d = new Float64Array(rows * w);
          for (let r = 0; r < rows; r++) d.set(dy.subarray(r * cols + s, r * cols + s + w), r * w);
          this.accumulate(p, d);
        }
        s += w;
      });
    });
    return out;
  }

  /**
   * Hugging Face causal-LM loss (ForCausalLMLoss, peft-spec §8): logits (B·T, V) of position t predict
   * labels[t + 1]; the mean over targets ≠ −100 of the whole batch. `loss` is a scalar var (NaN when
   * no target is valid; its gradient is then 0); `count` is the number of valid targets.
   */
  causalLmLoss(logits: Var, labels: ArrayLike<number>, B: number, T: number, V: number): { loss: Var; count: number } {
    check(labels.length === B * T && logits.length === B * T * V, 'causalLmLoss: shape mismatch');
    const targets = shiftLabels(labels, B, T);
    const ce = crossEntropyForward(logits.value, targets, B * T, V, IGNORE_INDEX);
    const loss = this.node(new Float64Array([ce.mean]), [logits]);
    this.record(loss, (dy) => {
      if (ce.count === 0) return;
      this.accumulate(logits, crossEntropyBackward(logits.value, targets, B * T, V, dy[0] / ce.count, IGNORE_INDEX));
    });
    return { loss, count: ce.count };
  }
}
