/**
 * The columnar metadata sidecar `index/tracks_columns.json` + `index/tracks_columns.bin` (written by build-index,
 * research_job/metadata_columns.py; the contract is tracks_columns.schema.json): the metadata of every embedded
 * track, in embeddings row order, as typed arrays. Loading it replaces the CSV's parse, cell typing and per-row
 * ajv check (7 s of a 15 s start at 1M tracks) by one schema check of the header, the binary file's size and
 * sha256, and bounds checks of every section (offsets in order and inside the data, codes inside their
 * dictionary, numbers and flags as the row schema allows them), so no file can crash or hang the load. The
 * header ties it to the rows it describes: the sha256 of track_ids.json (the row order) and of the CSV it was
 * made from (a CSV rewritten since is refused as stale), the artifact version and the count. Every section is
 * checked at load; a row's object (as the CSV path makes it, frozen) is made when the row is first read, and
 * the album / composer indexes are built from the dictionary codes (loader.ts), so a start makes no row object.
 * Both files absent: the loader reads the CSV as before.
 */

import { isAscii } from 'node:buffer';
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';

import { ArtifactError } from './errors.js';
import { parseJson } from './json.js';
import { relativeTo, type ArtifactFile } from './layout.js';
import type { SchemaRegistry } from './schemas.js';
import type { ArtifactSource } from './source.js';
import type { EmbeddingsMeta, TrackRow } from './types.js';

/** A section of the binary file: `length` elements from byte `offset`. */
interface Section {
  offset: number;
  length: number;
}
type DictionaryColumn = { encoding: 'dictionary'; codes: Section; offsets: Section; data: Section };
type Utf8Column = { encoding: 'utf8'; offsets: Section; data: Section };
type ValuesColumn = { encoding: 'float64' | 'bool8'; values: Section };

/** tracks_columns.json (the fields the loader uses; the schema has the rest). */
export interface TracksColumnsHeader {
  artifact_version: string;
  count: number;
  csv_rows: number;
  track_ids_sha256: string;
  csv_sha256: string;
  file: string;
  size_bytes: number;
  sha256: string;
  columns: {
    album_id: DictionaryColumn;
    composer: DictionaryColumn;
    composer_raw: DictionaryColumn;
    title: Utf8Column;
    audio_s3_key: Utf8Column;
    track_no: ValuesColumn;
    duration_sec: ValuesColumn;
    composer_missing: ValuesColumn;
  };
}

/** The two files, from the artifact list (null: the list or the schema folder does not know them). */
export interface ColumnsFiles {
  readonly header: ArtifactFile;
  readonly bin: ArtifactFile;
}

/** What the loader needs of the vectors phase. */
export interface ColumnsRows {
  readonly trackIds: readonly string[];
  readonly meta: EmbeddingsMeta;
}

/** A dictionary column: row i's value is values[codes[i]] (code -1: null). */
export interface DictionaryCodes {
  readonly codes: Int32Array;
  readonly values: readonly string[];
}

