/**
 * Parse `metadata/tracks_metadata.csv` (UTF-8, header row, RFC 4180 quoting) with a small RFC 4180 reader
 * (`parseCsv`: it replaced csv-parse, which was ~80 % of the API's metadata phase: 9.9 s at 1M rows), type
 * each cell as the row schema says (empty -> null, track_no -> integer, duration_sec -> number,
 * composer_missing -> boolean) and validate every typed row against `tracks_metadata_row.schema.json`.
 */

import { ArtifactError } from './errors.js';
import type { ArtifactFile } from './layout.js';
import type { SchemaRegistry } from './schemas.js';
import type { TrackRow } from './types.js';

/** A CSV text that is not RFC 4180; the message names the line and what is wrong. */
export class CsvError extends Error {
  override name = 'CsvError';
}

const COMMA = 44;
const LF = 10;
const CR = 13;
const QUOTE = 34;

function lineAt(text: string, pos: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < pos; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/**
 * Records of a CSV text (RFC 4180): fields separated by ',', records by LF or CRLF; a field may be quoted with '"'
 * ('""' inside stands for one quote; a quoted field may hold separators and line breaks); a leading BOM is
 * skipped and a final line break starts no record. Every record must have as many fields as the first (an empty
 * line is a record of one empty field). The same rules as csv-parse with `bom: true, relax_column_count: false,
 * skip_empty_lines: false` (a test compares both on seeded random files).
 * @throws CsvError naming the line of a quote never closed, a quote inside an unquoted field, text after a
 *   closing quote, or a record of the wrong length
 */
export function parseCsv(text: string): string[][] {
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const records: string[][] = [];
  let width = -1;
  while (i < n) {
    const start = i;
    const rec: string[] = [];
    for (;;) {
      if (text.charCodeAt(i) === QUOTE) {
        let from = i + 1;
        let value = '';
        for (;;) {
          const q = text.indexOf('"', from);
          if (q === -1) throw new CsvError(`line ${lineAt(text, i)}: quoted field never closed`);
          if (text.charCodeAt(q + 1) === QUOTE) {
            value += text.slice(from, q + 1);
            from = q + 2;
            continue;
          }
          value += text.slice(from, q);
          i = q + 1;
          break;
        }
        rec.push(value);
        const c = text.charCodeAt(i);
        if (c === COMMA) {
          i++;
          continue;
        }
        if (i >= n || c === LF) {
          i++;
          break;
        }
        if (c === CR && text.charCodeAt(i + 1) === LF) {
          i += 2;
          break;
        }
        throw new CsvError(`line ${lineAt(text, i)}: ${JSON.stringify(text[i])} after a closing quote (expected ',' or a line break)`);
      }
      let j = i;
      let c = 0;
      while (j < n) {
        c = text.charCodeAt(j);
        if (c === COMMA || c === LF) break;
        if (c === QUOTE) throw new CsvError(`line ${lineAt(text, j)}: a quote inside an unquoted field (quote the whole field and double the quote)`);
        j++;
      }
      const atComma = j < n && c === COMMA;
      const end = !atComma && j > i && text.charCodeAt(j - 1) === CR ? j - 1 : j;
      rec.push(text.slice(i, end));
      i = j + 1;
      if (!atComma) break;
    }
    if (width === -1) width = rec.length;
    else if (rec.length !== width) {
      throw new CsvError(`line ${lineAt(text, start)}: record ${records.length + 1} has ${rec.length} fields, the first has ${width}`);
    }
    records.push(rec);
  }
  return records;
}
const TRUE = new Set(['true', 'True', 'TRUE', '1']);
const FALSE = new Set(['false', 'False', 'FALSE', '0']);

function typeCell(file: ArtifactFile, column: string, raw: string, line: number): unknown {
  if (raw === '') return null;
  switch (column) {
    case 'track_no':
      if (!/^-?\d+$/.test(raw)) throw new ArtifactError(file, `row ${line}: track_no '${raw}' is not an integer`);
      return Number(raw);
    case 'duration_sec': {
      const v = Number(raw);
      if (!Number.isFinite(v)) throw new ArtifactError(file, `row ${line}: duration_sec '${raw}' is not a number`);
      return v;
    }
    case 'composer_missing':
      if (TRUE.has(raw)) return true;
      if (FALSE.has(raw)) return false;
      throw new ArtifactError(file, `row ${line}: composer_missing '${raw}' is not a boolean (true/false)`);
    default:
      return raw;
  }
}

/**
 * Typed, schema-checked rows of the metadata CSV.
 * @throws ArtifactError on bad CSV, a wrong header, a cell that does not type, a row failing the schema or a
 *   repeated track_id.
 */
export function parseTracksCsv(data: Buffer, schemas: SchemaRegistry): TrackRow[] {
  const file = schemas.paths.tracks_csv;
  const columns = schemas.schema('tracks_metadata_row')['x-csv-columns'] as string[];
  let records: string[][];
  try {
    records = parseCsv(data.toString('utf8'));
  } catch (err) {
    if (!(err instanceof CsvError)) throw err;
    throw new ArtifactError(file, `not valid CSV: ${err.message}`);
  }
  const header = records[0];
  if (!header || header.join(',') !== columns.join(',')) {
    throw new ArtifactError(file, `header is '${(header ?? []).join(',')}', expected '${columns.join(',')}'`);
  }
  const rows: TrackRow[] = [];
  const seen = new Set<string>();
  for (let i = 1; i < records.length; i++) {
    const rec = records[i]!;
    const obj: Record<string, unknown> = {};
    columns.forEach((c, j) => {
      obj[c] = typeCell(file, c, rec[j] ?? '', i);
    });
    const problem = schemas.check('tracks_metadata_row', obj);
    if (problem !== null) {
      throw new ArtifactError(file, `row ${i} (track_id ${JSON.stringify(obj.track_id)}) does not match tracks_metadata_row.schema.json: ${problem}`);
    }
    const row = obj as unknown as TrackRow;
    if (seen.has(row.track_id)) throw new ArtifactError(file, `row ${i}: track_id '${row.track_id}' repeats`);
    seen.add(row.track_id);
    rows.push(row);
  }
  return rows;
}
