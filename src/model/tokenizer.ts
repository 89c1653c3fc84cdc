// Tokenizer glue: Hugging Face `tokenizer.json` + `tokenizer_config.json` through
// @huggingface/tokenizers, chat templates through @huggingface/jinja.
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

export class TokenizerError extends Error {
  override name = 'TokenizerError';
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

type Json = Record<string, unknown>;

function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

export class TextTokenizer {
  private readonly tok: Tokenizer;
  readonly chatTemplate: string | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly vocabSize: number;

  constructor(
    tokenizerJson: Json,
    readonly config: Json = {},
    readonly file = 'tokenizer.json',
  ) {
    try {
      this.tok = new Tokenizer(tokenizerJson, config);
    } catch (e) {
      throw new TokenizerError(`${file}: cannot build the tokenizer: ${(e as Error).message}`);
    }
    const tpl = config.chat_template;
    this.chatTemplate =
      typeof tpl === 'string'
        ? tpl
        : Array.isArray(tpl)
          ? ((tpl as Json[]).find((t) => t.name === 'default')?.template as string | undefined) ?? null
          : null;
    this.bosToken = tokenString(config.bos_token);
    this.eosToken = tokenString(config.eos_token);
    this.bosTokenId = this.bosToken === null ? null : (this.tok.token_to_id(this.bosToken) ?? null);
    this.eosTokenId = this.eosToken === null ? null : (this.tok.token_to_id(this.eosToken) ?? null);
    const model = tokenizerJson.model as Json | undefined;
    const vocab = model?.vocab;
    const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as Json[]) : [];
    const base = Array.isArray(vocab) ? vocab.length : vocab && typeof vocab === 'object' ? Object.keys(vocab).length : 0;
    const maxAdded = added.reduce((m, t) => Math.max(m, typeof t.id === 'number' ? t.id + 1 : 0), 0);
    this.vocabSize = Math.max(base, maxAdded);
  }

  static fromText(tokenizerJson: string, configJson: string | null, file = 'tokenizer.json'): TextTokenizer {
    let tj: Json;
    try {
      tj = JSON.parse(tokenizerJson) as Json;
    } catch (e) {
      throw new TokenizerError(`${file}: not valid JSON: ${(e as Error).message}`);
    }
    let cfg: Json = {};
    if (configJson) {
      try {
        cfg = JSON.parse(configJson) as Json;
      } catch (e) {
        throw new TokenizerError(`tokenizer_config.json: not valid JSON: ${(e as Error).message}`);
      }
    }
    return new TextTokenizer(tj, cfg, file);
  }

  /** Token ids of `text`; `addSpecialTokens` adds BOS etc. as the tokenizer's post-processor / config says. */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * Text of `ids`. Lossless: no "clean-up" of spaces before punctuation (the legacy
   * clean_up_tokenization_spaces rewrite changes text such as "for 'ship'"; recent transformers
   * releases decode GPT-2 without it, and so do we).
   */
  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.tok.decode([...ids], { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== null;
  }

  /** Render messages with the model's chat template (as transformers' apply_chat_template). */
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt = false): string {
    if (!this.chatTemplate) throw new TokenizerError('this tokenizer has no chat_template (tokenizer_config.json)');
    const template = new Template(this.chatTemplate);
    return template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
    });
  }
}
