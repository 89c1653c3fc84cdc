// The float64 training-step reference (src/ref/train.ts) on tiny Llama (llama3 RoPE scaling, untied
// head), Qwen2 (q/k/v biases, tied embedding) and GPT-2 (fused c_attn, Conv1D, learned positions, tied):
//  (a) its loss equals the causal-LM loss computed here from referenceLogits (an independent forward);
//  (b) its gradients equal central finite differences of that independent loss, for a sample of
//      elements of every trainable tensor: full fine-tuning, LoRA (A and B non-zero) with and without
//      dropout masks, rsLoRA, BitFit;
//  (c) targets masked with −100 do not count.
//
// Finite differences: float64, central, h = 1e-5. Truncation error ≈ h²·|f'''|/6 and rounding error
// ≈ ε·|loss|/h ≈ 1e-10 absolute, so |tape − FD| ≤ 1e-9 + 1e-6·|FD| (atol is that noise floor).
import { describe, expect, it } from 'vitest';
import { parseConfig, type ModelConfig } from '../../src/model/config';
import type { LinearDesc } from '../../src/model/layout';
import { referenceLogits } from '../../src/ref/model';
import { referenceTrainStep, type RefLora } from '../../src/ref/train';
import { compare } from '../helpers/compare';
import { normal, rng } from '../helpers/random';
import { tinyConfigJson, tinyWeights, type TinyArch } from '../helpers/tiny-models';

const B = 2;
const T = 6;
const V = 37;
const H = 1e-5;
const FD_TOL = { rtol: 1e-6, atol: 1e-9 };

function tinyConfig(arch: TinyArch): Record<string, unknown> {
  if (arch === 'gpt2') return tinyConfigJson('gpt2', { n_embd: 16, n_head: 4, n_layer: 2, n_inner: 24, n_positions: 8, vocab_size: V });
  return tinyConfigJson(arch, {
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: V,
    max_position_embeddings: 16,
    // llama3 scaling with head_dim 4: inv_freq [1, 0.01] → one interpolated, one slowed frequency.
    ...(arch === 'llama'
      ? { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 } }
      : {}),
  });
}

interface Setup {
  c: ModelConfig;
  w: Map<string, Float64Array>;
  batch: { ids: number[][]; labels: number[][] };
}

function setup(arch: TinyArch): Setup {
  const json = tinyConfig(arch);
  const c = parseConfig(json);
  const w = new Map([...tinyWeights(json, 3)].map(([n, t]) => [n, Float64Array.from(t.data)]));
  const r = rng(7);
  const ids = [0, 1].map(() => Array.from({ length: T }, () => Math.floor(r() * V)));
  // Sequence 0 has a 3-token prompt masked with −100; sequence 1 is all targets. The mean runs over
  // the 3 + 5 valid targets of the whole batch, not per sequence.
  const labels = [ids[0].map((t, i) => (i < 3 ? -100 : t)), [...ids[1]]];
  return { c, w, batch: { ids, labels } };
}

/** LoRA hook for referenceLogits: y += s·((x ⊙ mask/(1−p))·Aᵀ)·Bᵀ, written out here. */
function loraHook(lora: RefLora) {
  const s = lora.rslora ? lora.alpha / Math.sqrt(lora.r) : lora.alpha / lora.r;
  return (l: LinearDesc, x: Float64Array, y: Float64Array, N: number): void => {
    const ad = lora.adapters.get(l.module);
    if (!ad) return;
    const mask = lora.dropout?.masks.get(l.module);
    const p = lora.dropout?.p ?? 0;
    for (let n = 0; n < N; n++) {
      const u = new Float64Array(lora.r);
      for (let j = 0; j < lora.r; j++) {
        for (let i = 0; i < l.in; i++) {
          const xi = mask ? (mask[n * l.in + i] ? x[n * l.in + i] / (1 - p) : 0) : x[n * l.in + i];
          u[j] += ad.A[j * l.in + i] * xi;
        }
      }
      for (let o = 0; o < l.out; o++) {
        let d = 0;
        for (let j = 0; j < lora.r; j++) d += ad.B[o * lora.r + j] * u[j];
        y[n * l.out + o] += s * d;
      }
    }
  };
}

