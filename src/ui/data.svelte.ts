// State of the Data panel: the dataset source (a picked / dropped file, or the demo), the report the
// worker sends back (format, stats, preview, problems with line numbers) or why the file was refused.
// The worker tokenizes with the loaded model's tokenizer, so a new model means loading the data again.
import type { DataOptions, DatasetRejected, DatasetReport, DatasetSource } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { demoBaseUrl, workerApi } from './worker-client';

export type DataStatus = 'idle' | 'loading' | 'ready' | 'rejected' | 'error';

export class DataState {
  status = $state<DataStatus>('idle');
  report = $state.raw<DatasetReport | null>(null);
  rejected = $state.raw<DatasetRejected | null>(null);
  error = $state.raw<FriendlyError | null>(null);
  /** The name of what is loaded or loading. */
  name = $state('');
  /** The sequence length the report was made for. */
  maxLength = $state(0);
  private source: DatasetSource | null = null;

  get ready(): boolean {
    return this.status === 'ready';
  }

  useDemo(options: DataOptions, maxLength: number): Promise<void> {
    return this.load({ kind: 'demo', baseUrl: demoBaseUrl() }, options, maxLength);
  }

  async useFile(file: File, options: DataOptions, maxLength: number): Promise<void> {
    let text: string;
    try {
      text = await file.text();
    } catch (e) {
      this.error = friendlyError(e);
      this.status = 'error';
      return;
    }
    await this.load({ kind: 'file', name: file.name, text }, options, maxLength);
  }

  /** Read the same source again (new options, a new model). */
  async reload(options: DataOptions, maxLength: number): Promise<void> {
    if (this.source) await this.load(this.source, options, maxLength);
  }

  /** The model changed: the tokens are stale. Load again when there is a source, else stay idle. */
  async modelChanged(options: DataOptions, maxLength: number): Promise<void> {
    this.report = null;
    this.rejected = null;
    if (this.source) await this.load(this.source, options, maxLength);
    else this.status = 'idle';
  }

  private async load(source: DatasetSource, options: DataOptions, maxLength: number): Promise<void> {
    this.source = source;
    this.name = source.kind === 'demo' ? 'demo dataset' : source.name;
    this.status = 'loading';
    this.error = null;
    this.rejected = null;
    this.report = null;
    try {
      const r = await workerApi().loadDataset(source, { ...$state.snapshot(options), maxLength });
      this.maxLength = maxLength;
      if (r.ok) {
        this.report = r;
        this.status = 'ready';
      } else {
        this.rejected = r;
        this.status = 'rejected';
      }
    } catch (e) {
      this.error = friendlyError(e);
      this.status = 'error';
    }
  }
}