export interface LoadedColumns {
  /**
   * metadata of row i (track id trackIds[i]): an array that makes each row (frozen) when first read, from the
   * checked columns; 1M row objects were 0.5 s of the start-up, and most rows are never read
   */
  readonly tracks: readonly TrackRow[];
  /** the dictionary columns the album and composer indexes are built from (without a row object each) */
  readonly album: DictionaryCodes;
  readonly composer: DictionaryCodes;
  readonly composerRaw: DictionaryCodes;
  /** rows of the CSV it was made from */
  readonly csvRows: number;
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * The sidecar's rows, or null when neither file exists (or the artifact list does not name them).
 * @throws ArtifactError naming the header or the binary file and what is wrong with it (the bin without its
 *   header, a header failing its schema or of other rows, a stale CSV, a size or sha256 other than recorded, a
 *   section out of bounds, a code outside its dictionary, a value the row schema forbids)
 */
export async function readTracksColumns(source: ArtifactSource, schemas: SchemaRegistry, files: ColumnsFiles | null, v: ColumnsRows): Promise<LoadedColumns | null> {
  if (files === null) return null;
  const F = schemas.paths;
  const [hasHeader, hasBin] = await Promise.all([source.exists(files.header), source.exists(files.bin)]);
  if (!hasHeader && !hasBin) return null;
  if (!hasHeader) throw new ArtifactError(files.bin, `present without ${files.header}, which describes it (rerun build-index, or delete it to load ${F.tracks_csv})`);
  if (endianness() !== 'LE') return null;
  const header = schemas.validate<TracksColumnsHeader>('tracks_columns', parseJson(files.header, await source.read(files.header)), files.header);
  const stale = (what: string): ArtifactError => new ArtifactError(files.header, `${what} (stale: rerun build-index, or delete ${files.header} and ${files.bin} to load ${F.tracks_csv})`);
  if (header.count !== v.trackIds.length) throw stale(`count is ${header.count} but ${F.track_ids_json} lists ${v.trackIds.length} track ids`);
  if (header.track_ids_sha256 !== v.meta.files.track_ids_sha256) throw stale(`track_ids_sha256 is not the sha256 of ${F.track_ids_json}: its rows follow another order`);
  if (header.artifact_version !== v.meta.artifact_version) throw stale(`artifact_version is ${JSON.stringify(header.artifact_version)} but ${F.embeddings_meta} says ${JSON.stringify(v.meta.artifact_version)}`);
  const binName = relativeTo(files.header, files.bin);
  if (header.file !== binName) throw new ArtifactError(files.header, `file is ${JSON.stringify(header.file)}, expected ${JSON.stringify(binName)}`);
  // only its digest is needed: hashed in parts, not held (109 MB at 1M tracks, whose allocation cost GC time)
  const csvSha = source.sha256 ? await source.sha256(F.tracks_csv) : sha256(await source.read(F.tracks_csv));
  if (csvSha !== header.csv_sha256) throw stale(`csv_sha256 is not the sha256 of ${F.tracks_csv} (${csvSha}): the CSV changed after it was made`);
  let data: Uint8Array = await source.read(files.bin, { exactBytes: header.size_bytes, why: `size_bytes in ${files.header}` });
  const binSha = sha256(data);
  if (binSha !== header.sha256) throw new ArtifactError(files.bin, `sha256 is ${binSha} but ${files.header} records ${header.sha256}`);
  // typed views need aligned offsets: a small file may sit in Node's buffer pool at any 8-byte boundary, copy if not
  if (data.byteOffset % 8 !== 0) data = new Uint8Array(data);
  const t = new ColumnReader(data, header, files.bin).table(v.trackIds);
  return { tracks: lazyRows(t), album: t.album, composer: t.composer, composerRaw: t.raw, csvRows: header.csv_rows };
}

/** Views of the sections of one checked binary file; every accessor bounds-checks what it views. */
class ColumnReader {
  constructor(
    private readonly data: Uint8Array,
    private readonly header: TracksColumnsHeader,
    private readonly file: ArtifactFile,
  ) {}

  private fail(column: string, why: string): ArtifactError {
    return new ArtifactError(this.file, `column ${column}: ${why}`);
  }

  private view<T>(column: string, s: Section, itemBytes: number, make: (buf: ArrayBuffer, at: number, n: number) => T): T {
    if (s.offset % 8 !== 0 || s.offset + s.length * itemBytes > this.data.length) {
      throw this.fail(column, `section at byte ${s.offset} of ${s.length} x ${itemBytes} bytes is outside the ${this.data.length} bytes of the file (or not 8-byte aligned)`);
    }
    return make(this.data.buffer as ArrayBuffer, this.data.byteOffset + s.offset, s.length);
  }

  private expectLength(column: string, what: string, got: number, want: number): void {
    if (got !== want) throw this.fail(column, `${what} has ${got} entries, expected ${want}`);
  }

