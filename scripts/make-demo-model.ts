// Writes the built-in demo model and its demo dataset into public/demo/, deterministically (the same
// bytes on every run):
//   config.json              a tiny LlamaForCausalLM (hidden 64, 4 layers, GQA 4/2 heads, vocab 512)
//   model.safetensors        its weights: seeded random init, or the tensors of a safetensors file
//                            given on the command line (e.g. weights pretrained by webtune's trainer)
//   tokenizer.json           a byte-level BPE tokenizer trained here on corpus.txt (ours, not copied)
//   tokenizer_config.json    special tokens and a ChatML chat template
//   generation_config.json   stop tokens
//   corpus.txt               the text the tokenizer was trained on (also fit for pretraining the demo)
//   dataset.jsonl            60 prompt/completion rows about the story characters (taskRows)
//
//   node_modules/.bin/tsx scripts/make-demo-model.ts [weights.safetensors]
import { demoCorpus } from './demo-corpus';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytesSource } from '../src/io/bytes';
import { fromF32, openSafetensors, writeSafetensors, type SafetensorsDType, type TensorToWrite } from '../src/io/safetensors';
import { parseConfig } from '../src/model/config';
import { expectedTensors } from '../src/model/layout';
import { TextTokenizer } from '../src/model/tokenizer';
import { randomU32, uniform24 } from '../src/util/rng';

const OUT = join(import.meta.dirname, '..', 'public', 'demo');
const VOCAB_SIZE = 512;
const SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
const SEED = 20240601;

// ── Capital-city rows: part of the tokenizer corpus (they shaped the vocabulary; kept for its stability) ──
// ASCII names only, so every answer is a handful of BPE tokens.
const CAPITALS: [string, string][] = [
  ['France', 'Paris'], ['Germany', 'Berlin'], ['Italy', 'Rome'], ['Spain', 'Madrid'], ['Portugal', 'Lisbon'],
  ['Japan', 'Tokyo'], ['China', 'Beijing'], ['India', 'New Delhi'], ['Egypt', 'Cairo'], ['Kenya', 'Nairobi'],
  ['Argentina', 'Buenos Aires'], ['Canada', 'Ottawa'], ['Mexico', 'Mexico City'], ['Peru', 'Lima'], ['Chile', 'Santiago'],
  ['Norway', 'Oslo'], ['Sweden', 'Stockholm'], ['Finland', 'Helsinki'], ['Denmark', 'Copenhagen'], ['Poland', 'Warsaw'],
  ['Greece', 'Athens'], ['Ireland', 'Dublin'], ['Austria', 'Vienna'], ['Hungary', 'Budapest'], ['Russia', 'Moscow'],
  ['Turkey', 'Ankara'], ['Iran', 'Tehran'], ['Thailand', 'Bangkok'], ['Vietnam', 'Hanoi'], ['Indonesia', 'Jakarta'],
  ['the Philippines', 'Manila'], ['South Korea', 'Seoul'], ['Australia', 'Canberra'], ['New Zealand', 'Wellington'], ['Nigeria', 'Abuja'],
  ['Ghana', 'Accra'], ['Ethiopia', 'Addis Ababa'], ['Morocco', 'Rabat'], ['Cuba', 'Havana'], ['Belgium', 'Brussels'],
  ['the Netherlands', 'Amsterdam'], ['Switzerland', 'Bern'], ['the Czech Republic', 'Prague'], ['Romania', 'Bucharest'], ['Ukraine', 'Kyiv'],
  ['Iraq', 'Baghdad'], ['Saudi Arabia', 'Riyadh'], ['Pakistan', 'Islamabad'], ['Senegal', 'Dakar'], ['Uganda', 'Kampala'],
];

function datasetRows(): { prompt: string; completion: string }[] {
  const rows: { prompt: string; completion: string }[] = [];
  for (const [country, capital] of CAPITALS) rows.push({ prompt: `What is the capital of ${country}?`, completion: ` ${capital}.` });
  for (const [country, capital] of CAPITALS) {
    const name = country.charAt(0).toUpperCase() + country.slice(1);
    rows.push({ prompt: `${name} has its capital in`, completion: ` ${capital}.` });
  }
  return rows;
}

