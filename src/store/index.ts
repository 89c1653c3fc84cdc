// webtune's local storage (IndexedDB via idb): runs, checkpoints, cached models, datasets, run locks.
export * from './schema';
export * from './db';
export * from './errors';
export * from './runs';
export * from './checkpoints';
export * from './models';
export * from './datasets';
export * from './quota';
export * from './archive';
export * from './lock';
export * from './autosave';
