import { describe, expect, it } from 'vitest';
import {
  attentionBackward as gpuBackward,
  attentionBackwardDkv,
  attentionBackwardDq,
  attentionForward as gpuForward,
  type AttentionSizes,
} from '../../src/kernels/attention';
import * as ref from '../../src/ref/attention';
import { TOL_REDUCTION, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { normal, uniform } from '../helpers/random';

// Letters: B batch, T queries, NH / NKV query / kv heads, D head dim, P past keys, S key rows.
function counts(s: AttentionSizes): { nq: number; nkv: number; nstat: number; P: number; S: number } {
  const P = s.past ?? 0;
  const S = s.kvLen ?? P + s.seqLen;
  return {
    nq: s.batch * s.seqLen * s.heads * s.headDim,
    nkv: s.batch * S * s.kvHeads * s.headDim,
    nstat: s.batch * s.seqLen * s.heads,
    P,
    S,
  };
}

describe('attention reference', () => {
  const shapes: [string, AttentionSizes][] = [
    ['GQA 4/2, B=2 T=3 D=3', { batch: 2, seqLen: 3, heads: 4, kvHeads: 2, headDim: 3 }],
    ['MQA 3/1, T=4 D=2, scale 0.7', { batch: 1, seqLen: 4, heads: 3, kvHeads: 1, headDim: 2, scale: 0.7 }],
    ['decode T=1 past=4 with 2 unused cache rows', { batch: 1, seqLen: 1, heads: 2, kvHeads: 1, headDim: 4, past: 4, kvLen: 7 }],
    ['chunk T=2 past=3', { batch: 2, seqLen: 2, heads: 2, kvHeads: 2, headDim: 3, past: 3 }],
  ];
  for (const [name, s] of shapes) {
    it(`backward matches finite differences for q, k, v: ${name}`, () => {
      const { nq, nkv } = counts(s);
      checkGradients({
        inputs: [normal(nq, 1), normal(nkv, 2), normal(nkv, 3)],
        forward: ([q, k, v]) => ref.attentionForward(q, k, v, s).out,
        backward: ([q, k, v], dOut) => {
          const g = ref.attentionBackward(q, k, v, dOut, s);
          return [g.dq, g.dk, g.dv];
        },
      });
    });
  }

  it('the first query sees only key 0; a single-key softmax returns v_0 and lse = its score', () => {
    const s = { batch: 1, seqLen: 2, heads: 1, kvHeads: 1, headDim: 2 };
    const q = Float64Array.of(1, 2, 0.5, 0.5);
    const k = Float64Array.of(3, -1, 0, 2);
    const v = Float64Array.of(7, 8, 1, 0);
    const { out, lse } = ref.attentionForward(q, k, v, s);
    expect([out[0], out[1]]).toEqual([7, 8]);
    expect(lse[0]).toBeCloseTo((1 * 3 + 2 * -1) / Math.SQRT2, 14);
    // Query 1 mixes both keys with weights softmax([0.5·3 − 0.5, 0.5·0 + 0.5·2]/√2) = softmax([1, 1]/√2).
    expect(out[2]).toBeCloseTo(4, 14);
    expect(out[3]).toBeCloseTo(4, 14);
  });
});

describe('attention.wgsl', () => {
  // Required coverage: B 1–2; T 1, 5, 17, 33; D 4, 8, 16 and odd-sized 6; NH/NKV 4/4, 4/2, 6/1; a decode
  // step T=1 over 9 keys; a chunked step with a cache larger than the keys in use; a scale override.
  const cases: [string, AttentionSizes][] = [
    ['B=1 T=1 4/4 D=4', { batch: 1, seqLen: 1, heads: 4, kvHeads: 4, headDim: 4 }],
    ['B=2 T=5 4/2 D=8', { batch: 2, seqLen: 5, heads: 4, kvHeads: 2, headDim: 8 }],
    ['B=1 T=17 6/1 D=16', { batch: 1, seqLen: 17, heads: 6, kvHeads: 1, headDim: 16 }],
    ['B=2 T=33 4/4 D=16', { batch: 2, seqLen: 33, heads: 4, kvHeads: 4, headDim: 16 }],
    ['B=2 T=33 4/2 D=6', { batch: 2, seqLen: 33, heads: 4, kvHeads: 2, headDim: 6 }],
    ['B=1 T=5 6/1 D=4', { batch: 1, seqLen: 5, heads: 6, kvHeads: 1, headDim: 4 }],
    ['B=2 T=17 4/2 D=8 scale=0.3', { batch: 2, seqLen: 17, heads: 4, kvHeads: 2, headDim: 8, scale: 0.3 }],
    ['decode B=2 T=1 past=8 4/2 D=8', { batch: 2, seqLen: 1, heads: 4, kvHeads: 2, headDim: 8, past: 8 }],
    ['decode B=1 T=1 past=8 6/1 D=16', { batch: 1, seqLen: 1, heads: 6, kvHeads: 1, headDim: 16, past: 8, kvLen: 9 }],
    ['chunk B=2 T=3 past=5 cache 12 4/2 D=8', { batch: 2, seqLen: 3, heads: 4, kvHeads: 2, headDim: 8, past: 5, kvLen: 12 }],
  ];

  for (const [name, s] of cases) {
    const { nq, nkv, nstat, S } = counts(s);
    const q = normal(nq, 11);
    const k = normal(nkv, 12);
    const v = normal(nkv, 13);
    const dy = normal(nq, 14);
    const qShape = [s.batch, s.seqLen, s.heads, s.headDim];
    const kvShape = [s.batch, S, s.kvHeads, s.headDim];
    const statShape = [s.batch, s.seqLen, s.heads];

    it(`attention_forward matches the reference (out, lse), ${name}`, async () => {
      const c = await gpu();
      const out = c.tensor(qShape);
      const lse = c.tensor(statShape);
      await c.run((batch) => gpuForward(batch, out, lse, upload(c, q, qShape), upload(c, k, kvShape), upload(c, v, kvShape), s));
      const want = ref.attentionForward(q, k, v, s);
      expectClose(await download(c, out), want.out, TOL_REDUCTION, 'attention_forward out');
      expectClose(await download(c, lse), want.lse, TOL_REDUCTION, 'attention_forward lse');
    });

    it(`attention_backward_dq and attention_backward_dkv match the reference, ${name}`, async () => {
      const c = await gpu();
      const qt = upload(c, q, qShape);
      const kt = upload(c, k, kvShape);
      const vt = upload(c, v, kvShape);
      const out = c.tensor(qShape);
      const lse = c.tensor(statShape);
      // Gradient buffers start as garbage: every output is assigned (=), never accumulated.
      const dq = upload(c, uniform(nq, 15), qShape);
      const dk = upload(c, uniform(nkv, 16), kvShape);
      const dv = upload(c, uniform(nkv, 17), kvShape);
      const delta = upload(c, uniform(nstat, 18), statShape);
      await c.run((batch) => {
        gpuForward(batch, out, lse, qt, kt, vt, s);
        gpuBackward(batch, { dq, dk, dv, delta }, { q: qt, k: kt, v: vt, out, lse }, upload(c, dy, qShape), s);
      });
      const want = ref.attentionBackward(q, k, v, dy, s);
      const refOut = ref.attentionForward(q, k, v, s).out;
      const wantDelta = new Float64Array(nstat).map((_, r) => {
        let sum = 0;
        for (let i = 0; i < s.headDim; i++) sum += dy[r * s.headDim + i] * refOut[r * s.headDim + i];
        return sum;
      });
      expectClose(await download(c, dq), want.dq, TOL_REDUCTION, 'attention_backward_dq dq');
      expectClose(await download(c, delta), wantDelta, TOL_REDUCTION, 'attention_backward_dq delta');
      expectClose(await download(c, dk), want.dk, TOL_REDUCTION, 'attention_backward_dkv dk');
      expectClose(await download(c, dv), want.dv, TOL_REDUCTION, 'attention_backward_dkv dv');
    });
  }

  it('is deterministic: two backward runs give identical bits', async () => {
    const c = await gpu();
    const s = { batch: 2, seqLen: 17, heads: 6, kvHeads: 1, headDim: 8 };
    const { nq, nkv } = counts(s);
    const qShape = [2, 17, 6, 8];
    const kvShape = [2, 17, 1, 8];
    const qt = upload(c, normal(nq, 21), qShape);
    const kt = upload(c, normal(nkv, 22), kvShape);
    const vt = upload(c, normal(nkv, 23), kvShape);
    const dy = upload(c, normal(nq, 24), qShape);
    const out = c.tensor(qShape);
    const lse = c.tensor([2, 17, 6]);
    const delta = c.tensor([2, 17, 6]);
    const runs: Float32Array[] = [];
    for (let r = 0; r < 2; r++) {
      const dq = c.tensor(qShape);
      const dk = c.tensor(kvShape);
      const dv = c.tensor(kvShape);
      await c.run((batch) => {
        gpuForward(batch, out, lse, qt, kt, vt, s);
        attentionBackwardDq(batch, dq, delta, qt, kt, vt, dy, lse, out, s);
        attentionBackwardDkv(batch, dk, dv, qt, kt, vt, dy, lse, delta, s);
      });
      runs.push(Float32Array.of(...(await c.readF32(dq)), ...(await c.readF32(dk)), ...(await c.readF32(dv))));
    }
    expect(runs[1]).toEqual(runs[0]);
  });

  it('rejects bad sizes naming the kernel and tensor', async () => {
    const c = await gpu();
    const batch = c.batch();
    const s = { batch: 1, seqLen: 2, heads: 4, kvHeads: 2, headDim: 4 };
    const qx = c.tensor([1, 2, 4, 4]);
    const kx = c.tensor([1, 2, 2, 4]);
    const st = c.tensor([1, 2, 4]);
    expect(() => gpuForward(batch, qx, st, qx, kx, c.tensor([1, 2, 4, 4]), s)).toThrow(/attention_forward: v has 32 elements/);
    expect(() => gpuForward(batch, qx, st, qx, kx, kx, { ...s, kvHeads: 3 })).toThrow(/attention_forward: heads 4 must be a positive multiple of kvHeads 3/);
    expect(() => gpuForward(batch, qx, st, qx, kx, kx, { ...s, past: 1 })).toThrow(/attention_forward: k has 16 elements .* S=3/);
    expect(() => gpuForward(batch, qx, st, qx, kx, kx, { ...s, past: 1, kvLen: 2 })).toThrow(/attention_forward: past 1 \+ seqLen 2 exceeds kvLen 2/);
    expect(() => attentionBackwardDq(batch, qx, st, qx, kx, kx, qx, st, qx, { ...s, headDim: 257 })).toThrow(/attention_backward_dq: headDim 257 exceeds 256/);
    expect(() => attentionBackwardDkv(batch, kx, kx, qx, kx, kx, qx, st, c.tensor([3]), s)).toThrow(/attention_backward_dkv: delta has 3 elements/);
  });
});
