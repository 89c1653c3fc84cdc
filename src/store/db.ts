// Opening the store, and the few helpers every store module shares.
import { openDB, type IDBPDatabase } from 'idb';
import { StoreOpenError } from './errors';
import { DB_NAME, DB_VERSION, upgradeSchema, type WebtuneDB } from './schema';

/** The part of navigator.storage the store uses (injectable: tests pass a fake). */
export interface StorageManagerLike {
  estimate(): Promise<StorageEstimate>;
  /** Window only: not available inside a worker. */
  persist?(): Promise<boolean>;
  persisted?(): Promise<boolean>;
}

export interface Store {
  readonly db: IDBPDatabase<WebtuneDB>;
  readonly name: string;
  /** navigator.storage, or null where there is none (old browsers, Node without a fake). */
  readonly storage: StorageManagerLike | null;
  close(): void;
}

export interface OpenStoreOptions {
  /** Database name (default 'webtune'; tests use one per test). */
  name?: string;
  /** Schema version to open (default: the newest). Older versions are for upgrade tests only. */
  version?: number;
  storage?: StorageManagerLike | null;
  /**
   * Another tab wants to upgrade the schema: this connection has been closed so it can. The page
   * should ask for a reload (this tab's code is older than the other tab's).
   */
  onVersionChange?: () => void;
  /** This open waits for another tab with an older schema to close its connection. */
  onBlocked?: () => void;
}

export function defaultStorageManager(): StorageManagerLike | null {
  const nav = (globalThis as { navigator?: { storage?: StorageManagerLike } }).navigator;
  return nav?.storage && typeof nav.storage.estimate === 'function' ? nav.storage : null;
}

export async function openStore(options: OpenStoreOptions = {}): Promise<Store> {
  const name = options.name ?? DB_NAME;
  const version = options.version ?? DB_VERSION;
  if (typeof indexedDB === 'undefined') {
    throw new StoreOpenError('this browser has no IndexedDB (private mode in some browsers turns it off): runs and checkpoints cannot be kept');
  }
  let db: IDBPDatabase<WebtuneDB>;
  let migration: { from: number; done: Promise<void> } | null = null;
  try {
    db = await openDB<WebtuneDB>(name, version, {
      upgrade(d, oldVersion, newVersion, tx) {
        migration = { from: oldVersion, done: upgradeSchema(d as unknown as IDBPDatabase<unknown>, oldVersion, newVersion ?? version, tx as never) };
        migration.done.catch(() => {});
      },
      blocked: () => options.onBlocked?.(),
      blocking() {
        db.close();
        options.onVersionChange?.();
      },
    });
  } catch (e) {
    const m = migration as { from: number; done: Promise<void> } | null;
    const failed = m ? await m.done.then(() => null, (x: unknown) => x as Error) : null;
    if (m && failed) {
      throw new StoreOpenError(
        `could not upgrade the local database "${name}" from version ${m.from} to ${version} (${failed.message}): nothing was changed; reload to try again, or report this bug`,
        { cause: failed },
      );
    }
    const err = e as Error;
    if (err?.name === 'VersionError') {
      throw new StoreOpenError(`the stored data was written by a newer version of webtune (schema newer than ${version}): reload the page to get the newer version`, { cause: e });
    }
    throw new StoreOpenError(`could not open the local database "${name}": ${err?.message ?? String(e)}`, { cause: e });
  }
  return { db, name, storage: options.storage === undefined ? defaultStorageManager() : options.storage, close: () => db.close() };
}

/** A fresh random id (UUID v4 where available). */
export function newId(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** sha256 of the bytes, hex. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', exact(bytes) as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Structured clone copies a view's whole ArrayBuffer: store exactly the bytes in view (a subarray of
 * a big read-back buffer would otherwise store the whole buffer).
 */
export function exact(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice();
}

/** 1536 → "1.54 KB": three significant digits, decimal units (as browsers show storage). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return `${n} bytes`;
  if (n < 1000) return `${n} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[u]}`;
}
