// The `webtune` command-line interface: a thin front door onto the same core as the web app.
//   webtune info --model M
//   webtune generate --model M (--prompt TEXT | --prompt-ids 1,2,3) [--chat] [--max-new-tokens N]
//                    [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--json]
import { parseArgs } from 'node:util';
import { acquireNodeContext } from '../gpu/node';
import type { Checkpoint, GenerationDefaults } from '../model/checkpoint';
import { openModel } from '../model/open';
import { writeBnbCheckpoint } from '../io/bnb';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parameterCount } from '../model/config';
import { generate, TextStreamer } from '../model/generate';
import { GpuModel } from '../model/gpu-model';
import { InferenceSession } from '../model/inference';
import { formatBytes, inferencePlan } from '../model/memory';
import { TextTokenizer } from '../model/tokenizer';
import { directoryFiles } from '../io/files-node';
import { readPeftAdapter } from '../io/peft';
import { loadAdapterIntoPlan } from '../tune/adapter-io';
import { floatWeights, mergedOnnx, mergeLora, type MergeDType } from '../tune/merge';
import { exportOnnx, ONNX_OPSET } from '../model/onnx';
import { planMethod, releasePlan, type MethodPlan } from '../tune/methods';
import { modelFilesFromArg } from './source';
import { demoCmd } from './demo';
import { evalCmd, trainCmd } from './train';
import { UsageError, log, num } from './args';

const USAGE = `usage:
  webtune info --model M
  webtune train --model M --data FILE [--eval-data FILE] [--reference-data FILE] --method lora|qlora|full|partial|bitfit
                [--r 8 --alpha 16 --dropout 0.05 --targets q_proj,v_proj --rslora] [--init-adapter DIR]
                [--trainable-layers N] [--lr 2e-4 --weight-decay 0 --betas 0.9,0.999 --eps 1e-8]
                [--schedule constant|linear|cosine --warmup-steps N] [--max-grad-norm 1.0] [--batch-size B]
                [--grad-accum N] [--seq-len L] [--packing] [--epochs E | --steps N] [--seed S] [--no-shuffle]
                [--eval-every N] [--save-every N] --out DIR [--resume DIR] [--json-log FILE]
  webtune eval --model M [--adapter DIR] --data FILE [--json]
  webtune quantize --model M --out DIR [--blocksize 64] [--no-double-quant]
  webtune merge --model M --adapter DIR --out DIR [--dtype f32|f16|bf16] [--nf4-base]
                (the adapter merged into the weights: a plain Hugging Face model folder; --nf4-base merges
                into the 4-bit base a QLoRA adapter was trained on)
  webtune onnx --model M [--adapter DIR [--nf4-base]] --out FILE.onnx
                (one ONNX file, opset 17, with KV cache in Optimum's layout; the adapter merged in when given)
  webtune demo [--steps N] [--out DIR]   (fine-tunes the built-in demo model with LoRA, offline)
  webtune generate --model M (--prompt TEXT | --prompt-ids 1,2,3) [--chat] [--max-new-tokens N]
                   [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--json]
                   [--adapter DIR] [--weights-dtype f32|f16]
M is a model folder, an http(s) URL of one, or a Hugging Face Hub id (org/name[@revision]).
--temperature 0 is greedy decoding; --prompt-ids bypasses the tokenizer.`;


async function loadCheckpoint(model: string | undefined) {
  if (!model) throw new UsageError('--model is required');
  const opened = await openModel(await modelFilesFromArg(model, log));
  const generation: GenerationDefaults = opened.prequantized
    ? { eosTokenIds: opened.eosTokenIds, bosTokenId: opened.config.bosTokenId }
    : (opened.weights as Checkpoint).generation;
  return { ...opened, tensors: opened.weights.tensors, generation };
}

