// Memory plan for running a model: bytes per role computed from the config before anything is
// allocated, so "will it fit?" is answered up front. Training methods extend this (src/tune).
import type { ModelConfig } from './config';
import { expectedTensors } from './layout';

export type WeightDType = 'f32' | 'f16';

export interface InferencePlan {
  weightDType: WeightDType;
  parameters: number;
  weightBytes: number;
  /** KV cache for `contextLength` tokens × batch. */
  kvCacheBytes: number;
  /** Largest activations of one forward over `promptTokens` tokens (hidden states, q/k/v, MLP, logits of the last row). */
  activationBytes: number;
  totalBytes: number;
  /** Largest single tensor (must fit one storage binding). */
  largestTensorBytes: number;
}

export function inferencePlan(
  c: ModelConfig,
  opts: { weightDType?: WeightDType; contextLength?: number; batch?: number; promptTokens?: number } = {},
): InferencePlan {
  const dtype = opts.weightDType ?? 'f32';
  const bytesPer = dtype === 'f32' ? 4 : 2;
  let parameters = 0;
  let largest = 0;
  for (const [name, shape] of expectedTensors(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    parameters += n;
    // Linear-layer matrices take the residency dtype; embeddings, norms and biases stay f32.
    const b = isLinearMatrix(name, shape) ? n * bytesPer : n * 4;
    if (b > largest) largest = b;
  }
  const weightBytes = [...expectedTensors(c)].reduce(
    (s, [name, shape]) => s + shape.reduce((a, b) => a * b, 1) * (isLinearMatrix(name, shape) ? bytesPer : 4),
    0,
  );
  const B = opts.batch ?? 1;
  const ctx = Math.min(opts.contextLength ?? c.maxPositions, c.maxPositions);
  const kvCacheBytes = 2 * c.numLayers * B * ctx * c.numKvHeads * c.headDim * 4;
  const N = B * (opts.promptTokens ?? Math.min(ctx, 512));
  const C = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const perToken = 3 * C + q + 2 * kv + q + 3 * c.intermediateSize;
  const activationBytes = N * perToken * 4 + N * c.numHeads * 4 + B * c.vocabSize * 4;
  return {
    weightDType: dtype,
    parameters,
    weightBytes,
    kvCacheBytes,
    activationBytes,
    totalBytes: weightBytes + kvCacheBytes + activationBytes,
    largestTensorBytes: largest,
  };
}

function isLinearMatrix(name: string, shape: number[]): boolean {
  return shape.length === 2 && !/(embed_tokens|wte|wpe|lm_head)\.weight$/.test(name);
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
