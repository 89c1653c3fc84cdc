// Errors from the worker (their `name` survives comlink) → what a person reads: a short title, the
// error's own message (the layers below write it to name the file / tensor / architecture at fault),
// and what to do next.

export interface FriendlyError {
  title: string;
  message: string;
  hint: string;
  /** The error's class name, shown small for bug reports. */
  name: string;
}

const KNOWN: Record<string, { title: string; hint: string }> = {
  UnsupportedModelError: {
    title: 'This model is not supported',
    hint: 'Pick a Llama-family, Qwen2 or GPT-2 model (for example SmolLM2, TinyLlama, Qwen2.5 or DistilGPT-2).',
  },
  ConfigError: { title: 'config.json has a problem', hint: 'Check that the folder holds the model’s original config.json.' },
  CheckpointError: {
    title: 'The model files do not fit together',
    hint: 'The weights do not match config.json: re-download the model, or pick the folder it was saved to.',
  },
  SafetensorsFormatError: {
    title: 'A weights file is damaged',
    hint: 'The .safetensors file is truncated or corrupt: download it again.',
  },
  MissingFileError: {
    title: 'A file is missing',
    hint: 'Pick the whole model folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).',
  },
  ModelFolderError: { title: 'That is not a model folder', hint: 'Pick the folder that holds config.json and model.safetensors.' },
  TokenizerError: { title: 'The tokenizer could not be read', hint: 'tokenizer.json or tokenizer_config.json is damaged: download it again.' },
  InvalidModelSourceError: {
    title: 'That is not a Hub id or URL',
    hint: 'Type a Hub id such as HuggingFaceTB/SmolLM2-135M, or an http(s) address of a folder with the model files.',
  },
  HubFileNotFoundError: { title: 'Not found', hint: 'Check the spelling of the model id (and the revision after @, if any).' },
  HubAuthError: {
    title: 'This model needs permission',
    hint: 'It is gated or private: accept its licence on its Hub page, or pick an open model.',
  },
  HubHttpError: { title: 'The server refused the download', hint: 'Try again in a minute.' },
  HubNetworkError: {
    title: 'Could not reach the server',
    hint: 'Check your connection. Offline, only models downloaded before in this browser can be loaded.',
  },
  HubIndexError: { title: 'The model’s shard index is damaged', hint: 'model.safetensors.index.json could not be used.' },
  DownloadInterruptedError: { title: 'The download was interrupted', hint: 'Load again: it resumes where it stopped.' },
  DownloadCancelledError: { title: 'Download cancelled', hint: 'Load again to resume; what arrived is kept.' },
  DownloadIntegrityError: { title: 'The download was corrupted', hint: 'The bad copy was discarded: load again to download it afresh.' },
  QuotaExceededError: { title: 'Browser storage is full', hint: 'Free space for this site (browser settings → site data), or pick a smaller model.' },
  WebGpuUnavailableError: { title: 'No WebGPU', hint: 'Use Chrome or Edge 113+, or Safari 26+ (see “Your GPU” above).' },
  GpuOutOfMemoryError: { title: 'Not enough GPU memory', hint: 'Pick a smaller model, or close other GPU-heavy tabs.' },
  DeviceLostError: { title: 'The GPU was lost', hint: 'The graphics driver reset or reclaimed the GPU: try again (a new device is acquired), or reload the page.' },
  KernelCompileError: { title: 'A GPU kernel failed to compile', hint: 'This is a bug in webtune or the browser’s WebGPU: please report it with the message below.' },
  KernelValidationError: { title: 'A GPU kernel was rejected', hint: 'This is a bug in webtune: please report it with the message below.' },
  NoModelError: { title: 'No model loaded', hint: 'Load a model in the Model panel first.' },
  StorageQuotaError: { title: 'The browser’s storage is full', hint: 'Delete old checkpoints, cached models or datasets in the Storage panel, then try again.' },
  LockedRunError: { title: 'This run is open in another tab', hint: 'Only one tab can train a run at a time.' },
  RunLockLostError: { title: 'Another tab took this run over', hint: 'Continue in that tab, or close it and resume here.' },
  ResumeError: { title: 'This run cannot be resumed yet', hint: '' },
  RunNotFoundError: { title: 'This run is gone', hint: 'It was deleted, perhaps from another tab.' },
  CheckpointNotFoundError: { title: 'This checkpoint is gone', hint: 'It was deleted, perhaps from another tab.' },
  StoreCorruptError: { title: 'A stored checkpoint is damaged', hint: 'Delete it in the Storage panel; the run can start again from the beginning.' },
  StoreOpenError: { title: 'The browser’s storage cannot be used', hint: 'Private windows in some browsers turn it off: runs and downloaded models are not kept.' },
  ArchiveFormatError: { title: 'That is not a webtune run archive', hint: 'Pick a .webtune file exported from the Runs panel.' },
  AdapterError: {
    title: 'This adapter cannot be used with the loaded model',
    hint: 'Pick adapter_config.json and adapter_model.safetensors of a LoRA adapter made for this model (load its base model first).',
  },
  BusyError: { title: 'Busy', hint: 'Wait for the current task, or stop it.' },
  PromptError: { title: 'Cannot use this prompt', hint: '' },
  ContextLengthError: { title: 'Too long for the model', hint: 'Shorten the prompt or ask for fewer new tokens.' },
  SamplingError: { title: 'A sampling setting is out of range', hint: '' },
};

export function friendlyError(e: unknown): FriendlyError {
  const err = e instanceof Error ? e : new Error(String(e));
  const name = err.name || 'Error';
  const known = KNOWN[name];
  return {
    title: known?.title ?? 'Something went wrong',
    message: err.message || name,
    hint: known?.hint ?? 'If this keeps happening, reload the page and try again.',
    name,
  };
}
