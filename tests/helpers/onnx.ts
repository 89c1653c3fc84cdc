// Running exported ONNX models in tests with onnxruntime-web (WebAssembly backend, in Node): the
// inputs of the with-past layout (src/model/onnx.ts) and greedy decoding with the KV cache.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { parseConfig } from '../../src/model/config';
import { TextTokenizer } from '../../src/model/tokenizer';

ort.env.wasm.numThreads = 1;

export interface CacheShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

export type Past = Record<string, ort.Tensor>;

/** Empty past_key_values for a batch (past length 0). */
export function emptyPast(c: CacheShape, batch: number): Past {
  const past: Past = {};
  for (let i = 0; i < c.numLayers; i++) {
    for (const kind of ['key', 'value']) past[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [batch, c.numKvHeads, 0, c.headDim]);
  }
  return past;
}

const int64 = (rows: number[][]): ort.Tensor => new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);

/**
 * One call: `ids` [B, S] with `mask` [B, past + S] (default all ones) and `positions` [B, S] (default
 * past … past + S − 1). Returns the logits and the presents renamed as the next call's past.
 */
export async function step(
  session: ort.InferenceSession,
  ids: number[][],
  past: Past,
  pastLen: number,
  opts: { mask?: number[][]; positions?: number[][] } = {},
): Promise<{ logits: ort.Tensor; past: Past }> {
  const S = ids[0].length;
  const mask = opts.mask ?? ids.map(() => Array.from({ length: pastLen + S }, () => 1));
  const positions = opts.positions ?? ids.map(() => Array.from({ length: S }, (_, t) => pastLen + t));
  const out = await session.run({ input_ids: int64(ids), attention_mask: int64(mask), position_ids: int64(positions), ...past });
  const next: Past = {};
  for (const [name, t] of Object.entries(out)) if (name.startsWith('present.')) next[name.replace(/^present\./, 'past_key_values.')] = t;
  return { logits: out.logits, past: next };
}

/** Greedy decoding with the KV cache: prefill `prompt`, then one token per call; stops at `eos`. */
export async function greedyOnnx(onnx: Uint8Array, c: CacheShape, prompt: number[], maxNewTokens: number, eos: number[] = []): Promise<number[]> {
  const session = await ort.InferenceSession.create(onnx);
  const out: number[] = [];
  try {
    let past = emptyPast(c, 1);
    let input = prompt;
    let pastLen = 0;
    for (let t = 0; t < maxNewTokens; t++) {
      const r = await step(session, [input], past, pastLen);
      const V = r.logits.dims[2];
      const last = (r.logits.data as Float32Array).subarray((input.length - 1) * V, input.length * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
      if (eos.includes(best)) break;
      out.push(best);
      pastLen += input.length;
      past = r.past;
      input = [best];
    }
  } finally {
    await session.release();
  }
  return out;
}

/** Greedy text of a model.onnx whose tokenizer and config.json are in `modelDir`, encoded and decoded as the page does. */
export async function greedyOnnxText(onnx: Uint8Array, modelDir: string, prompt: string, maxNewTokens: number): Promise<string> {
  const file = (f: string): string => readFileSync(join(modelDir, f), 'utf8');
  const tok = TextTokenizer.fromText(file('tokenizer.json'), file('tokenizer_config.json'));
  const config = parseConfig(file('config.json'));
  return tok.decode(await greedyOnnx(onnx, config, tok.encode(prompt, true), maxNewTokens, config.eosTokenIds));
}
