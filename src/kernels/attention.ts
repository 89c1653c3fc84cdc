// Host side of shaders/attention.wgsl: causal grouped-query attention (B batch, T query tokens,
// NH query heads, NKV kv heads, D head dim, S key rows per sequence, P = past keys before query 0).
//   q, out, dq, dOut [B, T, NH, D];  k, v, dk, dv [B, S, NKV, D];  lse, delta [B, T, NH]
// Forward saves the row logsumexp `lse`; backward recomputes the probabilities from it.
import { KernelArgumentError, grid1d, params, type CommandBatch, type GpuTensor, type KernelSpec } from '../gpu';
import { expectNumel } from './check';

const WG = 64;
/** Largest head dim the shader's private row arrays hold (MAX_D in attention.wgsl). */
export const ATTENTION_MAX_HEAD_DIM = 256;
export const ATTENTION_FORWARD: KernelSpec = {
  shader: 'attention',
  entry: 'attention_forward',
  // out, lse | q, k, v
  bindings: ['rw', 'rw', 'read', 'read', 'read'],
  constants: { WG },
};
export const ATTENTION_BACKWARD_DQ: KernelSpec = {
  shader: 'attention',
  entry: 'attention_backward_dq',
  // dq, delta | q, k, v, dOut, lse, out
  bindings: ['rw', 'rw', 'read', 'read', 'read', 'read', 'read', 'read'],
  constants: { WG },
};
export const ATTENTION_BACKWARD_DKV: KernelSpec = {
  shader: 'attention',
  entry: 'attention_backward_dkv',
  // dk, dv | q, k, v, dOut, lse, delta
  bindings: ['rw', 'rw', 'read', 'read', 'read', 'read', 'read', 'read'],
  constants: { WG },
};

export interface AttentionSizes {
  batch: number;
  /** T: query tokens per sequence. */
  seqLen: number;
  /** NH query heads and NKV kv heads (NH a multiple of NKV). */
  heads: number;
  kvHeads: number;
  headDim: number;
  /** P: keys before the first query (KV-cache length when decoding); default 0. Query t attends keys ≤ P + t. */
  past?: number;
  /** S: key rows per sequence in k and v (≥ P + T; a cache's capacity); default P + T. */
  kvLen?: number;
  /** Score scale; default 1/√D. */
  scale?: number;
}

interface Resolved {
  B: number;
  T: number;
  NH: number;
  NKV: number;
  D: number;
  P: number;
  S: number;
  scale: number;
}

function resolve(kernel: string, s: AttentionSizes): Resolved {
  const { batch: B, seqLen: T, heads: NH, kvHeads: NKV, headDim: D } = s;
  const P = s.past ?? 0;
  const S = s.kvLen ?? P + T;
  for (const [name, v] of Object.entries({ batch: B, seqLen: T, heads: NH, kvHeads: NKV, headDim: D, past: P, kvLen: S })) {
    if (!Number.isInteger(v) || v < 0) throw new KernelArgumentError(kernel, `${name} = ${v} must be a non-negative integer`);
  }
  if (NKV === 0 || NH % NKV !== 0) throw new KernelArgumentError(kernel, `heads ${NH} must be a positive multiple of kvHeads ${NKV}`);
  if (D > ATTENTION_MAX_HEAD_DIM) throw new KernelArgumentError(kernel, `headDim ${D} exceeds ${ATTENTION_MAX_HEAD_DIM}`);
  if (P + T > S) throw new KernelArgumentError(kernel, `past ${P} + seqLen ${T} exceeds kvLen ${S}`);
  return { B, T, NH, NKV, D, P, S, scale: s.scale ?? 1 / Math.sqrt(D) };
}

function paramBytes(r: Resolved, rows: number): Uint8Array {
  return params().u32(rows).u32(r.T).u32(r.P).u32(r.S).u32(r.NH).u32(r.NKV).u32(r.D).f32(r.scale).bytes();
}

