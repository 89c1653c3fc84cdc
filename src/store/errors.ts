// Typed errors of the store. Each sets `name` (comlink carries name and message across the worker
// boundary, not other fields) and its message says what happened and what to do next.
import type { FreeableItem } from './quota';

/** The browser refused to store more bytes (QuotaExceededError), or an estimate said it would. */
export class StorageQuotaError extends Error {
  override name = 'StorageQuotaError';
  constructor(
    message: string,
    /** Bytes the failed write needed. */
    readonly neededBytes: number,
    /** navigator.storage.estimate() at the time, when available. */
    readonly usage: number | null,
    readonly quota: number | null,
    /** What could be deleted to make room, largest first. */
    readonly freeable: readonly FreeableItem[],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class RunNotFoundError extends Error {
  override name = 'RunNotFoundError';
  constructor(readonly runId: string) {
    super(`run ${runId} is not in this browser's storage (deleted, perhaps from another tab): start a new run or import it from an archive`);
  }
}

export class CheckpointNotFoundError extends Error {
  override name = 'CheckpointNotFoundError';
  constructor(readonly checkpointId: string) {
    super(`checkpoint ${checkpointId} is not in this browser's storage (deleted, perhaps from another tab): pick another checkpoint from the run list`);
  }
}

/** A record exists but its bytes do not (or have the wrong size): should never happen, since both are written in one transaction. */
export class StoreCorruptError extends Error {
  override name = 'StoreCorruptError';
}

/** An archive file is not one webtune wrote, or is damaged. */
export class ArchiveFormatError extends Error {
  override name = 'ArchiveFormatError';
}

/** The database could not be opened or upgraded. */
export class StoreOpenError extends Error {
  override name = 'StoreOpenError';
}

/** The fallback lease of a run was taken over by another tab (this one stopped renewing it in time). */
export class RunLockLostError extends Error {
  override name = 'RunLockLostError';
  constructor(readonly runId: string, holder: string | null) {
    super(
      `another tab${holder ? ` (${holder})` : ''} took over run ${runId} after this tab stopped renewing its lock: training stopped here so the two cannot overwrite each other's checkpoints; continue in that tab, or close it and resume here`,
    );
  }
}
