// The Playground's second column: the same prompt and sampling settings, generated with a LoRA adapter
// on (the first column is the base model), streamed the same way. The adapters to choose from are the
// worker's list for the loaded model (this page's run, stored LoRA runs, imported PEFT adapters).
import * as Comlink from 'comlink';
import type { AdapterInfo, GenerationResult, ModelInfo, TokenDelta } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { DEFAULT_SETTINGS, type PlaygroundState, type SamplingSettings } from './playground.svelte';
import { workerApi } from './worker-client';

export class AdapterOutput {
  /** The adapters the loaded model can generate with (the worker's list; replaced whole). */
  choices = $state.raw<AdapterInfo[]>([]);
  /**
   * The person's choice: an adapter id, '' for the base model only; null until they choose (then this
   * page's run's adapter is compared when there is one, else nothing).
   */
  picked = $state<string | null>(null);
  importing = $state(false);
  importError = $state.raw<FriendlyError | null>(null);
  private listing = 0;
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

  /** Ask the worker for the adapters again (a run ended, a checkpoint landed, a run was renamed or deleted, another model). */
  async refresh(): Promise<void> {
    const n = ++this.listing;
    try {
      const list = await workerApi().listAdapters();
      if (n === this.listing) this.choices = list;
    } catch {
      // No store (private mode) or a model loading: the list stays as it was.
    }
  }

  /** Import a PEFT adapter (the two files, picked together) for the loaded model, and choose it. */
  async importFiles(files: File[]): Promise<AdapterInfo | null> {
    if (this.importing || files.length === 0) return null;
    this.importing = true;
    this.importError = null;
    try {
      const got = await workerApi().importAdapter(files);
      await this.refresh();
      this.picked = got.id;
      return got;
    } catch (e) {
      this.importError = friendlyError(e);
      return null;
    } finally {
      this.importing = false;
    }
  }

  /** Generate with the adapter `adapterId` ('live': this page's run). */
  async generate(pg: PlaygroundState, info: ModelInfo, adapterId: string): Promise<void> {
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
    let finished = false;
    try {
      this.result = await workerApi().generate(
        { text: pg.prompt, chat },
        { ...s, adapter: adapterId },
        Comlink.proxy((d: TokenDelta) => {
          // Deltas come through their own port: one may arrive after the result, and is already in it.
          if (finished) return;
          this.output += d.text;
          this.tokens = d.tokens;
        }),
      );
      finished = true;
      this.output = info.hasTokenizer ? this.result.text : this.result.ids.join(' ');
      this.tokens = this.result.ids.length;
    } catch (e) {
      this.error = friendlyError(e);
    } finally {
      this.generating = false;
    }
  }
}