  /** Strings of `offsets` into `data`: `count` of them, none empty when `nonEmpty`; decoded when read. */
  private strings(column: string, offsets: Section, data: Section, count: number, nonEmpty: boolean): Utf8Values {
    this.expectLength(column, 'offsets', offsets.length, count + 1);
    const off = this.view(column, offsets, 4, (b, at, n) => new Uint32Array(b, at, n));
    const bytes = this.view(column, data, 1, (b, at, n) => Buffer.from(b, at, n));
    if (off[0] !== 0 || off[count] !== bytes.length) throw this.fail(column, `offsets run from ${off[0]} to ${off[count]}, expected 0 to ${bytes.length}`);
    for (let i = 0; i < count; i++) {
      const len = off[i + 1]! - off[i]!;
      if (len < 0 || (nonEmpty && len === 0)) throw this.fail(column, `value ${i} has ${len} bytes (offsets must ${nonEmpty ? 'increase' : 'not decrease'})`);
    }
    // ASCII text (the usual case) decodes as latin1, one byte a character, without a UTF-8 decoder
    return { off, bytes, encoding: isAscii(bytes) ? 'latin1' : 'utf8' };
  }

  /** Every string of a section, decoded now (the dictionaries: a few distinct values). */
  private allStrings(column: string, offsets: Section, data: Section, count: number, nonEmpty: boolean): string[] {
    const u = this.strings(column, offsets, data, count, nonEmpty);
    const out = new Array<string>(count);
    for (let i = 0; i < count; i++) out[i] = utf8At(u, i);
    return out;
  }

  /** Codes per row into the distinct values (-1 = null, allowed when `nullable`), and those values. */
  private dictionary(column: string, col: DictionaryColumn, n: number, nullable: boolean): DictionaryCodes {
    this.expectLength(column, 'codes', col.codes.length, n);
    const codes = this.view(column, col.codes, 4, (b, at, k) => new Int32Array(b, at, k));
    const values = this.allStrings(column, col.offsets, col.data, col.offsets.length - 1, column !== 'composer_raw');
    const lo = nullable ? -1 : 0;
    for (let row = 0; row < n; row++) {
      const c = codes[row]!;
      if (c < lo || c >= values.length) throw this.fail(column, `row ${row} has code ${c}, outside ${lo} .. ${values.length - 1}`);
    }
    return { codes, values };
  }

  private values<T>(column: string, col: ValuesColumn, n: number, itemBytes: number, make: (buf: ArrayBuffer, at: number, k: number) => T): T {
    this.expectLength(column, 'values', col.values.length, n);
    return this.view(column, col.values, itemBytes, make);
  }

