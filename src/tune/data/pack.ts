// Packing: concatenate examples into blocks of exactly maxLength tokens (the last block may be
// shorter), as transformers' run_clm `group_texts` / TRL's "wrapped" packing do. Examples are
// separated by EOS: when an example does not already end with EOS, one is inserted after it with
// label −100 (a separator, not something the row asked to train). An example may be split across two
// blocks. Labels keep each example's mask.
//
// Attention is NOT reset at example boundaries: within a block, tokens of an example attend to the
// end of the previous one (plain causal attention over the block, as HF's simple packing). The EOS
// separator tells the model a new text starts; for most fine-tuning this costs little and saves the
// padding. Disable packing when examples must be isolated.
import { countTargets } from './render';
import { IGNORE_INDEX, type Example } from './types';

export function packExamples(examples: Example[], maxLength: number, eosId: number | null): Example[] {
  const out: Example[] = [];
  let ids = new Uint32Array(maxLength);
  let labels = new Int32Array(maxLength);
  let fill = 0;
  let file = '';
  let line = 0;
  const emit = (): void => {
    // A block with nothing to predict (a 1-token tail, or only prompt tokens) is left out.
    if (fill >= 2 && countTargets(labels.subarray(0, fill)) > 0) out.push({ inputIds: ids.slice(0, fill), labels: labels.slice(0, fill), file, line });
    ids = new Uint32Array(maxLength);
    labels = new Int32Array(maxLength);
    fill = 0;
  };
  const push = (id: number, label: number, ex: Example): void => {
    if (fill === 0) {
      file = ex.file;
      line = ex.line;
    }
    ids[fill] = id;
    labels[fill] = label;
    fill++;
    if (fill === maxLength) emit();
  };
  for (const ex of examples) {
    const n = ex.inputIds.length;
    for (let t = 0; t < n; t++) push(ex.inputIds[t], ex.labels[t], ex);
    if (eosId !== null && ex.inputIds[n - 1] !== eosId) push(eosId, IGNORE_INDEX, ex);
  }
  emit();
  return out;
}