/** The HF causal-LM loss from referenceLogits, computed independently of src/ref/cross_entropy. */
function independentLoss(s: Setup, lora?: RefLora): { loss: number; count: number } {
  const z = referenceLogits(s.c, s.w, s.batch.ids, lora ? loraHook(lora) : undefined);
  let sum = 0;
  let count = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const target = s.batch.labels[b][t + 1];
      if (target === -100) continue;
      const row = z.subarray((b * T + t) * V, (b * T + t + 1) * V);
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((acc, v) => acc + Math.exp(v - m), 0));
      sum += lse - row[target];
      count++;
    }
  }
  return { loss: sum / count, count };
}

function makeLora(s: Setup, targets: string[], opts: { dropout?: boolean; rslora?: boolean } = {}): RefLora {
  const r = 2;
  const N = B * T;
  const adapters = new Map<string, { A: Float64Array; B: Float64Array }>();
  const masks = new Map<string, Uint8Array>();
  const pick = rng(11);
  let seed = 100;
  for (const [name] of s.w) {
    const m = /^(.*\.(\w+))\.weight$/.exec(name);
    if (!m || !targets.includes(m[2])) continue;
    const module = m[1];
    const size = s.w.get(name)!.length;
    // in/out from the layout: nn.Linear [out, in], Conv1D [in, out]; c_attn's out is 3C.
    const C = s.c.hiddenSize;
    const inF = s.c.architecture === 'gpt2' ? (module.endsWith('mlp.c_proj') ? s.c.intermediateSize : C) : C;
    const outF = size / inF;
    adapters.set(module, { A: normal(r * inF, seed++, 0.3), B: normal(outF * r, seed++, 0.3) });
    if (opts.dropout) masks.set(module, Uint8Array.from({ length: N * inF }, () => (pick() < 0.25 ? 0 : 1)));
  }
  return {
    r,
    alpha: 3,
    rslora: opts.rslora,
    adapters,
    dropout: opts.dropout ? { p: 0.25, masks } : undefined,
  };
}

/** Element indices to check: the largest |gradient|, two non-zero ones and two anywhere. */
function sample(grad: Float64Array, seed: number): number[] {
  const r = rng(seed);
  let best = 0;
  for (let i = 1; i < grad.length; i++) if (Math.abs(grad[i]) > Math.abs(grad[best])) best = i;
  const nonzero = [...grad.keys()].filter((i) => grad[i] !== 0);
  const out = new Set([best]);
  for (let k = 0; k < 2 && nonzero.length; k++) out.add(nonzero[Math.floor(r() * nonzero.length)]);
  for (let k = 0; k < 2; k++) out.add(Math.floor(r() * grad.length));
  return [...out];
}

/** FD of the independent loss w.r.t. each sampled element of every returned gradient. */
function checkGrads(s: Setup, grads: Map<string, Float64Array>, lora?: RefLora): void {
  let seed = 1;
  for (const [name, grad] of grads) {
    const lm = /^(.*)\.lora_([AB])\.weight$/.exec(name);
    const ad = lm ? lora!.adapters.get(lm[1])! : null;
    const x = ad ? (lm![2] === 'A' ? ad.A : ad.B) : s.w.get(name)!;
    expect(grad.length, name).toBe(x.length);
    const idx = sample(grad, seed++);
    const fd = idx.map((j) => {
      const keep = x[j];
      x[j] = keep + H;
      const lp = independentLoss(s, lora).loss;
      x[j] = keep - H;
      const lmv = independentLoss(s, lora).loss;
      x[j] = keep;
      return (lp - lmv) / (2 * H);
    });
    const got = idx.map((j) => grad[j]);
    const res = compare(got, fd, FD_TOL);
    if (!res.ok) throw new Error(`${name} at ${idx.join(',')}: ${res.report}`);
  }
}

const LORA_TARGETS: Record<TinyArch, string[]> = { llama: ['q_proj', 'v_proj'], qwen2: ['q_proj', 'v_proj'], gpt2: ['c_attn', 'c_proj'] };

