// A small RFC 4180 CSV reader that remembers where each record starts.
//
// RFC 4180: records end with CRLF (we also accept LF); fields are separated by the delimiter; a field
// may be enclosed in double quotes, and then may hold delimiters, line breaks and doubled quotes ("").
// Leniencies: a quote inside an unquoted field is kept as a character (common in hand-made files);
// blank lines between records are skipped; a UTF-8 BOM is dropped.
// Errors: characters after a closing quote make that record bad (reported, reading goes on with the
// next record); a quote that is never closed is fatal — everything after it would be one field.

export interface CsvRecord {
  fields: string[];
  /** 1-based line on which the record starts (a quoted field may span several lines). */
  line: number;
}

export interface CsvBadRecord {
  line: number;
  message: string;
}

export interface CsvResult {
  records: CsvRecord[];
  bad: CsvBadRecord[];
  /** Set when the file cannot be read past some point (an unclosed quote). */
  fatal: CsvBadRecord | null;
}

export function parseCsv(text: string, delimiter = ','): CsvResult {
  if (delimiter.length !== 1 || delimiter === '"' || delimiter === '\n' || delimiter === '\r') {
    throw new RangeError(`CSV delimiter must be one character other than a quote or a line break, got ${JSON.stringify(delimiter)}`);
  }
  const records: CsvRecord[] = [];
  const bad: CsvBadRecord[] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;

  // Each iteration reads one record, starting at a line start.
  while (i < n) {
    const start = line;
    const fields: string[] = [];
    let error: string | null = null;
    let field = '';
    let endOfRecord = false;
    // A record that is one empty line is a blank line: skipped.
    if (text[i] === '\n' || (text[i] === '\r' && text[i + 1] === '\n')) {
      i += text[i] === '\r' ? 2 : 1;
      line++;
      continue;
    }
    while (!endOfRecord) {
      field = '';
      if (text[i] === '"') {
        // Quoted field.
        const quoteLine = line;
        i++;
        for (;;) {
          if (i >= n) {
            return { records, bad, fatal: { line: quoteLine, message: 'a quoted field starting on this line is never closed' } };
          }
          const c = text[i];
          if (c === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === '\n') line++;
          field += c;
          i++;
        }
        // After the closing quote: a delimiter, a line break or the end; anything else is an error.
        if (i < n && text[i] !== delimiter && text[i] !== '\n' && !(text[i] === '\r' && text[i + 1] === '\n')) {
          error ??= `unexpected ${JSON.stringify(text[i])} after a closing quote (a quote inside a quoted field must be doubled: "")`;
          while (i < n && text[i] !== delimiter && text[i] !== '\n') i++;
        }
      } else {
        let j = i;
        while (j < n && text[j] !== delimiter && text[j] !== '\n') j++;
        field = text.slice(i, j);
        if (j < n && text[j] === '\n' && field.endsWith('\r')) field = field.slice(0, -1);
        else if (j >= n && field.endsWith('\r')) field = field.slice(0, -1);
        i = j;
      }
      fields.push(field);
      if (i >= n) {
        endOfRecord = true;
      } else if (text[i] === delimiter) {
        i++;
        if (i >= n) {
          fields.push(''); // "a,b," at the very end: a last empty field
          endOfRecord = true;
        }
      } else {
        // Line break (LF or CRLF).
        i += text[i] === '\r' ? 2 : 1;
        line++;
        endOfRecord = true;
      }
    }
    if (error) bad.push({ line: start, message: error });
    else records.push({ fields, line: start });
  }
  return { records, bad, fatal: null };
}
