// Rows → token ids and labels, with the loss mask.
//
// How the masked region is found. A row is rendered to text as a list of segments, each trained or
// not: text = [text✓]; prompt/completion = [prompt✗, completion✓]; Alpaca = [template(instruction,
// input)✗, output✓]. The WHOLE text is tokenized once (so the ids are exactly what the tokenizer makes
// of it, as at inference); then each segment boundary is located by tokenizing the text up to that
// boundary and taking the longest common prefix with the whole ids. Tokens in that common prefix lie
// entirely before the boundary; a token that straddles it (e.g. GPT-2's " yes" when the prompt ends in
// a space) belongs to the later segment. This is stanford_alpaca's / TRL's "tokenize the prompt and
// the full text, mask len(prompt ids)" made robust to merges across the boundary.
//
// Chat rows go through the chat template prefix by prefix: for each assistant message i,
//   P_i = render(messages[0..i), add_generation_prompt = true)   → the text before the reply
//   E_i = render(messages[0..i],  add_generation_prompt = false) → the text through the reply's end
// Both must be textual prefixes of the whole render (the template is "prefix-stable"); the trained
// tokens are those from lcp(ids(P_i)) to lcp(ids(trimEnd(E_i))): the reply plus the template's
// end-of-turn marker (e.g. ChatML's <|im_end|>), not the whitespace after it — what TRL's
// `{% generation %}` markers select in the templates that have them. Limits: templates that rewrite
// earlier turns depending on later ones (e.g. dropping the reasoning of past assistant turns, or a
// date/system text that depends on the last message) are not prefix-stable; such rows are reported
// (code 'template'; train them with lossOn: 'all' or another template). Every assistant turn is
// trained, not only the last.
//
// Special tokens: BOS as the tokenizer adds it (`encode(text, true)`), or as the chat template writes
// it (chat text is encoded without special tokens, like transformers' apply_chat_template). EOS is
// appended after texts, completions and Alpaca outputs (trained with them) unless addEos is false or
// the tokenizer already ended the ids with it.
import { Template } from '@huggingface/jinja';
import { DatasetError } from './errors';
import { RowError, type Row } from './rows';
import { IGNORE_INDEX, type ChatMessage, type DatasetOptions, type TokenizerLike } from './types';

/**
 * The Alpaca prompt (tloen/alpaca-lora templates/alpaca.json, = stanford_alpaca's PROMPT_DICT with a
 * line break after "### Response:"). The output follows the prompt directly; EOS follows the output.
 */
export const ALPACA_PROMPT_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n';
export const ALPACA_PROMPT_NO_INPUT =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Response:\n';

/** The Alpaca prompt for a row; an empty `input` uses the no-input variant. */
export function alpacaPrompt(instruction: string, input: string): string {
  const t = input.trim() === '' ? ALPACA_PROMPT_NO_INPUT : ALPACA_PROMPT_INPUT;
  // Replace both placeholders in one pass, so braces inside the instruction are never re-expanded.
  return t.replace(/\{(instruction|input)\}/g, (_, k: string) => (k === 'instruction' ? instruction : input));
}

/** ChatML (as SmolLM2 / Qwen2 use it, without a default system message): the built-in `chatTemplate: 'chatml'`. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface Segment {
  text: string;
  trained: boolean;
}

/** ids and labels of one row, before truncation. */
export interface Encoded {
  ids: number[];
  labels: number[];
}

