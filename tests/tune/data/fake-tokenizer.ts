// A tiny word-level tokenizer implementing TokenizerLike, so the data tests need no fixture files.
// Pieces: the special tokens, then a word with its leading space (" world"), a run of other
// whitespace, or one punctuation character. Ids: the specials are fixed, other pieces get the next
// id the first time they are seen (one shared vocabulary per instance, so ids are stable within a test).
import type { ChatMessage, TokenizerLike } from '../../../src/tune/data';

export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
const SPECIALS = ['<pad>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'];

export class FakeTokenizer implements TokenizerLike {
  readonly bosTokenId: number | null = BOS;
  readonly eosTokenId: number | null = EOS;
  readonly bosToken = '<s>';
  readonly eosToken = '</s>';
  private readonly toId = new Map<string, number>();
  private readonly toPiece: string[] = [];

  constructor(
    private readonly options: { addBos?: boolean; chatml?: boolean } = {},
  ) {
    for (const s of SPECIALS) this.id(s);
  }

  get vocabSize(): number {
    return 1000;
  }

  get hasChatTemplate(): boolean {
    return !!this.options.chatml;
  }

  private id(piece: string): number {
    let i = this.toId.get(piece);
    if (i === undefined) {
      i = this.toPiece.length;
      this.toId.set(piece, i);
      this.toPiece.push(piece);
    }
    return i;
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    const ids: number[] = [];
    if (addSpecialTokens && this.options.addBos !== false) ids.push(BOS);
    const re = /<s>|<\/s>|<\|im_start\|>|<\|im_end\|>|<pad>| ?[A-Za-z0-9]+|\s+|[^\sA-Za-z0-9]/g;
    for (const m of text.matchAll(re)) ids.push(this.id(m[0]));
    return ids;
  }

  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    return ids
      .filter((i) => !(skipSpecialTokens && i < SPECIALS.length))
      .map((i) => this.toPiece[i] ?? `<${i}>`)
      .join('');
  }

  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt: boolean): string {
    if (!this.options.chatml) throw new Error('no chat template');
    return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + (addGenerationPrompt ? '<|im_start|>assistant\n' : '');
  }

  /** Text of the tokens whose label is kept. */
  trainedText(ids: ArrayLike<number>, labels: ArrayLike<number>): string {
    const kept: number[] = [];
    for (let t = 0; t < ids.length; t++) if (labels[t] !== -100) kept.push(ids[t]);
    return this.decode(kept, false);
  }
}
