// The training-data pipeline (browser and Node). Node-only file reading lives in ./node.
export * from './types';
export { DatasetError, DatasetLineError, EmptyDatasetError, DataCursorError } from './errors';
export { parseCsv, type CsvRecord, type CsvResult } from './csv';
export { detectFileFormat, detectRowFormat, readRows, mapColumns, checkRow, ROW_FIELDS, type RawRow, type Row } from './rows';
export { RowEncoder, alpacaPrompt, countTargets, ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, CHATML_TEMPLATE, type Segment, type Encoded } from './render';
export { chunkText, textDocuments } from './text';
export { packExamples } from './pack';
export { permutation, epochOrder, splitHoldout, SPLIT_OFFSET } from './shuffle';
export { BatchIterator, collate, evalBatches, datasetFingerprint, type Batch, type BatchOptions, type DataCursor } from './batches';
export { loadDataset, HEAD_SIZE } from './dataset';
export { datasetStats, splitStats, previewExamples, type DatasetStats, type SplitStats, type LengthBucket, type PreviewRow, type PreviewToken } from './stats';
export { parseDataArgs, formatStats, type DataArgs } from './cli';
