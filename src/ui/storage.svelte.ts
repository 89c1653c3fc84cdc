// State of the Storage panel: how much this site stores and may store (navigator.storage.estimate(),
// asked from the page), whether the browser keeps it when disk space runs low (persist() can only be
// asked from a page, not the worker), and what could be deleted to make room — cached model files,
// checkpoints, datasets — as the worker lists them from the store.
import { requestPersistent, storageEstimate } from '../store/quota';
import type { FreeableItem } from '../worker/api';
import { friendlyError, type FriendlyError } from './errors';
import { workerApi } from './worker-client';

export class StorageState {
  usage = $state<number | null>(null);
  quota = $state<number | null>(null);
  /** null: the browser does not say. */
  persisted = $state<boolean | null>(null);
  freeable = $state.raw<FreeableItem[]>([]);
  unavailable = $state<string | null>(null);
  error = $state.raw<FriendlyError | null>(null);
  busy = $state(false);
  /** The answer to the last "keep my data" request, for the person. */
  persistAnswer = $state<string>('');

  async refresh(): Promise<void> {
    try {
      const [est, report] = await Promise.all([storageEstimate(), workerApi().storageReport()]);
      this.usage = est?.usage ?? report.usage;
      this.quota = est && Number.isFinite(est.quota) ? est.quota : report.quota;
      this.persisted = est?.persisted ?? null;
      this.freeable = report.freeable;
      this.unavailable = report.unavailable;
    } catch (e) {
      this.error = friendlyError(e);
    }
  }

  async askPersistent(): Promise<void> {
    const ok = await requestPersistent();
    this.persistAnswer = ok
      ? 'The browser will keep this site’s data when disk space runs low.'
      : 'The browser did not grant persistent storage (it decides by how the site is used; bookmarking or installing it helps). Data may be cleared when disk space runs low.';
    await this.refresh();
  }

  async free(item: FreeableItem): Promise<void> {
    this.busy = true;
    this.error = null;
    try {
      await workerApi().freeStorage([{ kind: item.kind, id: item.id }]);
    } catch (e) {
      this.error = friendlyError(e);
    } finally {
      this.busy = false;
    }
    await this.refresh();
  }
}