function lcp(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Number of positions the loss trains on: labels[t] ≠ −100 for t ≥ 1 (position 0 is never a target). */
export function countTargets(labels: ArrayLike<number>): number {
  let n = 0;
  for (let t = 1; t < labels.length; t++) if (labels[t] !== IGNORE_INDEX) n++;
  return n;
}

export class RowEncoder {
  private readonly lossOnAll: boolean;
  private readonly addEos: boolean;
  private readonly template: Template | null;

  constructor(
    readonly tok: TokenizerLike,
    private readonly options: Pick<DatasetOptions, 'lossOn' | 'addBos' | 'addEos' | 'chatTemplate'>,
  ) {
    this.lossOnAll = options.lossOn === 'all';
    this.addEos = options.addEos !== false;
    if (options.addBos === true && tok.bosTokenId === null) throw new DatasetError('addBos: this tokenizer has no BOS token; leave addBos unset');
    const src = options.chatTemplate === 'chatml' ? CHATML_TEMPLATE : options.chatTemplate;
    this.template = null;
    if (src !== undefined) {
      try {
        this.template = new Template(src);
      } catch (e) {
        throw new DatasetError(`chatTemplate cannot be parsed: ${(e as Error).message}`);
      }
    }
  }

  /** Tokens of a plain text with BOS as configured (no EOS). */
  encodeText(text: string): number[] {
    const { addBos } = this.options;
    const ids = this.tok.encode(text, addBos !== false);
    const bos = this.tok.bosTokenId;
    if (addBos === true && bos !== null && ids[0] !== bos) ids.unshift(bos);
    return ids;
  }

  /** Tokens of rendered chat text: special tokens as the template wrote them; BOS per addBos. */
  private encodeChatText(text: string): number[] {
    const ids = this.tok.encode(text, false);
    const bos = this.tok.bosTokenId;
    if (bos !== null && this.options.addBos === true && ids[0] !== bos) ids.unshift(bos);
    if (bos !== null && this.options.addBos === false && ids[0] === bos) ids.shift();
    return ids;
  }

  /** Render a conversation with the configured template (or the tokenizer's). */
  renderChat(messages: ChatMessage[], addGenerationPrompt: boolean): string {
    if (this.template) {
      return this.template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.tok.bosToken ?? '',
        eos_token: this.tok.eosToken ?? '',
      });
    }
    if (!this.tok.hasChatTemplate) {
      throw new DatasetError(
        'chat rows need a chat template, and this tokenizer has none (no chat_template in tokenizer_config.json); ' +
          "pass chatTemplate: a Jinja template string, or 'chatml' for the built-in ChatML template",
      );
    }
    return this.tok.applyChatTemplate(messages, addGenerationPrompt);
  }

  /** ids and labels of segments (see the header for how boundaries are found). */
  encodeSegments(segments: Segment[]): Encoded {
    const ids = this.encodeText(segments.map((s) => s.text).join(''));
    const labels = new Array<number>(ids.length);
    let start = 0;
    let prefix = '';
    for (let k = 0; k < segments.length; k++) {
      prefix += segments[k].text;
      const end = k === segments.length - 1 ? ids.length : Math.max(start, lcp(this.encodeText(prefix), ids));
      const trained = this.lossOnAll || segments[k].trained;
      for (let t = start; t < end; t++) labels[t] = trained ? ids[t] : IGNORE_INDEX;
      start = end;
    }
    const eos = this.tok.eosTokenId;
    if (this.addEos && eos !== null && ids[ids.length - 1] !== eos) {
      ids.push(eos);
      labels.push(this.lossOnAll || segments[segments.length - 1].trained ? eos : IGNORE_INDEX);
    }
    return { ids, labels };
  }

  private encodeChat(messages: ChatMessage[]): Encoded {
    const render = (msgs: ChatMessage[], gen: boolean): string => {
      try {
        return this.renderChat(msgs, gen);
      } catch (e) {
        if (e instanceof DatasetError) throw e;
        throw new RowError('template', `the chat template failed: ${(e as Error).message}`);
      }
    };
    const whole = render(messages, false);
    const ids = this.encodeChatText(whole);
    if (this.lossOnAll) return { ids, labels: ids.slice() };
    const labels = new Array<number>(ids.length).fill(IGNORE_INDEX);
    let replies = 0;
    for (let i = 0; i < messages.length; i++) {
      if (messages[i].role !== 'assistant') continue;
      replies++;
      const before = render(messages.slice(0, i), true);
      const through = render(messages.slice(0, i + 1), false);
      if (!whole.startsWith(before) || !whole.startsWith(through) || through.length < before.length) {
        throw new RowError(
          'template',
          `the chat template does not render this conversation prefix by prefix (the text before assistant message ${i} ` +
            'is not a prefix of the whole), so the assistant tokens cannot be located; use lossOn "all" or another chatTemplate',
        );
      }
      let end = through.trimEnd();
      if (end.length < before.length) end = before;
      const s = lcp(this.encodeChatText(before), ids);
      const e = lcp(this.encodeChatText(end), ids);
      for (let t = s; t < e; t++) labels[t] = ids[t];
    }
    if (replies === 0) throw new RowError('no-targets', 'no "assistant" message: nothing to train on (loss is on assistant turns; use lossOn "all" to train on everything)');
    return { ids, labels };
  }

  /** ids and labels of a checked row (throws RowError for a row that cannot be encoded). */
  encodeRow(row: Row): Encoded {
    let enc: Encoded;
    switch (row.kind) {
      case 'text':
        enc = this.encodeSegments([{ text: row.text, trained: true }]);
        break;
      case 'prompt_completion':
        enc = this.encodeSegments([
          { text: row.prompt, trained: false },
          { text: row.completion, trained: true },
        ]);
        break;
      case 'alpaca':
        enc = this.encodeSegments([
          { text: alpacaPrompt(row.instruction, row.input), trained: false },
          { text: row.output, trained: true },
        ]);
        break;
      case 'chat':
        enc = this.encodeChat(row.messages);
        break;
      case 'tokens': {
        const ids = row.inputIds.slice();
        enc = { ids, labels: this.lossOnAll || row.labels === null ? ids.slice() : row.labels.slice() };
        break;
      }
    }
    if (enc.ids.length === 0) throw new RowError('empty', 'the row encodes to no tokens');
    if (countTargets(enc.labels) === 0) {
      throw new RowError('no-targets', 'nothing to train on: no token after the first has a label (empty completion and no EOS?)');
    }
    return enc;
  }
}
