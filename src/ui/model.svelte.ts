// State of the Model panel: which model is loaded, load progress, the last error. One instance, made
// by App and shared with the Playground (which reads `info`).
import * as Comlink from 'comlink';
import type { LoadProgress, ModelInfo, ModelSource } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { demoBaseUrl, workerApi } from './worker-client';

export type LoadStatus = 'idle' | 'loading' | 'ready' | 'error';

export class ModelState {
  status = $state<LoadStatus>('idle');
  /** Latest progress event of the load in flight (replaced whole: $state.raw). */
  progress = $state.raw<LoadProgress | null>(null);
  /** The last download event of the load in flight, kept while later phases run. */
  download = $state.raw<Extract<LoadProgress, { phase: 'downloading' }> | null>(null);
  info = $state.raw<ModelInfo | null>(null);
  error = $state.raw<FriendlyError | null>(null);
  /** What is being loaded, for the progress line ("demo", "org/name", "3 files"). */
  loadingName = $state('');

  constructor(private readonly onLoaded: (info: ModelInfo) => void = () => {}) {}

  get busy(): boolean {
    return this.status === 'loading';
  }

  async load(source: ModelSource, name: string): Promise<void> {
    if (this.busy) return;
    this.status = 'loading';
    this.error = null;
    this.progress = null;
    this.download = null;
    this.loadingName = name;
    // The worker unloads the current model before loading the next one.
    this.info = null;
    const src: ModelSource = source.kind === 'demo' ? { kind: 'demo', baseUrl: source.baseUrl ?? demoBaseUrl() } : source;
    try {
      const info = await workerApi().loadModel(
        src,
        Comlink.proxy((p: LoadProgress) => {
          this.progress = p;
          if (p.phase === 'downloading') this.download = p;
        }),
      );
      this.info = info;
      this.status = 'ready';
      this.onLoaded(info);
    } catch (e) {
      this.error = friendlyError(e);
      this.status = 'error';
    } finally {
      this.progress = null;
    }
  }

  cancel(): void {
    void workerApi().cancelLoad();
  }
}
