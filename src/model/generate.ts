// Autoregressive generation over an InferenceSession: prefill the prompt, then one token per step
// through the KV cache, streaming tokens out as they are produced.
import type { InferenceSession } from './inference';
import { Sampler, type SamplingOptions } from './sampling';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Generation stops after emitting one of these (the stop token is included in `ids`). */
  stopTokenIds?: number[];
  /** Called for every new token, in order. */
  onToken?: (id: number, index: number) => void;
  signal?: AbortSignal;
}

export interface GenerateResult {
  ids: number[];
  stoppedBy: 'stop-token' | 'max-new-tokens' | 'context-full' | 'aborted';
  prefillMs: number;
  decodeMs: number;
}

export async function generate(session: InferenceSession, promptIds: readonly number[], opts: GenerateOptions): Promise<GenerateResult> {
  const sampler = new Sampler(opts);
  const stops = new Set(opts.stopTokenIds ?? []);
  const history = [...promptIds];
  const ids: number[] = [];
  session.reset();
  const t0 = performance.now();
  let logits = await session.forward(promptIds);
  const prefillMs = performance.now() - t0;
  const t1 = performance.now();
  let stoppedBy: GenerateResult['stoppedBy'] = 'max-new-tokens';
  while (ids.length < opts.maxNewTokens) {
    if (opts.signal?.aborted) {
      stoppedBy = 'aborted';
      break;
    }
    const next = sampler.next(logits, history);
    ids.push(next);
    history.push(next);
    opts.onToken?.(next, ids.length - 1);
    if (stops.has(next)) {
      stoppedBy = 'stop-token';
      break;
    }
    if (ids.length >= opts.maxNewTokens) break;
    if (session.past >= session.capacity) {
      stoppedBy = 'context-full';
      break;
    }
    logits = await session.forward([next]);
  }
  return { ids, stoppedBy, prefillMs, decodeMs: performance.now() - t1 };
}

/** Streams text deltas from token ids (decoding the whole suffix keeps multi-byte characters intact). */
export class TextStreamer {
  private ids: number[] = [];
  private emitted = '';
  constructor(private readonly decode: (ids: number[]) => string) {}

  push(id: number): string {
    this.ids.push(id);
    const text = this.decode(this.ids);
    // Hold back an incomplete UTF-8 sequence (decoded as U+FFFD at the end).
    if (text.endsWith('\uFFFD')) return '';
    const delta = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : text;
    this.emitted = text;
    return delta;
  }
}
