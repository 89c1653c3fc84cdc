// Node: turn `--model M` (a folder, an http(s) URL base or a Hub id) into ModelFiles.
import { existsSync, statSync } from 'node:fs';
import { diskDownloadCache } from '../io/cache-node';
import type { ModelFiles } from '../io/files';
import { directoryFiles } from '../io/files-node';
import { downloadModel, type DownloadProgress } from '../io/hub';
import { formatBytes } from '../model/memory';

export async function modelFilesFromArg(model: string, log: (line: string) => void): Promise<ModelFiles> {
  if (existsSync(model) && statSync(model).isDirectory()) return directoryFiles(model);
  if (existsSync(model)) throw new Error(`--model ${model}: a model is a folder (config.json, model.safetensors, tokenizer.json), not a file`);
  let lastLine = 0;
  const onProgress = (p: DownloadProgress): void => {
    const now = Date.now();
    if (now - lastLine < 500 && !p.done) return;
    lastLine = now;
    const eta = p.etaSec !== null && Number.isFinite(p.etaSec) ? `, ETA ${Math.ceil(p.etaSec)} s` : '';
    const total = p.overallTotalBytes === null ? '?' : formatBytes(p.overallTotalBytes);
    log(`downloading ${p.file}: ${formatBytes(p.overallLoadedBytes)} / ${total}${p.fromCache ? ' (cached)' : ''}${eta}`);
  };
  const res = await downloadModel(model, {
    cache: diskDownloadCache(),
    token: process.env.HF_TOKEN,
    onProgress,
    retries: 2,
  });
  if (res.absent.length) log(`note: ${res.absent.join(', ')} not present in ${model}`);
  return res.files;
}