async function info(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { model: { type: 'string' }, json: { type: 'boolean' } } });
  const ck = await loadCheckpoint(values.model);
  const c = ck.config;
  const dtypes = new Map<string, number>();
  let params = 0;
  for (const [name, t] of ck.tensors) {
    const n = t.info.shape.reduce((a, b) => a * b, 1);
    params += n;
    dtypes.set(t.info.dtype, (dtypes.get(t.info.dtype) ?? 0) + n);
    void name;
  }
  const plan32 = inferencePlan(c, { weightDType: 'f32', contextLength: Math.min(c.maxPositions, 2048) });
  const plan16 = inferencePlan(c, { weightDType: 'f16', contextLength: Math.min(c.maxPositions, 2048) });
  const out = {
    architecture: c.hfClass,
    parameters: parameterCount(c),
    parametersInFiles: params,
    dtypes: Object.fromEntries(dtypes),
    layers: c.numLayers,
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    intermediate: c.intermediateSize,
    vocab: c.vocabSize,
    maxPositions: c.maxPositions,
    tiedEmbeddings: c.tieWordEmbeddings,
    tokenizer: ck.tokenizerJson ? 'tokenizer.json' : null,
    memoryPlan: { f32: plan32, f16: plan16 },
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const lines = [
    `architecture   ${c.hfClass} (${c.architecture})`,
    `parameters     ${out.parameters.toLocaleString('en-US')}`,
    `dtypes         ${[...dtypes].map(([d, n]) => `${d} ${n.toLocaleString('en-US')}`).join(', ')}`,
    `shape          ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} KV) × ${c.headDim}, MLP ${c.intermediateSize}, vocab ${c.vocabSize}, context ${c.maxPositions}`,
    `tokenizer      ${out.tokenizer ?? 'none (use --prompt-ids)'}`,
    `memory plan    weights f32 ${formatBytes(plan32.weightBytes)} / f16 ${formatBytes(plan16.weightBytes)}; ` +
      `KV cache (${Math.min(c.maxPositions, 2048)} tokens) ${formatBytes(plan32.kvCacheBytes)}; ` +
      `activations ${formatBytes(plan32.activationBytes)}; total f32 ${formatBytes(plan32.totalBytes)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function generateCmd(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      adapter: { type: 'string' },
      prompt: { type: 'string' },
      'prompt-ids': { type: 'string' },
      chat: { type: 'boolean' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'repetition-penalty': { type: 'string' },
      seed: { type: 'string' },
      'weights-dtype': { type: 'string', default: 'f32' },
      json: { type: 'boolean' },
    },
  });
  const wd = values['weights-dtype'];
  if (wd !== 'f32' && wd !== 'f16') throw new UsageError(`--weights-dtype must be f32 or f16, got "${wd}"`);
  if ((values.prompt === undefined) === (values['prompt-ids'] === undefined)) {
    throw new UsageError('give exactly one of --prompt TEXT or --prompt-ids 1,2,3');
  }
  const ck = await loadCheckpoint(values.model);
  const tok = ck.tokenizerJson ? TextTokenizer.fromText(ck.tokenizerJson, ck.tokenizerConfigJson) : null;
  let promptIds: number[];
  if (values['prompt-ids'] !== undefined) {
    promptIds = values['prompt-ids'].split(',').map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 0 || n >= ck.config.vocabSize) {
        throw new UsageError(`--prompt-ids: "${s}" is not a token id in [0, ${ck.config.vocabSize})`);
      }
      return n;
    });
  } else {
    if (!tok) throw new UsageError(`${ck.files.name} has no tokenizer.json: use --prompt-ids`);
    let text = values.prompt!;
    if (values.chat) {
      if (!tok.hasChatTemplate) throw new UsageError('--chat: this model has no chat template in tokenizer_config.json');
      text = tok.applyChatTemplate([{ role: 'user', content: text }], true);
      promptIds = tok.encode(text, false);
    } else promptIds = tok.encode(text, true);
  }
  const maxNew = num(values['max-new-tokens'], 'max-new-tokens', 64);
  const temperature = num(values.temperature, 'temperature', ck.generation.temperature ?? 0);
  const ctx = await acquireNodeContext();
  if (process.env.WEBTUNE_WEBGPU_FALLBACK) log(`adapter: ${ctx.summary.vendor} ${ctx.summary.architecture} (CPU fallback)`);
  const model = await GpuModel.load(ctx, ck.weights, undefined, { weightDType: wd });
  const capacity = Math.min(ck.config.maxPositions, promptIds.length + maxNew);
  const session = new InferenceSession(model, capacity);
  let plan: MethodPlan | null = null;
  if (values.adapter) {
    const adapter = await readPeftAdapter(directoryFiles(values.adapter));
    plan = planMethod(ctx, model, { method: 'lora', lora: adapter.lora }, 0);
    loadAdapterIntoPlan(ctx, plan, adapter);
    session.adapters = plan;
  }
  const stops = new Set(ck.generation.eosTokenIds);
  if (tok?.eosTokenId !== null && tok?.eosTokenId !== undefined) stops.add(tok.eosTokenId);
  const streamer = tok ? new TextStreamer((ids) => tok.decode(ids)) : null;
  if (!values.json && tok && !values.chat) process.stdout.write(tok.decode(promptIds));
  const res = await generate(session, promptIds, {
    maxNewTokens: maxNew,
    temperature,
    topK: values['top-k'] !== undefined ? num(values['top-k'], 'top-k', 0) : ck.generation.topK,
    topP: values['top-p'] !== undefined ? num(values['top-p'], 'top-p', 1) : ck.generation.topP,
    repetitionPenalty: num(values['repetition-penalty'], 'repetition-penalty', ck.generation.repetitionPenalty ?? 1),
    seed: num(values.seed, 'seed', 0),
    stopTokenIds: [...stops],
    onToken: (id) => {
      if (!values.json && streamer) process.stdout.write(streamer.push(id));
    },
  });
  const text = tok ? tok.decode(res.ids) : '';
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ prompt_ids: promptIds, ids: res.ids, text })}\n`);
  } else {
    if (!tok) process.stdout.write(res.ids.join(' '));
    process.stdout.write('\n');
    const tps = res.ids.length > 1 ? ((res.ids.length - 1) / res.decodeMs) * 1000 : 0;
    log(`${res.ids.length} tokens (${res.stoppedBy}); prefill ${promptIds.length} tokens in ${res.prefillMs.toFixed(0)} ms; decode ${tps.toFixed(1)} tokens/s`);
  }
  session.release();
  if (plan) releasePlan(ctx, plan);
  model.release();
  ctx.destroy();
}

