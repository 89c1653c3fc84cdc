// float64 reference: causal scaled-dot-product attention with grouped-query heads, as HF computes it
// (repeat_kv, then per head S = scale·Q·Kᵀ + causal mask, P = softmax(S), O = P·V).
//
// Letters: B batch, T queries per sequence, NH query heads, NKV kv heads (rep = NH/NKV; kv head g
// serves query heads g·rep … (g+1)·rep − 1), D head dim, S key rows per sequence, P = past keys.
// Layouts: q, out [B, T, NH, D]; k, v [B, S, NKV, D]; lse [B, T, NH]. Query t (absolute position
// past + t) sees keys j ≤ past + t.
//
// Backward per head, with dP = dO·Vᵀ:
//   dS = P ⊙ (dP − rowsum(P ⊙ dP)),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q,  dV = Pᵀ·dO,
// and a kv head's dK, dV are the sums over the query heads it serves (the transpose of repeat_kv).

export interface AttentionShape {
  batch: number;
  seqLen: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  past?: number;
  kvLen?: number;
  scale?: number;
}

interface Dims {
  B: number;
  T: number;
  NH: number;
  NKV: number;
  D: number;
  P: number;
  S: number;
  scale: number;
  rep: number;
}

function dims(s: AttentionShape): Dims {
  const P = s.past ?? 0;
  return {
    B: s.batch,
    T: s.seqLen,
    NH: s.heads,
    NKV: s.kvHeads,
    D: s.headDim,
    P,
    S: s.kvLen ?? P + s.seqLen,
    scale: s.scale ?? 1 / Math.sqrt(s.headDim),
    rep: s.heads / s.kvHeads,
  };
}

const qIndex = (d: Dims, b: number, t: number, h: number, i: number) => ((b * d.T + t) * d.NH + h) * d.D + i;
const kvIndex = (d: Dims, b: number, j: number, g: number, i: number) => ((b * d.S + j) * d.NKV + g) * d.D + i;

/** Softmax probabilities of one head: probs[t][j] for j ≤ past + t (row length past + t + 1). */
function headProbs(q: Float64Array, k: Float64Array, d: Dims, b: number, h: number): { probs: Float64Array[]; lse: number[] } {
  const g = Math.floor(h / d.rep);
  const probs: Float64Array[] = [];
  const lse: number[] = [];
  for (let t = 0; t < d.T; t++) {
    const n = d.P + t + 1;
    const s = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let i = 0; i < d.D; i++) dot += q[qIndex(d, b, t, h, i)] * k[kvIndex(d, b, j, g, i)];
      s[j] = d.scale * dot;
    }
    const max = Math.max(...s);
    let sum = 0;
    for (let j = 0; j < n; j++) sum += Math.exp(s[j] - max);
    probs.push(s.map((x) => Math.exp(x - max) / sum));
    lse.push(max + Math.log(sum));
  }
  return { probs, lse };
}

export function attentionForward(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  shape: AttentionShape,
): { out: Float64Array; lse: Float64Array } {
  const d = dims(shape);
  const out = new Float64Array(d.B * d.T * d.NH * d.D);
  const lse = new Float64Array(d.B * d.T * d.NH);
  for (let b = 0; b < d.B; b++) {
    for (let h = 0; h < d.NH; h++) {
      const g = Math.floor(h / d.rep);
      const hp = headProbs(q, k, d, b, h);
      for (let t = 0; t < d.T; t++) {
        lse[(b * d.T + t) * d.NH + h] = hp.lse[t];
        const p = hp.probs[t];
        for (let i = 0; i < d.D; i++) {
          let o = 0;
          for (let j = 0; j < p.length; j++) o += p[j] * v[kvIndex(d, b, j, g, i)];
          out[qIndex(d, b, t, h, i)] = o;
        }
      }
    }
  }
  return { out, lse };
}

export function attentionBackward(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  dOut: Float64Array,
  shape: AttentionShape,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const d = dims(shape);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  for (let b = 0; b < d.B; b++) {
    for (let h = 0; h < d.NH; h++) {
      const g = Math.floor(h / d.rep);
      const { probs } = headProbs(q, k, d, b, h);
      for (let t = 0; t < d.T; t++) {
        const p = probs[t];
        // dP[t][j] = dO_t · v_j
        const dP = p.map((_, j) => {
          let s = 0;
          for (let i = 0; i < d.D; i++) s += dOut[qIndex(d, b, t, h, i)] * v[kvIndex(d, b, j, g, i)];
          return s;
        });
        let rowDot = 0;
        for (let j = 0; j < p.length; j++) rowDot += p[j] * dP[j];
        for (let j = 0; j < p.length; j++) {
          const dS = p[j] * (dP[j] - rowDot);
          for (let i = 0; i < d.D; i++) {
            dq[qIndex(d, b, t, h, i)] += d.scale * dS * k[kvIndex(d, b, j, g, i)];
            dk[kvIndex(d, b, j, g, i)] += d.scale * dS * q[qIndex(d, b, t, h, i)];
            dv[kvIndex(d, b, j, g, i)] += p[j] * dOut[qIndex(d, b, t, h, i)];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}
