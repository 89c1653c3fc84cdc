// `webtune demo`: the built-in demo end to end, offline — the tiny pretrained demo model (public/demo)
// learns the facts in public/demo/dataset.jsonl (who has which pet, who plays where) with LoRA; the same prompts are answered before and
// after, and the loss is shown falling.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { acquireNodeContext } from '../gpu/node';
import { directoryFiles } from '../io/files-node';
import { openCheckpoint } from '../model/checkpoint';
import { generate } from '../model/generate';
import { GpuModel } from '../model/gpu-model';
import { InferenceSession } from '../model/inference';
import { TextTokenizer } from '../model/tokenizer';
import { exportPeftAdapter } from '../tune/adapter-io';
import { loadDatasetFiles } from '../tune/data/node';
import { Trainer } from '../tune/trainer';
import { progressLine } from './train';

const DEMO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'public', 'demo');
const PROMPTS = ['Which pet does Mia have?', 'Where does Tom like to play?', 'Tell me about Zoe.'];

export async function demoCmd(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { steps: { type: 'string', default: '60' }, lr: { type: 'string', default: '1e-2' }, out: { type: 'string', default: 'webtune-demo-adapter' }, json: { type: 'boolean' } },
  });
  const steps = Number(values.steps);
  const say = (s: string): void => void process.stdout.write(`${s}\n`);
  const ck = await openCheckpoint(directoryFiles(DEMO_DIR));
  const tok = TextTokenizer.fromText(ck.tokenizerJson!, ck.tokenizerConfigJson);
  const ds = await loadDatasetFiles(join(DEMO_DIR, 'dataset.jsonl'), null, tok, { maxLength: 32, validation: { count: 10 }, seed: 0 });
  const ctx = await acquireNodeContext();
  say(`webtune demo on ${ctx.summary.vendor} ${ctx.summary.architecture}${ctx.summary.isFallbackAdapter ? ' (CPU fallback)' : ''}`);
  say(`model: public/demo (${ck.config.hfClass}, ${(ck.config.hiddenSize)} hidden, ${ck.config.numLayers} layers); data: public/demo/dataset.jsonl (${ds.train.length} train / ${ds.validation?.length ?? 0} validation rows)`);
  const model = await GpuModel.load(ctx, ck);
  const session = new InferenceSession(model, 64);
  const answer = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const p of PROMPTS) {
      const r = await generate(session, tok.encode(p), { temperature: 0, maxNewTokens: 14, stopTokenIds: ck.generation.eosTokenIds });
      out.push(tok.decode(r.ids).split('\n')[0]);
    }
    return out;
  };
  const before = await answer();
  const trainer = new Trainer(ctx, model, { train: ds.train, validation: ds.validation, reference: null }, {
    method: { method: 'lora', lora: { r: 16, alpha: 32, dropout: 0, targets: ['all-linear'], rslora: false } },
    optimizer: { lr: Number(values.lr), beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
    schedule: 'constant',
    warmupSteps: 0,
    batchSize: 8,
    gradAccum: 1,
    steps,
    seed: 0,
    shuffle: true,
    evalEvery: Math.max(1, Math.floor(steps / 4)),
    padId: ck.config.padTokenId ?? 0,
  });
  say(`LoRA r=16 on all linear layers: ${trainer.plan.trainables.reduce((s, t) => s + t.param.shape.reduce((a, b) => a * b, 1), 0).toLocaleString('en-US')} trainable parameters, ${steps} steps`);
  const losses: number[] = [];
  const final = await trainer.run({
    onEvent: (e) => {
      if (e.kind !== 'step') return;
      losses.push(e.loss!);
      if (e.step === 1 || e.step % 10 === 0 || e.evalLoss !== undefined) say(progressLine(e));
    },
  });
  session.adapters = trainer.plan;
  const after = await answer();
  say('');
  for (let i = 0; i < PROMPTS.length; i++) {
    say(`prompt: ${PROMPTS[i]}`);
    say(`  before: ${JSON.stringify(before[i])}`);
    say(`  after:  ${JSON.stringify(after[i])}`);
  }
  mkdirSync(values.out!, { recursive: true });
  const files = await exportPeftAdapter(ctx, ck.config, trainer.plan, 'webtune/demo');
  for (const [n, d] of Object.entries(files)) writeFileSync(join(values.out!, n), d);
  say(`\nloss ${losses[0].toFixed(3)} → ${losses[losses.length - 1].toFixed(3)}; validation loss ${final.evalLoss?.toFixed(3)}; ${final.tokensPerSec.toFixed(0)} tokens/s`);
  say(`adapter saved to ${values.out} (PEFT format)`);
  if (values.json) say(JSON.stringify({ before, after, losses, evalLoss: final.evalLoss, tokensPerSec: final.tokensPerSec }));
  session.release();
  trainer.release();
  model.release();
  ctx.destroy();
}