/** `webtune quantize --model M --out DIR`: a transformers + bitsandbytes 4-bit (NF4) checkpoint. */
async function quantizeCmd(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { model: { type: 'string' }, out: { type: 'string' }, blocksize: { type: 'string' }, 'no-double-quant': { type: 'boolean' } },
  });
  if (!values.out) throw new UsageError('--out DIR is required');
  const opened = await loadCheckpoint(values.model);
  if (opened.prequantized) throw new UsageError(`${values.model} is already a 4-bit checkpoint`);
  const files = await writeBnbCheckpoint(opened.weights as Checkpoint, {
    blocksize: values.blocksize ? Number(values.blocksize) : 64,
    doubleQuant: !values['no-double-quant'],
  });
  mkdirSync(values.out, { recursive: true });
  let bytes = 0;
  for (const [name, data] of Object.entries(files)) {
    writeFileSync(join(values.out, name), data);
    bytes += typeof data === 'string' ? data.length : data.byteLength;
  }
  log(`wrote ${Object.keys(files).length} files (${(bytes / 2 ** 20).toFixed(2)} MiB) to ${values.out}: NF4, blocksize ${values.blocksize ?? 64}, ${values['no-double-quant'] ? 'single' : 'double'} quantization`);
}

/** `webtune merge --model M --adapter DIR --out DIR`: base + LoRA merged into one Hugging Face checkpoint. */
async function mergeCmd(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { model: { type: 'string' }, adapter: { type: 'string' }, out: { type: 'string' }, dtype: { type: 'string' }, 'nf4-base': { type: 'boolean' } },
  });
  if (!values.adapter) throw new UsageError('--adapter DIR is required');
  if (!values.out) throw new UsageError('--out DIR is required');
  const dtypes: Record<string, MergeDType> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
  const dtype = values.dtype === undefined ? undefined : dtypes[values.dtype];
  if (values.dtype !== undefined && !dtype) throw new UsageError(`--dtype must be f32, f16 or bf16, got "${values.dtype}"`);
  const opened = await loadCheckpoint(values.model);
  const adapter = await readPeftAdapter(directoryFiles(values.adapter));
  const t0 = performance.now();
  const { files, merged, dtype: written } = await mergeLora(opened.weights, adapter, {
    dtype,
    nf4Base: values['nf4-base'],
    adapterFiles: { config: join(values.adapter, 'adapter_config.json'), weights: join(values.adapter, 'adapter_model.safetensors') },
  });
  mkdirSync(values.out, { recursive: true });
  let bytes = 0;
  for (const [name, data] of Object.entries(files)) {
    writeFileSync(join(values.out, name), data);
    bytes += typeof data === 'string' ? data.length : data.byteLength;
  }
  const base = opened.prequantized ? 'the dequantized 4-bit base' : values['nf4-base'] ? 'the NF4-quantized base' : 'the base weights';
  log(
    `merged ${merged.length} layers into ${base} (${((performance.now() - t0) / 1000).toFixed(1)} s); wrote ${Object.keys(files).length} files ` +
      `(${(bytes / 2 ** 20).toFixed(2)} MiB, ${written ?? 'mixed dtypes'}) to ${values.out}`,
  );
}