describe.each(['llama', 'qwen2', 'gpt2'] as TinyArch[])('referenceTrainStep, tiny %s', (arch) => {
  const s = setup(arch);

  it('(a) loss equals the causal-LM loss from referenceLogits', () => {
    const want = independentLoss(s);
    const got = referenceTrainStep(s.c, s.w, s.batch, { trainable: () => false });
    expect(got.count).toBe(8);
    expect(want.count).toBe(8);
    expect(Math.abs(got.loss - want.loss)).toBeLessThan(1e-12 * want.loss);
    expect(got.grads.size).toBe(0);
    const lora = makeLora(s, LORA_TARGETS[arch], { dropout: true });
    const withLora = referenceTrainStep(s.c, s.w, s.batch, { lora, trainable: () => false });
    const wantLora = independentLoss(s, lora).loss;
    expect(Math.abs(withLora.loss - wantLora)).toBeLessThan(1e-12 * wantLora);
    expect(Math.abs(withLora.loss - want.loss)).toBeGreaterThan(1e-3); // the adapters do act
  });

  it('(b) full fine-tuning: gradients of every tensor match finite differences', () => {
    const { grads } = referenceTrainStep(s.c, s.w, s.batch, { trainable: () => true });
    expect([...grads.keys()].sort()).toEqual([...s.w.keys()].sort());
    if (s.c.tieWordEmbeddings) expect(grads.has('lm_head.weight')).toBe(false);
    checkGrads(s, grads);
  });

  it.each([
    ['no dropout', {}],
    ['dropout masks', { dropout: true }],
    ['rsLoRA', { rslora: true }],
  ] as const)('(b) LoRA on %s: A and B gradients match finite differences', (_, o) => {
    const lora = makeLora(s, LORA_TARGETS[arch], o);
    expect(lora.adapters.size).toBe(arch === 'gpt2' ? 6 : 4);
    const { grads } = referenceTrainStep(s.c, s.w, s.batch, { lora, trainable: () => false });
    const names = [...lora.adapters.keys()].flatMap((m) => [`${m}.lora_A.weight`, `${m}.lora_B.weight`]);
    expect([...grads.keys()].sort()).toEqual(names.sort());
    checkGrads(s, grads, lora);
  });

  if (arch !== 'llama') {
    it('(b) BitFit: bias gradients match finite differences', () => {
      const { grads } = referenceTrainStep(s.c, s.w, s.batch, { trainable: (n) => n.endsWith('.bias') });
      const biases = [...s.w.keys()].filter((n) => n.endsWith('.bias'));
      expect(biases.length).toBeGreaterThan(0);
      expect([...grads.keys()].sort()).toEqual(biases.sort());
      checkGrads(s, grads);
    });
  }

  it('(c) ignored targets do not count', () => {
    const base = referenceTrainStep(s.c, s.w, s.batch, { trainable: () => true });
    // labels[·][0] is never a target (the shift drops it); the last token's logits predict nothing.
    const labels = s.batch.labels.map((row) => [V - 1 - (row[0] === -100 ? 0 : row[0]), ...row.slice(1)]);
    const ids = s.batch.ids.map((row) => [...row.slice(0, T - 1), (row[T - 1] + 5) % V]);
    const same = referenceTrainStep(s.c, s.w, { ids, labels }, { trainable: () => true });
    expect(same.loss).toBe(base.loss);
    expect(same.count).toBe(base.count);
    // The masked prompt targets (positions 0, 1 of sequence 0 predict labels 1, 2) do not count; unmask one and they do.
    const unmasked = s.batch.labels.map((row, b) => (b === 0 ? [row[0], s.batch.ids[0][1], ...row.slice(2)] : row));
    const more = referenceTrainStep(s.c, s.w, { ids: s.batch.ids, labels: unmasked }, { trainable: () => false });
    expect(more.count).toBe(base.count + 1);
    expect(more.loss).not.toBe(base.loss);
    // With every target masked the loss is NaN (never train on it) and the gradients are 0.
    const none = referenceTrainStep(s.c, s.w, { ids: s.batch.ids, labels: s.batch.ids.map((r) => r.map(() => -100)) }, {
      trainable: () => true,
    });
    expect(none.count).toBe(0);
    expect(none.loss).toBeNaN();
    for (const g of none.grads.values()) expect(g.every((v) => v === 0)).toBe(true);
  });
});
