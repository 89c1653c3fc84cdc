// `webtune train` and `webtune eval`: the training engine behind a terminal.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { acquireNodeContext } from '../gpu/node';
import { directoryFiles } from '../io/files-node';
import { readPeftAdapter } from '../io/peft';
import type { Checkpoint } from '../model/checkpoint';
import { openModel, type OpenedModel } from '../model/open';
import { GpuModel } from '../model/gpu-model';
import { TextTokenizer } from '../model/tokenizer';
import { exportPeftAdapter, loadAdapterIntoPlan } from '../tune/adapter-io';
import { formatStats, parseDataArgs, datasetStats, type Dataset } from '../tune/data';
import { loadDatasetFiles } from '../tune/data/node';
import type { MethodName } from '../tune/methods';
import type { ScheduleName } from '../tune/schedule';
import { Trainer, type TrainConfig, type TrainEvent, type TrainStateMeta } from '../tune/trainer';
import { modelFilesFromArg } from './source';
import { UsageError, log, num } from './args';


function int(v: string | undefined, name: string, fallback: number, min = 1): number {
  const n = num(v, name, fallback);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  return n;
}

export async function loadBase(model: string | undefined): Promise<{ opened: OpenedModel; ck: Checkpoint | null; tok: TextTokenizer; name: string }> {
  if (!model) throw new UsageError('--model is required');
  const opened = await openModel(await modelFilesFromArg(model, log));
  if (!opened.tokenizerJson) throw new UsageError(`${model}: tokenizer.json is missing; training needs the model's tokenizer`);
  const ck = opened.prequantized ? null : (opened.weights as Checkpoint);
  return { opened, ck, tok: TextTokenizer.fromText(opened.tokenizerJson, opened.tokenizerConfigJson), name: model };
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

export function progressLine(e: TrainEvent): string {
  const width = 20;
  const filled = Math.round((e.step / e.totalSteps) * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const parts = [
    `${bar} step ${e.step}/${e.totalSteps}`,
    e.loss !== undefined ? `loss ${e.loss.toFixed(4)}` : '',
    e.evalLoss !== undefined ? `val ${e.evalLoss.toFixed(4)} (ppl ${e.evalPerplexity!.toFixed(2)})` : '',
    e.referenceLoss !== undefined ? `ref ${e.referenceLoss.toFixed(4)}` : '',
    `${e.tokensPerSec.toFixed(0)} tok/s`,
    `ETA ${fmtTime(e.etaSec)}`,
  ];
  return parts.filter(Boolean).join('  ');
}

/** Save what a run produced: the adapter (LoRA) or a full HF checkpoint, plus the resumable state. */
async function saveOutputs(out: string, trainer: Trainer, opened: OpenedModel, baseName: string, withState: boolean): Promise<void> {
  mkdirSync(out, { recursive: true });
  const base = opened.weights as Checkpoint;
  if (trainer.plan.loraGroups.length > 0) {
    const files = await exportPeftAdapter(trainer.ctx, opened.config, trainer.plan, baseName);
    for (const [n, data] of Object.entries(files)) writeFileSync(join(out, n), data);
  } else {
    for (const [n, data] of Object.entries(await trainer.exportCheckpointFiles(base))) writeFileSync(join(out, n), data);
  }
  if (withState) {
    const dir = join(out, 'train_state');
    mkdirSync(dir, { recursive: true });
    const snap = await trainer.snapshot();
    // Write the tensors first, then the metadata: a state with metadata is complete.
    writeFileSync(join(dir, 'optimizer.safetensors.tmp'), snap.tensors);
    writeFileSync(join(dir, 'state.json.tmp'), JSON.stringify(snap.meta));
    const { renameSync } = await import('node:fs');
    renameSync(join(dir, 'optimizer.safetensors.tmp'), join(dir, 'optimizer.safetensors'));
    renameSync(join(dir, 'state.json.tmp'), join(dir, 'state.json'));
  }
}

export async function trainCmd(argv: string[]): Promise<void> {
  // Aliases from the issue's flag names to the data parser's.
  const mapped = argv.map((a) => (a === '--eval-data' ? '--val' : a === '--packing' ? '--pack' : a));
  const data = parseDataArgs(mapped, { maxLength: 256 });
  const { values } = parseArgs({
    args: data.rest,
    options: {
      model: { type: 'string' },
      'reference-data': { type: 'string' },
      method: { type: 'string', default: 'lora' },
      r: { type: 'string' },
      alpha: { type: 'string' },
      dropout: { type: 'string' },
      targets: { type: 'string' },
      rslora: { type: 'boolean' },
      'init-adapter': { type: 'string' },
      'trainable-layers': { type: 'string' },
      lr: { type: 'string' },
      'weight-decay': { type: 'string' },
      betas: { type: 'string' },
      eps: { type: 'string' },
      schedule: { type: 'string', default: 'constant' },
      'warmup-steps': { type: 'string' },
      'max-grad-norm': { type: 'string' },
      'batch-size': { type: 'string' },
      'grad-accum': { type: 'string' },
      epochs: { type: 'string' },
      steps: { type: 'string' },
      seed: { type: 'string' },
      'no-shuffle': { type: 'boolean' },
      'eval-every': { type: 'string' },
      'max-eval-batches': { type: 'string' },
      'save-every': { type: 'string' },
      out: { type: 'string' },
      resume: { type: 'string' },
      'json-log': { type: 'string' },
      quiet: { type: 'boolean' },
    },
  });
  if (!values.out) throw new UsageError('--out DIR is required (where the adapter / checkpoint and the resumable state go)');
  const method = values.method as MethodName;
  if (!['lora', 'qlora', 'full', 'partial', 'bitfit'].includes(method)) throw new UsageError(`--method must be lora, qlora, full, partial or bitfit, got "${method}"`);
  const schedule = values.schedule as ScheduleName;
  if (!['constant', 'linear', 'cosine'].includes(schedule)) throw new UsageError(`--schedule must be constant, linear or cosine, got "${schedule}"`);
  const betas = (values.betas ?? '0.9,0.999').split(',').map(Number);
  if (betas.length !== 2 || betas.some((b) => !(b >= 0 && b < 1))) throw new UsageError(`--betas must be two numbers in [0, 1), got "${values.betas}"`);

  const { opened, tok, name } = await loadBase(values.model);
  if (opened.prequantized && method !== 'qlora' && method !== 'lora') {
    throw new UsageError(`${name} is a 4-bit (bitsandbytes) checkpoint: only LoRA/QLoRA can train on it`);
  }
  const seed = int(values.seed, 'seed', 0, 0);
  log(`loading data ${data.train}${data.validation ? ` (validation ${data.validation})` : ''}`);
  const ds: Dataset = await loadDatasetFiles(data.train, data.validation, tok, {
    ...data.options,
    seed: data.options.seed ?? seed,
    validation: data.validation ? null : (data.options.validation ?? null),
  });
  const stats = datasetStats(ds);
  if (!values.quiet) log(formatStats(stats, 10));
  let reference: Dataset | null = null;
  if (values['reference-data']) {
    reference = await loadDatasetFiles(values['reference-data'], null, tok, { maxLength: data.options.maxLength, lossOn: 'all', validation: null });
  }
  const initAdapter = values['init-adapter'] ? await readPeftAdapter(directoryFiles(values['init-adapter'])) : null;
  const lora = initAdapter
    ? initAdapter.lora
    : {
        r: int(values.r, 'r', 8),
        alpha: num(values.alpha, 'alpha', 16),
        dropout: num(values.dropout, 'dropout', 0.05),
        targets: values.targets ? values.targets.split(',').map((s) => s.trim()).filter(Boolean) : [],
        rslora: values.rslora ?? false,
      };
  const config: TrainConfig = {
    method: { method, lora, trainableLayers: values['trainable-layers'] ? int(values['trainable-layers'], 'trainable-layers', 1) : undefined },
    optimizer: {
      lr: num(values.lr, 'lr', method === 'lora' || method === 'qlora' ? 2e-4 : 5e-5),
      beta1: betas[0],
      beta2: betas[1],
      eps: num(values.eps, 'eps', 1e-8),
      weightDecay: num(values['weight-decay'], 'weight-decay', 0),
      maxGradNorm: num(values['max-grad-norm'], 'max-grad-norm', 1),
    },
    schedule,
    warmupSteps: int(values['warmup-steps'], 'warmup-steps', 0, 0),
    batchSize: int(values['batch-size'], 'batch-size', 4),
    gradAccum: int(values['grad-accum'], 'grad-accum', 1),
    steps: values.steps ? int(values.steps, 'steps', 1) : undefined,
    epochs: values.epochs ? num(values.epochs, 'epochs', 1) : undefined,
    seed,
    shuffle: !values['no-shuffle'],
    evalEvery: int(values['eval-every'], 'eval-every', 0, 0),
    maxEvalBatches: values['max-eval-batches'] ? int(values['max-eval-batches'], 'max-eval-batches', 1) : undefined,
    padId: opened.config.padTokenId ?? tok.eosTokenId ?? 0,
  };
  const ctx = await acquireNodeContext();
  if (process.env.WEBTUNE_WEBGPU_FALLBACK) log(`adapter: ${ctx.summary.vendor} ${ctx.summary.architecture} (CPU fallback: expect low speed)`);
  const model = await GpuModel.load(ctx, opened.weights, undefined, { weightDType: method === 'qlora' || opened.prequantized ? 'nf4' : 'f32' });
  if (model.weightDType === 'nf4') {
    const f = model.linearWeightFootprint();
    log(`4-bit base: ${((8 * f.bytes) / f.params).toFixed(3)} bits per parameter over ${f.params.toLocaleString('en-US')} linear-layer weights (measured from the GPU buffers)`);
  }
  const trainer = new Trainer(ctx, model, { train: ds.train, validation: ds.validation, reference: reference?.train ?? null }, config);
  if (initAdapter) loadAdapterIntoPlan(ctx, trainer.plan, initAdapter);
  if (values.resume) {
    const dir = existsSync(join(values.resume, 'train_state', 'state.json')) ? join(values.resume, 'train_state') : values.resume;
    if (!existsSync(join(dir, 'state.json'))) throw new UsageError(`--resume ${values.resume}: no train_state/state.json there`);
    const meta = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as TrainStateMeta;
    await trainer.restore(meta, new Uint8Array(readFileSync(join(dir, 'optimizer.safetensors'))));
    log(`resumed at step ${trainer.step} of ${trainer.totalSteps}`);
  }
  const mem = ctx.memory.report();
  log(`method ${method}: ${trainer.plan.trainables.reduce((s, t) => s + t.param.shape.reduce((a, b) => a * b, 1), 0).toLocaleString('en-US')} trainable parameters; ${trainer.totalSteps} steps; GPU memory ${(mem.liveBytes / 2 ** 20).toFixed(1)} MiB`);
  ctx.memory.resetPeak();
  const jsonLog = values['json-log'];
  if (jsonLog) writeFileSync(jsonLog, '');
  const tty = process.stderr.isTTY;
  let interrupted = 0;
  const onSigint = (): void => {
    // A terminal's Ctrl-C may arrive twice (directly and forwarded by bin/webtune.mjs): one second apart is one press.
    if (interrupted && Date.now() - interrupted > 1000) process.exit(130);
    if (interrupted) return;
    interrupted = Date.now();
    log('\ninterrupted: finishing this step and saving a resumable state (Ctrl-C again to quit at once)');
    trainer.stop();
  };
  process.on('SIGINT', onSigint);
  const saveEvery = int(values['save-every'], 'save-every', 0, 0);
  const final = await trainer.run({
    onEvent: (e) => {
      if (e.kind === 'step' && jsonLog) {
        const rec: Record<string, number | boolean> = { step: e.step, loss: e.loss!, lr: e.lr!, grad_norm: e.gradNorm!, tokens: e.tokens, tokens_per_s: e.tokensPerSec };
        if (e.evalLoss !== undefined) rec.eval_loss = e.evalLoss;
        if (e.referenceLoss !== undefined) rec.reference_loss = e.referenceLoss;
        if (e.skipped) rec.skipped = true;
        appendFileSync(jsonLog, `${JSON.stringify(rec)}\n`);
      }
      if (values.quiet) return;
      if (e.kind === 'step') {
        const line = progressLine(e);
        if (tty) process.stderr.write(`\r\x1b[K${line}`);
        else if (e.evalLoss !== undefined || e.step % 10 === 0 || e.step === 1) log(line);
        if (tty && e.evalLoss !== undefined) process.stderr.write('\n');
      }
    },
    afterStep: async (step) => {
      if (saveEvery > 0 && step % saveEvery === 0 && step < trainer.totalSteps) await saveOutputs(values.out!, trainer, opened, name, true);
    },
  });
  process.off('SIGINT', onSigint);
  if (tty && !values.quiet) process.stderr.write('\n');
  await saveOutputs(values.out, trainer, opened, name, true);
  const peak = ctx.memory.report();
  log(
    final.kind === 'stopped'
      ? `stopped at step ${final.step}; saved to ${values.out} (resume with --resume ${values.out})`
      : `done: ${final.step} steps, ${final.tokens} tokens at ${final.tokensPerSec.toFixed(0)} tokens/s${final.evalLoss !== undefined ? `, validation loss ${final.evalLoss.toFixed(4)}` : ''}; peak GPU memory ${(peak.peakBytes / 2 ** 20).toFixed(2)} MiB; saved to ${values.out}`,
  );
  if (final.kind !== 'stopped') {
    const roles = Object.entries(peak.peakByRole).filter(([, b]) => b > 0);
    log(`peak GPU memory by role (MiB): ${roles.map(([r, b]) => `${r} ${(b / 2 ** 20).toFixed(2)}`).join(', ')}`);
  }
  trainer.release();
  model.release();
  ctx.destroy();
}

export async function evalCmd(argv: string[]): Promise<void> {
  const data = parseDataArgs(argv, { maxLength: 256 });
  const { values } = parseArgs({
    args: data.rest,
    options: { model: { type: 'string' }, adapter: { type: 'string' }, 'batch-size': { type: 'string' }, json: { type: 'boolean' } },
  });
  const { opened, tok } = await loadBase(values.model);
  const ds = await loadDatasetFiles(data.train, null, tok, { ...data.options, validation: null });
  const adapter = values.adapter ? await readPeftAdapter(directoryFiles(values.adapter)) : null;
  const ctx = await acquireNodeContext();
  const model = await GpuModel.load(ctx, opened.weights);
  const trainer = new Trainer(ctx, model, { train: ds.train, validation: null, reference: null }, {
    method: adapter ? { method: 'lora', lora: adapter.lora } : { method: 'lora', lora: { r: 1, alpha: 1, dropout: 0, targets: [], rslora: false } },
    optimizer: { lr: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 },
    schedule: 'constant',
    warmupSteps: 0,
    batchSize: int(values['batch-size'], 'batch-size', 4),
    gradAccum: 1,
    steps: 1,
    seed: 0,
    shuffle: false,
    evalEvery: 0,
    padId: opened.config.padTokenId ?? tok.eosTokenId ?? 0,
  });
  // Without an adapter the LoRA plan's B is zero: the model is exactly the base model.
  if (adapter) loadAdapterIntoPlan(ctx, trainer.plan, adapter);
  const r = await trainer.evaluate(ds.train);
  if (!r) throw new UsageError(`${data.train}: no target tokens to evaluate`);
  if (values.json) process.stdout.write(`${JSON.stringify({ loss: r.loss, perplexity: r.perplexity, examples: ds.train.length })}\n`);
  else process.stdout.write(`loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(3)}  (${ds.train.length} examples)\n`);
  trainer.release();
  model.release();
  ctx.destroy();
}
