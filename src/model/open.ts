// Open whatever weights a model folder holds: a regular Hugging Face checkpoint (F32/F16/BF16) or a
// pre-quantized transformers + bitsandbytes 4-bit one (NF4 packed codes, loaded without dequantizing).
import { isBnb4bitConfig, openBnbCheckpoint } from '../io/bnb';
import { readText, readTextIfPresent, type ModelFiles } from '../io/files';
import { openCheckpoint } from './checkpoint';
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
    const gen = await readTextIfPresent(files, 'generation_config.json');
    const eos = gen ? (JSON.parse(gen) as { eos_token_id?: number | number[] }).eos_token_id : undefined;
    return {
      weights: bnb,
      config: bnb.config,
      rawConfig: bnb.rawConfig,
      files,
      tokenizerJson: await readTextIfPresent(files, 'tokenizer.json'),
      tokenizerConfigJson: await readTextIfPresent(files, 'tokenizer_config.json'),
      eosTokenIds: typeof eos === 'number' ? [eos] : Array.isArray(eos) ? eos : bnb.config.eosTokenIds,
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