/** `webtune onnx --model M [--adapter DIR] --out FILE.onnx`: the model (with the adapter merged in) as ONNX. */
async function onnxCmd(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { model: { type: 'string' }, adapter: { type: 'string' }, out: { type: 'string' }, 'nf4-base': { type: 'boolean' } },
  });
  if (!values.out) throw new UsageError('--out FILE.onnx is required');
  if (values['nf4-base'] && !values.adapter) throw new UsageError('--nf4-base goes with --adapter (it says which base the adapter was trained on)');
  const opened = await loadCheckpoint(values.model);
  const t0 = performance.now();
  const metadata = { base_model: values.model!, ...(values.adapter ? { adapter: values.adapter } : {}) };
  let bytes: Uint8Array;
  if (values.adapter) {
    bytes = await mergedOnnx(opened.weights, await readPeftAdapter(directoryFiles(values.adapter)), {
      nf4Base: values['nf4-base'],
      adapterFiles: { config: join(values.adapter, 'adapter_config.json'), weights: join(values.adapter, 'adapter_model.safetensors') },
      metadata,
    });
  } else {
    const read = floatWeights(opened.weights);
    bytes = await exportOnnx({ config: opened.config, readF32: async (name) => (await read(name)).values }, { metadata });
  }
  mkdirSync(dirname(resolve(values.out)), { recursive: true });
  writeFileSync(values.out, bytes);
  log(`wrote ${values.out} (${(bytes.byteLength / 2 ** 20).toFixed(2)} MiB, ONNX opset ${ONNX_OPSET}, with KV cache${values.adapter ? ', adapter merged' : ''}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'info':
        await info(rest);
        return 0;
      case 'generate':
        await generateCmd(rest);
        return 0;
      case 'train':
        await trainCmd(rest);
        return 0;
      case 'eval':
        await evalCmd(rest);
        return 0;
      case 'demo':
        await demoCmd(rest);
        return 0;
      case 'quantize':
        await quantizeCmd(rest);
        return 0;
      case 'merge':
        await mergeCmd(rest);
        return 0;
      case 'onnx':
        await onnxCmd(rest);
        return 0;
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(`${USAGE}\n`);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    const err = e as Error;
    if (err.name === 'UsageError' || err.name === 'DatasetError' || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`webtune: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`webtune: ${err.name}: ${err.message}\n`);
    if (process.env.WEBTUNE_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