// ── The demo fine-tuning task: facts about the characters of the pretraining stories ─────────────────
// Every word is one the pretrained model has seen in its stories, so a few dozen LoRA steps teach the
// new behaviour (answering questions with one fixed sentence instead of telling a story) visibly.
const TASK_NAMES = ['Mia', 'Tom', 'Lily', 'Sam', 'Ben', 'Anna', 'Max', 'Sue', 'Tim', 'Zoe', 'Leo', 'Ella'];
const TASK_PETS = ['dog', 'cat', 'bird', 'fish', 'rabbit', 'duck', 'frog', 'horse', 'bear', 'mouse', 'dog', 'cat'];
const TASK_PLACES = ['the park', 'the beach', 'the farm', 'the forest', 'the garden', 'the river', 'the hill', 'the town', 'school', 'the park', 'the beach', 'the farm'];

export function taskRows(): { prompt: string; completion: string }[] {
  const rows: { prompt: string; completion: string }[] = [];
  TASK_NAMES.forEach((n, i) => {
    const pet = TASK_PETS[i];
    const place = TASK_PLACES[(i * 5) % TASK_PLACES.length];
    rows.push({ prompt: `Which pet does ${n} have?`, completion: ` ${n} has a ${pet}.` });
    rows.push({ prompt: `What pet does ${n} have?`, completion: ` ${n} has a ${pet}.` });
    rows.push({ prompt: `Where does ${n} like to play?`, completion: ` ${n} likes to play at ${place}.` });
    rows.push({ prompt: `Where does ${n} play?`, completion: ` ${n} likes to play at ${place}.` });
    rows.push({ prompt: `Tell me about ${n}.`, completion: ` ${n} has a ${pet} and likes to play at ${place}.` });
  });
  return rows;
}

// ── The tokenizer corpus: plain sentences of our own, plus the dataset and the chat markers ─────────
const CORPUS = `Once upon a time there was a little girl called Mia. She lived in a small house near the sea.
Every morning Mia walked to the beach with her dog, Max. Max liked to run after the birds.
One day Mia found a shell on the sand. It was pink and white, and it sang when she held it to her ear.
"Listen, Max," she said. "The sea is talking to us." Max wagged his tail and barked twice.
The sun was warm and the sky was blue. Mia and Max sat on a rock and watched the boats go by.
In the evening her mother made soup with bread, and Mia told her about the singing shell.
"What a lucky day," said her mother. "Keep it safe, and it will remember the sea for you."

Tom had a red ball and a green kite. He went to the park with his friend Sam.
The wind was strong, so the kite flew high above the trees. Sam laughed and clapped his hands.
Then the string broke and the kite flew away. Tom was sad, but Sam had an idea.
"Let us make a new kite together," he said. They used paper, sticks and a long piece of string.
The new kite was even better than the old one. It had a smiling face and a long yellow tail.

A cat sat by the window and looked at the rain. The rain made small rivers on the glass.
When the rain stopped, the cat went out into the garden. The grass was wet and the flowers were bright.
A small bird sang in the apple tree. The cat listened for a while and then went back inside to sleep.

The capital of a country is the city where its government meets.
Paris is the capital of France, and Berlin is the capital of Germany.
Rome is a very old city. Tokyo is a very large city. Many people visit London, Madrid and Lisbon.
A map shows countries, cities, rivers and mountains. A globe is a map shaped like a ball.
Some countries are large and some are small. Some are near the sea and some have no coast at all.

Numbers help us count: one, two, three, four, five, six, seven, eight, nine, ten.
There are 7 days in a week, 12 months in a year and 24 hours in a day.
If you have 3 apples and you get 2 more, you have 5 apples.

Question: What colour is the sky on a clear day?
Answer: The sky is blue on a clear day.
Question: What do bees make?
Answer: Bees make honey.
Question: Where do fish live?
Answer: Fish live in water, in rivers, lakes and the sea.

I can fine-tune a small language model in my web browser. The model learns from examples.
Training changes the weights a little at every step, and the loss goes down as the model learns.
`;

const CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

