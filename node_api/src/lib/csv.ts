/**
 * Parse `metadata/tracks_metadata.csv` (UTF-8, header row, RFC 4180 quoting) with csv-parse, type each cell
 * as the row schema says (empty -> null, track_no -> integer, duration_sec -> number, composer_missing ->
 * boolean) and validate every typed row against `tracks_metadata_row.schema.json`.
 */

import { parse } from 'csv-parse/sync';

import { ArtifactError } from './errors.js';
import { ARTIFACT_FILES } from './layout.js';
import type { SchemaRegistry } from './schemas.js';
import type { TrackRow } from './types.js';

const FILE = ARTIFACT_FILES.tracksCsv;
const TRUE = new Set(['true', 'True', 'TRUE', '1']);
const FALSE = new Set(['false', 'False', 'FALSE', '0']);

function typeCell(column: string, raw: string, line: number): unknown {
  if (raw === '') return null;
  switch (column) {
    case 'track_no':
      if (!/^-?\d+$/.test(raw)) throw new ArtifactError(FILE, `row ${line}: track_no '${raw}' is not an integer`);
      return Number(raw);
    case 'duration_sec': {
      const v = Number(raw);
      if (!Number.isFinite(v)) throw new ArtifactError(FILE, `row ${line}: duration_sec '${raw}' is not a number`);
      return v;
    }
    case 'composer_missing':
      if (TRUE.has(raw)) return true;
      if (FALSE.has(raw)) return false;
      throw new ArtifactError(FILE, `row ${line}: composer_missing '${raw}' is not a boolean (true/false)`);
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
  const columns = schemas.schema('tracks_metadata_row')['x-csv-columns'] as string[];
  let records: string[][];
  try {
    records = parse(data, { bom: true, relax_column_count: false, skip_empty_lines: false }) as string[][];
  } catch (err) {
    throw new ArtifactError(FILE, `not valid CSV: ${(err as Error).message}`);
  }
  const header = records[0];
  if (!header || header.join(',') !== columns.join(',')) {
    throw new ArtifactError(FILE, `header is '${(header ?? []).join(',')}', expected '${columns.join(',')}'`);
  }
  const rows: TrackRow[] = [];
  const seen = new Set<string>();
  for (let i = 1; i < records.length; i++) {
    const rec = records[i]!;
    const obj: Record<string, unknown> = {};
    columns.forEach((c, j) => {
      obj[c] = typeCell(c, rec[j] ?? '', i);
    });
    const problem = schemas.check('tracks_metadata_row', obj);
    if (problem !== null) {
      throw new ArtifactError(FILE, `row ${i} (track_id ${JSON.stringify(obj.track_id)}) does not match tracks_metadata_row.schema.json: ${problem}`);
    }
    const row = obj as unknown as TrackRow;
    if (seen.has(row.track_id)) throw new ArtifactError(FILE, `row ${i}: track_id '${row.track_id}' repeats`);
    seen.add(row.track_id);
    rows.push(row);
  }
  return rows;
}