  /** Every column, checked in full: what each row is made of (as the CSV path types it) when first read. */
  table(trackIds: readonly string[]): ColumnTable {
    const n = trackIds.length;
    const c = this.header.columns;
    const album = this.dictionary('album_id', c.album_id, n, false);
    const composer = this.dictionary('composer', c.composer, n, true);
    const raw = this.dictionary('composer_raw', c.composer_raw, n, true);
    const title = this.strings('title', c.title.offsets, c.title.data, n, false);
    const key = this.strings('audio_s3_key', c.audio_s3_key.offsets, c.audio_s3_key.data, n, true);
    const f64 = (b: ArrayBuffer, at: number, k: number): Float64Array => new Float64Array(b, at, k);
    const trackNo = this.values('track_no', c.track_no, n, 8, f64);
    const duration = this.values('duration_sec', c.duration_sec, n, 8, f64);
    const missing = this.values('composer_missing', c.composer_missing, n, 1, (b, at, k) => new Uint8Array(b, at, k));
    for (let row = 0; row < n; row++) {
      const tn = trackNo[row]!;
      const d = duration[row]!;
      const m = missing[row]!;
      if (!Number.isNaN(tn) && !(Number.isInteger(tn) && tn >= 0)) throw this.fail('track_no', `row ${row} is ${tn}, not an integer >= 0 (or NaN for none)`);
      if (!Number.isNaN(d) && !(d >= 0 && Number.isFinite(d))) throw this.fail('duration_sec', `row ${row} is ${d}, not a number >= 0 (or NaN for none)`);
      if (m > 1) throw this.fail('composer_missing', `row ${row} is ${m}, not 0 or 1`);
      if ((m === 1) !== (composer.codes[row] === -1)) throw this.fail('composer', `row ${row} ${m === 1 ? 'names a composer but is marked missing' : 'has no composer but is not marked missing'}`);
    }
    return { trackIds, album, composer, raw, title, key, trackNo, duration, missing };
  }
}

/** A checked string column: value i is bytes[off[i], off[i + 1]) in `encoding`. */
interface Utf8Values {
  readonly off: Uint32Array;
  readonly bytes: Buffer;
  readonly encoding: 'latin1' | 'utf8';
}

function utf8At(u: Utf8Values, i: number): string {
  return u.bytes.toString(u.encoding, u.off[i]!, u.off[i + 1]!);
}

/** The checked columns of every row. */
interface ColumnTable {
  readonly trackIds: readonly string[];
  readonly album: DictionaryCodes;
  readonly composer: DictionaryCodes;
  readonly raw: DictionaryCodes;
  readonly title: Utf8Values;
  readonly key: Utf8Values;
  readonly trackNo: Float64Array;
  readonly duration: Float64Array;
  readonly missing: Uint8Array;
}

/** Row `row` as the CSV path makes it (typed cells, nulls), frozen. */
function makeRow(t: ColumnTable, row: number): TrackRow {
  const tn = t.trackNo[row]!;
  const d = t.duration[row]!;
  const cc = t.composer.codes[row]!;
  const rc = t.raw.codes[row]!;
  return Object.freeze({
    track_id: t.trackIds[row]!,
    album_id: t.album.values[t.album.codes[row]!]!,
    track_no: Number.isNaN(tn) ? null : tn,
    title: utf8At(t.title, row),
    composer: cc === -1 ? null : t.composer.values[cc]!,
    audio_s3_key: utf8At(t.key, row),
    duration_sec: Number.isNaN(d) ? null : d,
    composer_raw: rc === -1 ? null : t.raw.values[rc]!,
    composer_missing: t.missing[row] === 1,
  });
}

/** `s` is an array index below `n` (a canonical decimal integer). */
function rowOf(key: string | symbol, n: number): number {
  if (typeof key !== 'string') return -1;
  const row = Number(key);
  return Number.isInteger(row) && row >= 0 && row < n && String(row) === key ? row : -1;
}

/**
 * The rows as a read-only array whose row objects are made (and kept) on first read: indexing, `length`,
 * iteration and the array methods (forEach, map, find, ...) behave as on an array of every row; writes are
 * refused. Listing its keys (Object.keys, a deep comparison) makes every row.
 */
function lazyRows(t: ColumnTable): readonly TrackRow[] {
  const n = t.trackIds.length;
  const made = new Array<TrackRow | undefined>(n);
  const at = (row: number): TrackRow => (made[row] ??= makeRow(t, row));
  // the target holds every row once listed (a proxy must report the keys its target has)
  const target: TrackRow[] = new Array<TrackRow>(n);
  let complete = false;
  const fill = (): void => {
    if (complete) return;
    for (let row = 0; row < n; row++) target[row] = at(row);
    complete = true;
  };
  const refuse = (): boolean => false;
  return new Proxy(target, {
    get(tgt, key, receiver) {
      const row = rowOf(key, n);
      return row >= 0 ? at(row) : Reflect.get(tgt, key, receiver);
    },
    has(tgt, key) {
      return rowOf(key, n) >= 0 || Reflect.has(tgt, key);
    },
    ownKeys(tgt) {
      fill();
      return Reflect.ownKeys(tgt);
    },
    getOwnPropertyDescriptor(tgt, key) {
      const row = rowOf(key, n);
      if (row >= 0 && !complete) tgt[row] = at(row);
      return Reflect.getOwnPropertyDescriptor(tgt, key);
    },
    set: refuse,
    defineProperty: refuse,
    deleteProperty: refuse,
    setPrototypeOf: refuse,
    preventExtensions: refuse,
  });
}