function expectShapes(kernel: string, r: Resolved, t: { rowsQ?: Record<string, GpuTensor>; rowsKv?: Record<string, GpuTensor>; stats?: Record<string, GpuTensor> }): void {
  const q = `[B=${r.B}, T=${r.T}, NH=${r.NH}, D=${r.D}]`;
  const kv = `[B=${r.B}, S=${r.S}, NKV=${r.NKV}, D=${r.D}]`;
  for (const [name, x] of Object.entries(t.rowsQ ?? {})) expectNumel(kernel, name, x, r.B * r.T * r.NH * r.D, q);
  for (const [name, x] of Object.entries(t.rowsKv ?? {})) expectNumel(kernel, name, x, r.B * r.S * r.NKV * r.D, kv);
  for (const [name, x] of Object.entries(t.stats ?? {})) expectNumel(kernel, name, x, r.B * r.T * r.NH, `[B=${r.B}, T=${r.T}, NH=${r.NH}]`);
}

/** out = softmax(scale·q·kᵀ + causal mask)·v per head (=); lse = row logsumexp, saved for backward (=). */
export function attentionForward(
  batch: CommandBatch,
  out: GpuTensor,
  lse: GpuTensor,
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  sizes: AttentionSizes,
): void {
  const kernel = ATTENTION_FORWARD.entry;
  const r = resolve(kernel, sizes);
  expectShapes(kernel, r, { rowsQ: { out, q }, rowsKv: { k, v }, stats: { lse } });
  const n = r.B * r.T * r.NH;
  if (n === 0 || r.D === 0) return;
  batch.dispatch(ATTENTION_FORWARD, { params: paramBytes(r, n), tensors: [out, lse, q, k, v], grid: grid1d(n, WG) });
}

/** dq (=) and delta = rowsum(dOut ⊙ out) (=, scratch that attentionBackwardDkv reads). */
export function attentionBackwardDq(
  batch: CommandBatch,
  dq: GpuTensor,
  delta: GpuTensor,
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  dOut: GpuTensor,
  lse: GpuTensor,
  out: GpuTensor,
  sizes: AttentionSizes,
): void {
  const kernel = ATTENTION_BACKWARD_DQ.entry;
  const r = resolve(kernel, sizes);
  expectShapes(kernel, r, { rowsQ: { dq, q, dOut, out }, rowsKv: { k, v }, stats: { delta, lse } });
  const n = r.B * r.T * r.NH;
  if (n === 0 || r.D === 0) return;
  batch.dispatch(ATTENTION_BACKWARD_DQ, {
    params: paramBytes(r, n),
    tensors: [dq, delta, q, k, v, dOut, lse, out],
    grid: grid1d(n, WG),
  });
}

/** dk, dv (=; summed over each kv head's query heads; rows ≥ P + T are 0). Needs delta from attentionBackwardDq. */
export function attentionBackwardDkv(
  batch: CommandBatch,
  dk: GpuTensor,
  dv: GpuTensor,
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  dOut: GpuTensor,
  lse: GpuTensor,
  delta: GpuTensor,
  sizes: AttentionSizes,
): void {
  const kernel = ATTENTION_BACKWARD_DKV.entry;
  const r = resolve(kernel, sizes);
  expectShapes(kernel, r, { rowsQ: { q, dOut }, rowsKv: { dk, dv, k, v }, stats: { lse, delta } });
  const n = r.B * r.S * r.NKV;
  if (n === 0 || r.D === 0) return;
  batch.dispatch(ATTENTION_BACKWARD_DKV, {
    params: paramBytes(r, n),
    tensors: [dk, dv, q, k, v, dOut, lse, delta],
    grid: grid1d(n, WG),
  });
}

/** The whole backward: dq, then dk and dv. `delta` is a [B, T, NH] scratch tensor. */
export function attentionBackward(
  batch: CommandBatch,
  grads: { dq: GpuTensor; dk: GpuTensor; dv: GpuTensor; delta: GpuTensor },
  saved: { q: GpuTensor; k: GpuTensor; v: GpuTensor; out: GpuTensor; lse: GpuTensor },
  dOut: GpuTensor,
  sizes: AttentionSizes,
): void {
  const { dq, dk, dv, delta } = grads;
  const { q, k, v, out, lse } = saved;
  attentionBackwardDq(batch, dq, delta, q, k, v, dOut, lse, out, sizes);
  attentionBackwardDkv(batch, dk, dv, q, k, v, dOut, lse, delta, sizes);
}
