// Typed errors of the worker API itself (the layers below have their own). Each sets `name`, which
// comlink carries across the worker boundary, and says what to do next.

/** generate() before any model was loaded (or after a load failed). */
export class NoModelError extends Error {
  override name = 'NoModelError';
  constructor() {
    super('no model is loaded: load the demo model, a folder, or a Hub model first');
  }
}

/** A second generate() while one is running, or loadModel() while another load is running. */
export class BusyError extends Error {
  override name = 'BusyError';
}

/** The prompt cannot be turned into token ids (empty, no tokenizer, no chat template, ids out of range, too long). */
export class PromptError extends Error {
  override name = 'PromptError';
}

/** The picked or dropped files are not a model folder. */
export class ModelFolderError extends Error {
  override name = 'ModelFolderError';
}
