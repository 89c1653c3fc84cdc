// The Playground's second column: the same prompt and sampling settings, generated with the trained
// LoRA adapter on (the first column is the base model), streamed the same way.
import * as Comlink from 'comlink';
import type { GenerationResult, ModelInfo, TokenDelta } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { DEFAULT_SETTINGS, type PlaygroundState, type SamplingSettings } from './playground.svelte';
import { workerApi } from './worker-client';

export class AdapterOutput {
  /** Generate the adapter's answer after the base model's. */
  enabled = $state(true);
  output = $state('');
  shownPrompt = $state('');
  tokens = $state(0);
  generating = $state(false);
  result = $state.raw<GenerationResult | null>(null);
  error = $state.raw<FriendlyError | null>(null);

  clear(): void {
    this.output = '';
    this.shownPrompt = '';
    this.tokens = 0;
    this.result = null;
    this.error = null;
  }

  async generate(pg: PlaygroundState, info: ModelInfo): Promise<void> {
    if (this.generating) return;
    this.generating = true;
    this.clear();
    const chat = pg.chat && info.hasChatTemplate;
    this.shownPrompt = chat ? '' : pg.prompt;
    const raw = $state.snapshot(pg.settings) as SamplingSettings;
    const s = Object.fromEntries(
      Object.entries(DEFAULT_SETTINGS).map(([k, d]) => {
        const v = raw[k as keyof SamplingSettings] as number | null;
        return [k, typeof v === 'number' && Number.isFinite(v) ? v : d];
      }),
    ) as unknown as SamplingSettings;
    try {
      this.result = await workerApi().generate(
        { text: pg.prompt, chat },
        { ...s, adapter: true },
        Comlink.proxy((d: TokenDelta) => {
          this.output += d.text;
          this.tokens = d.tokens;
        }),
      );
      if (info.hasTokenizer) this.output = this.result.text;
      this.tokens = this.result.ids.length;
    } catch (e) {
      this.error = friendlyError(e);
    } finally {
      this.generating = false;
    }
  }
}
