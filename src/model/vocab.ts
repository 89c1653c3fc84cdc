// Vocabulary-sized tensors split across bindings. A [V, C] embedding (or lm_head) larger than the
// adapter's maxStorageBufferBindingSize (e.g. Llama-3.2-1B's 128256 × 2048 in f32 = 1.05 GB) is held as
// row blocks ("parts"); lookups and the output projection work part by part:
//   embedding:  out = Σ_parts lookup(part, ids − offset)   (ids outside a part give zero rows)
//   logits:     logits[:, offset : offset + rows] = h · partᵀ   (a column block per part)
import type { CommandBatch, GpuContext, GpuTensor } from '../gpu';
import { embeddingForward, type PositionArgs } from '../kernels/embedding';
import { matmul } from '../kernels/matmul';
import { residualAccumulate } from '../kernels/residual';

export interface VocabPart {
  table: GpuTensor; // [rows, C]
  offset: number;
  rows: number;
}

/** How many rows of width C fit one binding of `maxBytes`. */
export function rowsPerPart(C: number, maxBytes: number): number {
  return Math.max(1, Math.floor(maxBytes / (C * 4)));
}

/** Upload a [V, C] table as one tensor, or as row blocks when it exceeds `maxBytes`. */
export function uploadVocabTable(ctx: GpuContext, values: Float32Array, V: number, C: number, label: string, maxBytes: number): VocabPart[] {
  const per = rowsPerPart(C, maxBytes);
  const parts: VocabPart[] = [];
  for (let offset = 0; offset < V; offset += per) {
    const rows = Math.min(per, V - offset);
    const table = ctx.tensor([rows, C], {
      role: 'weights',
      label: V > per ? `${label}[rows ${offset}..${offset + rows})` : label,
      data: values.subarray(offset * C, (offset + rows) * C),
    });
    parts.push({ table, offset, rows });
  }
  return parts;
}

/**
 * out (N, C) = embedding of `hostIds` (+ learned positions). With one part this is one dispatch; with
 * several, each part looks up the ids that fall in it (others give zero rows) and the results add up.
 * Temporary tensors are pushed to `release` (free them after the submission).
 */
export function embedTokens(
  b: CommandBatch,
  out: GpuTensor,
  ids: GpuTensor,
  hostIds: ArrayLike<number>,
  parts: readonly VocabPart[],
  positions: PositionArgs | undefined,
  release: GpuTensor[],
): void {
  if (parts.length === 1) {
    embeddingForward(b, out, ids, parts[0].table, { hostIds, positions });
    return;
  }
  const V = parts[parts.length - 1].offset + parts[parts.length - 1].rows;
  for (let n = 0; n < hostIds.length; n++) {
    const id = hostIds[n];
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new RangeError(`embedding_forward: token id ${id} at position ${n} is outside the vocabulary [0, ${V})`);
    }
  }
  const ctx = b.ctx;
  parts.forEach((p, i) => {
    const shifted = Uint32Array.from(hostIds, (id) => (id >= p.offset && id < p.offset + p.rows ? id - p.offset : 0xffffffff));
    const pid = ctx.tensor([shifted.length], { dtype: 'u32', role: 'scratch', label: `ids for ${p.table.label}`, data: shifted });
    release.push(pid);
    const target = i === 0 ? out : ctx.tensor(out.shape, { role: 'scratch', label: 'embedding part' });
    if (i > 0) release.push(target);
    embeddingForward(b, target, pid, p.table, { positions: i === 0 ? positions : undefined });
    if (i > 0) residualAccumulate(b, out, target);
  });
}

/** logits (N, V) = h (N, C) · Eᵀ over the parts of E. */
export function projectVocab(b: CommandBatch, logits: GpuTensor, h: GpuTensor, parts: readonly VocabPart[], N: number, release: GpuTensor[]): void {
  const C = parts[0].table.shape[1];
  if (parts.length === 1) {
    matmul(b, logits, h, parts[0].table, { m: N, n: parts[0].rows, k: C, transB: true });
    return;
  }
  const V = logits.shape[logits.shape.length - 1];
  for (const p of parts) {
    const block = b.ctx.tensor([N, p.rows], { role: 'scratch', label: `logits block ${p.offset}` });
    release.push(block);
    matmul(b, block, h, p.table, { m: N, n: p.rows, k: C, transB: true });
    for (let r = 0; r < N; r++) b.copyElements(block, r * p.rows, logits, r * V + p.offset, p.rows);
  }
}

/** dh (N, C) = dlogits (N, V) · E over the parts of E (the input gradient of the output projection). */
export function projectVocabBackwardInput(
  b: CommandBatch,
  dh: GpuTensor,
  dlogits: GpuTensor,
  parts: readonly VocabPart[],
  N: number,
  release: GpuTensor[],
): void {
  const C = parts[0].table.shape[1];
  if (parts.length === 1) {
    matmul(b, dh, dlogits, parts[0].table, { m: N, n: C, k: parts[0].rows });
    return;
  }
  const V = dlogits.shape[dlogits.shape.length - 1];
  parts.forEach((p, i) => {
    const block = b.ctx.tensor([N, p.rows], { role: 'scratch', label: `dlogits block ${p.offset}` });
    release.push(block);
    for (let r = 0; r < N; r++) b.copyElements(dlogits, r * V + p.offset, block, r * p.rows, p.rows);
    matmul(b, dh, block, p.table, { m: N, n: C, k: p.rows, beta: i === 0 ? 0 : 1 });
  });
}