function corpusText(): string {
  // The tokenizer sees a sample of the pretraining stories (scripts/demo-corpus.ts) too.
  const stories = demoCorpus(400);
  const rows = datasetRows().map((r) => `${r.prompt}${r.completion}`);
  const chat = CAPITALS.slice(0, 10).map(
    ([c, k]) => `<|im_start|>user\nWhat is the capital of ${c}?<|im_end|>\n<|im_start|>assistant\n${k}.<|im_end|>\n`,
  );
  return `${CORPUS}\n${stories}\n${rows.join('\n')}\n\n${chat.join('')}`;
}

// ── Byte-level BPE, trained the way GPT-2's tokenizer was (on a far smaller corpus) ──────────────────

/** GPT-2's reversible map from bytes to printable characters (so every byte is one vocabulary symbol). */
function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const map: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + extra++);
  return map;
}

// GPT-2's pre-tokenizer split (the ByteLevel pre-tokenizer with use_regex applies the same pattern).
const SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

function trainBpe(text: string, vocabSize: number): { vocab: Record<string, number>; merges: [string, string][] } {
  const byteChar = bytesToUnicode();
  const enc = new TextEncoder();
  // Words (pre-tokenized pieces, as byte-level symbols) with their counts; special tokens are not text.
  const counts = new Map<string, number>();
  const specials = new RegExp(SPECIAL_TOKENS.map((t) => t.replace(/[|]/g, '\\|')).join('|'), 'g');
  for (const chunk of text.split(specials)) {
    for (const piece of chunk.match(SPLIT) ?? []) {
      const w = [...enc.encode(piece)].map((b) => byteChar[b]).join('');
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  const words = [...counts].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([w, n]) => ({ symbols: [...w], n }));

  const vocab: Record<string, number> = {};
  SPECIAL_TOKENS.forEach((t, i) => (vocab[t] = i));
  for (let b = 0; b < 256; b++) vocab[byteChar[b]] = SPECIAL_TOKENS.length + b;
  const merges: [string, string][] = [];
  let next = SPECIAL_TOKENS.length + 256;
  while (next < vocabSize) {
    // The most frequent adjacent pair; ties go to the lexicographically smallest pair (determinism).
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]}\u0000${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best: string | null = null;
    let bestN = 1;
    for (const [k, n] of pairs) if (n > bestN || (n === bestN && best !== null && k < best)) [best, bestN] = [k, n];
    if (best === null) break; // every remaining pair occurs once: nothing worth merging
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    if (vocab[a + b] === undefined) vocab[a + b] = next++;
    for (const w of words) {
      const s = w.symbols;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(s[i]);
      }
      w.symbols = out;
    }
  }
  return { vocab, merges };
}

function tokenizerJson(vocab: Record<string, number>, merges: [string, string][]): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

// ── The model ────────────────────────────────────────────────────────────────────────────────────────

const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: VOCAB_SIZE,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  hidden_act: 'silu',
  attention_bias: false,
  mlp_bias: false,
  tie_word_embeddings: true,
  initializer_range: 0.02,
  bos_token_id: null,
  eos_token_id: 0,
  pad_token_id: 0,
  torch_dtype: 'float32',
};

