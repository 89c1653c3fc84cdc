// State of the Playground: the prompt, sampling settings, the streaming output and its statistics.
import * as Comlink from 'comlink';
import type { GenerationResult, ModelInfo, TokenDelta } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { workerApi } from './worker-client';

export interface SamplingSettings {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
}

export const DEFAULT_SETTINGS: SamplingSettings = {
  maxNewTokens: 64,
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  seed: 0,
};

export class PlaygroundState {
  prompt = $state('Once upon a time');
  chat = $state(false);
  settings = $state<SamplingSettings>({ ...DEFAULT_SETTINGS });
  /** The prompt as sent (shown before the output when not chatting). */
  shownPrompt = $state('');
  output = $state('');
  tokens = $state(0);
  generating = $state(false);
  result = $state.raw<GenerationResult | null>(null);
  error = $state.raw<FriendlyError | null>(null);

  /** A new model: take its generation_config.json defaults; chat on when it has a template. */
  useModel(info: ModelInfo): void {
    const g = info.generation;
    this.settings = {
      maxNewTokens: Math.min(g.maxNewTokens ?? DEFAULT_SETTINGS.maxNewTokens, info.context),
      temperature: g.temperature ?? DEFAULT_SETTINGS.temperature,
      topK: g.topK ?? DEFAULT_SETTINGS.topK,
      topP: g.topP ?? DEFAULT_SETTINGS.topP,
      repetitionPenalty: g.repetitionPenalty ?? DEFAULT_SETTINGS.repetitionPenalty,
      seed: DEFAULT_SETTINGS.seed,
    };
    this.chat = false;
    this.output = '';
    this.shownPrompt = '';
    this.result = null;
    this.error = null;
  }

  async generate(info: ModelInfo): Promise<void> {
    if (this.generating) return;
    this.generating = true;
    this.error = null;
    this.result = null;
    this.output = '';
    this.tokens = 0;
    const chat = this.chat && info.hasChatTemplate;
    this.shownPrompt = chat ? '' : this.prompt;
    // An emptied number field binds as null: fall back to the default.
    const raw = $state.snapshot(this.settings);
    const s = Object.fromEntries(
      Object.entries(DEFAULT_SETTINGS).map(([k, d]) => {
        const v = raw[k as keyof SamplingSettings] as number | null;
        return [k, typeof v === 'number' && Number.isFinite(v) ? v : d];
      }),
    ) as unknown as SamplingSettings;
    let finished = false;
    try {
      this.result = await workerApi().generate(
        { text: this.prompt, chat },
        {
          maxNewTokens: s.maxNewTokens,
          temperature: s.temperature,
          topK: s.topK,
          topP: s.topP,
          repetitionPenalty: s.repetitionPenalty,
          seed: s.seed,
        },
        Comlink.proxy((d: TokenDelta) => {
          // Deltas come through their own port: one may arrive after the result, and is already in it.
          if (finished) return;
          this.output += d.text;
          this.tokens = d.tokens;
        }),
      );
      finished = true;
      // The final text is authoritative (a delta held back for an incomplete character, etc.).
      this.output = info.hasTokenizer ? this.result.text : this.result.ids.join(' ');
      this.tokens = this.result.ids.length;
    } catch (e) {
      this.error = friendlyError(e);
    } finally {
      this.generating = false;
    }
  }

  stop(): void {
    void workerApi().stopGeneration();
  }
}
