// What the model needs to know about low-rank adapters to run them (the training methods in
// src/tune build these; the model layer only consumes them, so it never imports upward).
import type { GpuTensor } from '../gpu';
import type { GpuLinear } from './gpu-model';

/** One LoRA adapter: A [r, in] shared by one or more B parts (GPT-2's fused c_attn has q, k, v parts). */
export interface LoraGroupTensors {
  module: string;
  inFeatures: number;
  r: number;
  /** alpha / r (or alpha / √r with rsLoRA). */
  scale: number;
  A: GpuTensor;
  parts: { linear: GpuLinear; B: GpuTensor; outFeatures: number; rowOffset: number }[];
}

/** Adapters by the linear layer they modify. */
export interface AdapterSet {
  loraByLinear: Map<GpuLinear, { group: LoraGroupTensors; part: number }>;
}
