// The typed API of the webtune worker. The page talks to the worker only through this interface
// (wrapped with comlink); the GPU device and everything on it live in the worker.
import type { AdapterSummary } from '../gpu/context';

export interface GpuReport {
  ok: true;
  adapter: AdapterSummary;
}

export interface GpuUnavailable {
  ok: false;
  /** Error name, e.g. WebGpuUnavailableError. */
  name: string;
  message: string;
}

export interface WorkerApi {
  /** Acquire (once) the GPU device in the worker and describe the adapter, or say why there is none. */
  probeGpu(): Promise<GpuReport | GpuUnavailable>;
}
