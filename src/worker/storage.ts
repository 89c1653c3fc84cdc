// The stored runs and the space they take, for the page's Runs and Storage panels: list, rename,
// delete, export / import as one archive file, who trains what, usage and quota, what can be freed.
import {
  acquireRunLock,
  deleteCheckpoint,
  deleteDataset,
  deleteModelFile,
  deleteRun,
  exportRunArchive,
  importRunArchive,
  latestOf,
  listCheckpoints,
  listFreeable,
  listRuns,
  renameRun,
  getRun,
  storageEstimate,
  RunNotFoundError,
  type CheckpointInfo,
  type RunRecord,
} from '../store';
import type { TrainEvent } from '../tune/trainer';
import type { FreeableKind, RunSummary, StorageReport, StoreApi } from './api';
import { BusyError } from './errors';
import { LockedRunError, lockHolderLabel, lockOptions, storedConfig, TAB_LABEL, type Stores } from './persist';

const UNFINISHED = new Set(['created', 'training', 'paused', 'stopped', 'failed']);

export class StoreService implements StoreApi {
  constructor(
    private readonly stores: Stores,
    /** The run this tab's worker trains now, if any. */
    private readonly liveRunId: () => string | null,
  ) {}

  async listRuns(): Promise<RunSummary[]> {
    const store = await this.stores.get();
    const [runs, checkpoints] = await Promise.all([listRuns(store), listCheckpoints(store)]);
    const byRun = new Map<string, CheckpointInfo[]>();
    for (const c of checkpoints) byRun.set(c.runId, [...(byRun.get(c.runId) ?? []), c]);
    const live = this.liveRunId();
    return Promise.all(runs.map(async (r) => summarize(r, latestOf(byRun.get(r.id) ?? []), r.id === live ? TAB_LABEL : await lockHolderLabel(store, r.id), r.id === live)));
  }

  async renameRun(id: string, name: string): Promise<void> {
    await renameRun(await this.stores.get(), id, name);
  }

  async deleteRun(id: string): Promise<void> {
    const store = await this.stores.get();
    const run = await getRun(store, id);
    if (!run) throw new RunNotFoundError(id);
    if (id === this.liveRunId()) throw new BusyError(`run "${run.name}" is training in this tab: stop it before deleting it`);
    // Hold the run's lock while deleting, so a tab training it is not pulled from under itself.
    const got = await acquireRunLock(id, lockOptions(store));
    if (!got.ok) throw new LockedRunError(run.name, got.heldBy);
    try {
      await deleteRun(store, id);
    } finally {
      await got.lock.release();
    }
  }

  async exportRun(id: string): Promise<{ fileName: string; blob: Blob }> {
    const { blob, fileName } = await exportRunArchive(await this.stores.get(), id);
    return { blob, fileName };
  }

  async importRun(file: Blob): Promise<RunSummary> {
    const store = await this.stores.get();
    const got = await importRunArchive(store, file);
    const checkpoint = got.checkpoint;
    return summarize(got.run, checkpoint, null, false);
  }

  async runHolder(id: string): Promise<string | null> {
    if (id === this.liveRunId()) return TAB_LABEL;
    return lockHolderLabel(await this.stores.get(), id);
  }

  async storageReport(): Promise<StorageReport> {
    const { store, reason } = await this.stores.tryGet();
    const est = await storageEstimate(store?.storage);
    return {
      usage: est?.usage ?? null,
      quota: est && Number.isFinite(est.quota) ? est.quota : null,
      freeable: store ? await listFreeable(store) : [],
      unavailable: reason,
    };
  }

  async freeStorage(items: { kind: FreeableKind; id: string }[]): Promise<void> {
    const store = await this.stores.get();
    for (const it of items) {
      switch (it.kind) {
        case 'old-checkpoint':
        case 'latest-checkpoint':
          await deleteCheckpoint(store, it.id);
          break;
        case 'model':
        case 'partial-download':
          await deleteModelFile(store, it.id);
          break;
        case 'dataset':
          await deleteDataset(store, it.id);
          break;
      }
    }
  }
}

function summarize(r: RunRecord, checkpoint: CheckpointInfo | null, lockedBy: string | null, live: boolean): RunSummary {
  const config = storedConfig(r.config);
  const history = (Array.isArray(r.history) ? r.history : []) as TrainEvent[];
  const steps = history.filter((e) => e && e.kind === 'step');
  const curve = { x: [] as number[], y: [] as number[] };
  let lastEvalLoss: number | null = null;
  let lastReferenceLoss: number | null = null;
  for (const e of steps) {
    if (typeof e.loss === 'number' && Number.isFinite(e.loss)) {
      curve.x.push(e.step);
      curve.y.push(e.loss);
    }
    if (typeof e.evalLoss === 'number') lastEvalLoss = e.evalLoss;
    if (typeof e.referenceLoss === 'number') lastReferenceLoss = e.referenceLoss;
  }
  const last = steps.at(-1);
  const step = checkpoint?.step ?? last?.step ?? 0;
  const totalSteps = last?.totalSteps ?? config?.settings.steps ?? 0;
  const unfinished = UNFINISHED.has(r.status) && (totalSteps === 0 || step < totalSteps);
  return {
    id: r.id,
    name: r.name,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    status: r.status,
    message: r.message,
    config,
    step,
    totalSteps,
    curve,
    lastLoss: curve.y.at(-1) ?? null,
    lastEvalLoss,
    lastReferenceLoss,
    tokensPerSec: typeof steps.at(-1)?.tokensPerSec === 'number' ? steps.at(-1)!.tokensPerSec : null,
    checkpoint: checkpoint ? { id: checkpoint.id, step: checkpoint.step, bytes: checkpoint.byteSize, savedAt: checkpoint.createdAt, reason: checkpoint.reason } : null,
    lockedBy,
    live,
    resumable: unfinished && !lockedBy && config !== null,
  };
}