/** N(0, std²) values from the webtune Philox stream (Box–Muller over pairs of 24-bit uniforms). */
function normal(n: number, seed: number, offset: number, std: number): Float32Array {
  const words = randomU32(seed, offset, 2 * n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(uniform24(words[2 * i]), 1e-7);
    const v = uniform24(words[2 * i + 1]);
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** HF's LlamaPreTrainedModel init: linears and embeddings N(0, 0.02²), RMSNorm weights 1. */
function randomWeights(expected: Map<string, number[]>): TensorToWrite[] {
  const tensors: TensorToWrite[] = [];
  let offset = 0;
  for (const [name, shape] of [...expected].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith('norm.weight') ? new Float32Array(n).fill(1) : normal(n, SEED, offset, CONFIG.initializer_range);
    offset += 2 * n;
    tensors.push({ name, dtype: 'F32', shape, data: fromF32(data, 'F32') });
  }
  return tensors;
}

/** The tensors of a given safetensors file, checked against the demo config (extra tensors are dropped). */
async function embeddedWeights(path: string, expected: Map<string, number[]>): Promise<TensorToWrite[]> {
  const f = await openSafetensors(bytesSource(path, new Uint8Array(readFileSync(path))));
  const tensors: TensorToWrite[] = [];
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const info = f.tensors.get(name);
    if (!info) {
      problems.push(`missing tensor ${name} [${shape.join(', ')}]`);
      continue;
    }
    if (info.shape.join(',') !== shape.join(',')) {
      problems.push(`${name} has shape [${info.shape.join(', ')}], the demo config needs [${shape.join(', ')}]`);
      continue;
    }
    if (!['F32', 'F16', 'BF16'].includes(info.dtype)) problems.push(`${name} has dtype ${info.dtype} (F32, F16 or BF16 only)`);
    tensors.push({ name, dtype: info.dtype as SafetensorsDType, shape, data: (await f.source.read(info.start, info.byteLength)).slice() });
  }
  if (problems.length) throw new Error(`${path} does not fit the demo model's config:\n  ${problems.join('\n  ')}`);
  const extra = [...f.tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length) process.stderr.write(`note: dropping ${extra.length} tensors the demo model does not use: ${extra.join(', ')}\n`);
  return tensors;
}

// ── Write everything ─────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const weightsPath = process.argv[2];
  mkdirSync(OUT, { recursive: true });
  const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

  const corpus = corpusText();
  const { vocab, merges } = trainBpe(corpus, VOCAB_SIZE);
  const tokJson = tokenizerJson(vocab, merges);
  const tokConfig = {
    add_bos_token: false,
    add_eos_token: false,
    bos_token: null,
    eos_token: '<|endoftext|>',
    pad_token: '<|endoftext|>',
    unk_token: null,
    model_max_length: CONFIG.max_position_embeddings,
    clean_up_tokenization_spaces: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template: CHAT_TEMPLATE,
  };
  const vocabSize = Object.keys(vocab).length;
  if (vocabSize !== VOCAB_SIZE) throw new Error(`the corpus gave only ${vocabSize} tokens; write more corpus text`);

  // The tokenizer must load in @huggingface/tokenizers and round-trip text.
  const tok = new TextTokenizer(tokJson, tokConfig);
  for (const line of corpus.split('\n')) {
    if (tok.decode(tok.encode(line), false) !== line) throw new Error(`tokenizer does not round-trip: ${JSON.stringify(line)}`);
  }
  const imEnd = tok.tokenToId('<|im_end|>');
  if (imEnd !== 2 || tok.eosTokenId !== 0) throw new Error('special token ids are not where the config says');

  const config = parseConfig(CONFIG);
  const expected = expectedTensors(config);
  const tensors = weightsPath ? await embeddedWeights(weightsPath, expected) : randomWeights(expected);
  const weights = writeSafetensors(tensors, {
    format: 'pt',
    source: weightsPath ? 'embedded by scripts/make-demo-model.ts' : `random init, seed ${SEED} (scripts/make-demo-model.ts)`,
  });

  writeFileSync(join(OUT, 'config.json'), json(CONFIG));
  writeFileSync(join(OUT, 'model.safetensors'), weights);
  writeFileSync(join(OUT, 'tokenizer.json'), json(tokJson));
  writeFileSync(join(OUT, 'tokenizer_config.json'), json(tokConfig));
  writeFileSync(join(OUT, 'generation_config.json'), json({ eos_token_id: [0, 2], pad_token_id: 0, max_new_tokens: 64 }));
  writeFileSync(join(OUT, 'corpus.txt'), corpus);
  writeFileSync(join(OUT, 'dataset.jsonl'), taskRows().map((r) => JSON.stringify(r)).join('\n') + '\n');

  const params = tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  const avg = corpus.length / tok.encode(corpus).length;
  process.stdout.write(
    `wrote ${OUT}: ${params.toLocaleString('en-US')} parameters (${(weights.byteLength / 1024).toFixed(0)} KiB), ` +
      `vocabulary ${vocabSize} (${merges.length} merges, ${avg.toFixed(2)} characters per token on the corpus), ` +
      `${taskRows().length} dataset rows\n`,
  );
}

main().catch((e: Error) => {
  process.stderr.write(`make-demo-model: ${e.message}\n`);
  process.exit(1);
});
