// Open whatever weights a model folder holds: a regular Hugging Face checkpoint (F32/F16/BF16) or a
// pre-quantized transformers + bitsandbytes 4-bit one (NF4 packed codes, loaded without dequantizing).
import { isBnb4bitConfig, openBnbCheckpoint, type BnbCheckpoint } from '../io/bnb';
import { readText, readTextIfPresent, type ModelFiles } from '../io/files';
import { openCheckpoint, readGenerationDefaults, type Checkpoint } from './checkpoint';
import type { ModelConfig } from './config';
import type { WeightSource } from './gpu-model';

export interface OpenedModel {
  weights: WeightSource;
  config: ModelConfig;
  rawConfig: Record<string, unknown>;
  files: ModelFiles;
  tokenizerJson: string | null;
  tokenizerConfigJson: string | null;
  eosTokenIds: number[];
  /** True for a pre-quantized bitsandbytes 4-bit checkpoint. */
  prequantized: boolean;
}

export async function openModel(files: ModelFiles): Promise<OpenedModel> {
  let raw: Record<string, unknown> | null = null;
  try {
    raw = JSON.parse(await readText(files, 'config.json')) as Record<string, unknown>;
  } catch {
    raw = null; // openCheckpoint reports a missing or broken config.json with the right message
  }
  if (raw && isBnb4bitConfig(raw)) {
    const bnb = await openBnbCheckpoint(files);
    const generation = await readGenerationDefaults(files, bnb.config);
    return {
      weights: bnb,
      config: bnb.config,
      rawConfig: bnb.rawConfig,
      files,
      tokenizerJson: await readTextIfPresent(files, 'tokenizer.json'),
      tokenizerConfigJson: await readTextIfPresent(files, 'tokenizer_config.json'),
      eosTokenIds: generation.eosTokenIds,
      prequantized: true,
    };
  }
  const ck = await openCheckpoint(files);
  return {
    weights: ck,
    config: ck.config,
    rawConfig: ck.rawConfig,
    files,
    tokenizerJson: ck.tokenizerJson,
    tokenizerConfigJson: ck.tokenizerConfigJson,
    eosTokenIds: ck.generation.eosTokenIds,
    prequantized: false,
  };
}

/**
 * A model folder as the app holds it: the Checkpoint view the rest of the page reads (config,
 * tokenizer, generation defaults, unquantized tensors) and the weights to upload. For a pre-quantized
 * bitsandbytes folder the view's tensors are the stored ones (the linear layers' packed NF4 data is
 * read only by GpuModel.load, never dequantized on the CPU).
 */
export async function openForApp(files: ModelFiles): Promise<{ ck: Checkpoint; weights: WeightSource; prequantized: boolean }> {
  const m = await openModel(files);
  if (!m.prequantized) return { ck: m.weights as Checkpoint, weights: m.weights, prequantized: false };
  const bnb = m.weights as BnbCheckpoint;
  const ck: Checkpoint = {
    files,
    config: bnb.config,
    rawConfig: bnb.rawConfig,
    generation: await readGenerationDefaults(files, bnb.config),
    tokenizerJson: m.tokenizerJson,
    tokenizerConfigJson: m.tokenizerConfigJson,
    tensors: bnb.tensors,
    readF32: (name) => bnb.readF32(name),
    dtypeOf: (name) => bnb.dtypeOf(name),
  };
  return { ck, weights: bnb, prequantized: true };
}
