// Pretrain the built-in demo model with webtune's own trainer, on the corpus of scripts/demo-corpus.ts.
//   node scripts/webgpu-env.mjs tsx scripts/pretrain-demo.ts [steps]      (npm run demo:pretrain)
// 1. scripts/make-demo-model.ts writes public/demo with a seeded random initialisation and the tokenizer;
// 2. this script trains every weight (full fine-tuning = pretraining here) on the generated stories;
// 3. make-demo-model.ts embeds the trained weights. Everything is seeded: the same command gives the
//    same weights on the same adapter (other adapters may differ in the last bits of f32 rounding).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireNodeContext } from '../src/gpu/node';
import { directoryFiles } from '../src/io/files-node';
import { openCheckpoint } from '../src/model/checkpoint';
import { GpuModel } from '../src/model/gpu-model';
import { TextTokenizer } from '../src/model/tokenizer';
import { loadDataset } from '../src/tune/data';
import { Trainer } from '../src/tune/trainer';
import { demoCorpus } from './demo-corpus';

const root = join(import.meta.dirname, '..');
const demo = join(root, 'public', 'demo');
const steps = Number(process.argv[2] ?? 800);
const tsx = join(root, 'node_modules', '.bin', 'tsx');

execFileSync(tsx, [join(root, 'scripts', 'make-demo-model.ts')], { stdio: 'inherit' });
const ck = await openCheckpoint(directoryFiles(demo));
const tok = TextTokenizer.fromText(ck.tokenizerJson!, ck.tokenizerConfigJson);
const ds = loadDataset({ train: { name: 'demo-corpus.txt', text: demoCorpus() } }, tok, {
  maxLength: 64,
  lossOn: 'all',
  txtMode: 'chunk',
  validation: { count: 64 },
  seed: 0,
});
const ctx = await acquireNodeContext();
const model = await GpuModel.load(ctx, ck);
const trainer = new Trainer(ctx, model, { train: ds.train, validation: ds.validation, reference: null }, {
  method: { method: 'full' },
  optimizer: { lr: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
  schedule: 'cosine',
  warmupSteps: Math.min(50, Math.floor(steps / 10)),
  batchSize: 16,
  gradAccum: 1,
  steps,
  seed: 0,
  shuffle: true,
  evalEvery: Math.max(1, Math.floor(steps / 8)),
  maxEvalBatches: 4,
  padId: ck.config.padTokenId ?? 0,
});
process.stderr.write(`pretraining the demo model: ${ds.train.length} blocks of 64 tokens, ${steps} steps on ${ctx.summary.architecture || ctx.summary.vendor}\n`);
const final = await trainer.run({
  onEvent: (e) => {
    if (e.kind === 'step' && (e.step % 25 === 0 || e.evalLoss !== undefined)) {
      process.stderr.write(
        `step ${e.step}/${e.totalSteps} loss ${e.loss!.toFixed(3)}${e.evalLoss !== undefined ? ` val ${e.evalLoss.toFixed(3)}` : ''} ${e.tokensPerSec.toFixed(0)} tok/s\n`,
      );
    }
  },
});
const dir = mkdtempSync(join(tmpdir(), 'webtune-demo-'));
const weights = join(dir, 'model.safetensors');
writeFileSync(weights, await trainer.exportModelSafetensors(ck));
writeFileSync(
  join(demo, 'pretraining.json'),
  `${JSON.stringify({ command: `npm run demo:pretrain -- ${steps}`, steps, finalLoss: final.loss, validationLoss: final.evalLoss, tokens: final.tokens, adapter: ctx.summary.architecture || ctx.summary.vendor }, null, 2)}\n`,
);
trainer.release();
model.release();
ctx.destroy();
execFileSync(tsx, [join(root, 'scripts', 'make-demo-model.ts'), weights], { stdio: 'inherit' });
process.stderr.write(`done: validation loss ${final.evalLoss?.toFixed(3)}; weights embedded in public/demo\n`);
