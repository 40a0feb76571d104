/**
 * Catalogue search (GET /tracks?q=): every row's title, composer display name, composer_key and album_id,
 * normalised once at load (`normalizeSearch`: NFKC, format characters dropped, control characters and
 * whitespace runs one space, trimmed, lower-cased) and joined into a few long strings.
 * A query is its normalised whitespace-separated terms; a row matches when every term is a substring of one
 * of its fields. One query is one `indexOf` pass of its longest term over those strings, and only the rows
 * that pass are checked for the other terms; the number of terms is capped (MAX_TERMS), so the work of a
 * query is bounded by the catalogue's text times that cap. Order: rows whose title starts with the whole
 * normalised query, then the others, each in catalogue (row) order.
 */

import { displayComposer, normalizeComposer } from './trackView.js';
import type { TrackRow } from './types.js';

/** Most distinct terms a query may have (after dropping repeats and terms inside another term). */
export const MAX_TERMS = 12;

/** Characters per text chunk: well under V8's longest string (2^29 - 24). */
const CHUNK_CHARS = 1 << 26;

/** Separator of fields and rows: a control character, which normalizeSearch never leaves in a field. */
const SEP = '\n';

/**
 * A text as the search compares it: normalizeComposer's folding (NFKC, format characters dropped, whitespace
 * runs one space, trimmed, lower-cased: String#toLowerCase is the root locale's mapping, the same on every
 * server), with control characters turned into spaces first.
 */
export function normalizeSearch(text: string): string {
  return normalizeComposer(text.replace(/\p{Cc}/gu, ' '));
}

/** One slice of the catalogue's text: rows `firstRow ..` of it, row j at `text[starts[j], starts[j + 1] - 1)`. */
interface Chunk {
  readonly text: string;
  readonly firstRow: number;
  /** start offset of each row of the chunk, and one past the last row's separator */
  readonly starts: Int32Array;
}

/** The normalised text of the catalogue, built once per loaded version. */
export interface CatalogIndex {
  readonly count: number;
  readonly chunks: readonly Chunk[];
}

/** A query's result: how many rows match, and the first `limit` of them in the search's order. */
export interface CatalogMatches {
  readonly total: number;
  readonly rows: number[];
}

/** The fields of `t` a query searches, normalised, title first (the prefix ordering relies on it). */
function rowText(t: TrackRow): string {
  const fields = [t.title, displayComposer(t) ?? '', t.composer ?? '', t.album_id];
  return fields.map(normalizeSearch).join(SEP) + SEP;
}

/** Normalise every row's fields into chunks of the catalogue's text (row order kept). */
export function buildCatalogIndex(tracks: readonly TrackRow[]): CatalogIndex {
  const chunks: Chunk[] = [];
  let parts: string[] = [];
  let starts: number[] = [0];
  let firstRow = 0;
  let length = 0;
  const flush = (nextRow: number): void => {
    if (parts.length === 0) return;
    chunks.push(Object.freeze({ text: parts.join(''), firstRow, starts: Int32Array.from(starts) }));
    parts = [];
    starts = [0];
    firstRow = nextRow;
    length = 0;
  };
  tracks.forEach((t, row) => {
    const text = rowText(t);
    if (length + text.length > CHUNK_CHARS) flush(row);
    parts.push(text);
    length += text.length;
    starts.push(length);
  });
  flush(tracks.length);
  return Object.freeze({ count: tracks.length, chunks: Object.freeze(chunks) });
}

/**
 * The distinct terms of a normalised query, longest first, without those contained in a longer one (a row
 * holding the longer holds them too).
 */
export function queryTerms(normalised: string): string[] {
  const unique = [...new Set(normalised.split(' ').filter((w) => w !== ''))].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  const kept: string[] = [];
  for (const term of unique) if (!kept.some((k) => k.includes(term))) kept.push(term);
  return kept;
}

/**
 * Rows matching every term of `q` (see the module docstring): the total, and the first `limit` rows (title
 * starting with the whole query first, then row order).
 * A query with no term (only spaces, control or format characters) matches nothing: an empty answer, not an
 * error, since it is a well-formed string a search box may send.
 * @throws RangeError when `q` has more than MAX_TERMS distinct terms (the route answers 400)
 */
export function searchCatalog(index: CatalogIndex, q: string, limit: number): CatalogMatches {
  const whole = normalizeSearch(q);
  const terms = queryTerms(whole);
  if (terms.length === 0) return { total: 0, rows: [] };
  if (terms.length > MAX_TERMS) throw new RangeError(`q has ${terms.length} distinct terms; at most ${MAX_TERMS} are searched together`);
  const [primary, ...others] = terms as [string, ...string[]];
  const prefix: number[] = [];
  const rest: number[] = [];
  let nPrefix = 0;
  let nRest = 0;
  for (const chunk of index.chunks) {
    const { text, starts, firstRow } = chunk;
    let j = 0;
    for (let at = text.indexOf(primary); at !== -1; ) {
      // the row holding the hit (hits only move forward; a term never spans a separator)
      while (starts[j + 1]! <= at) j++;
      const start = starts[j]!;
      const end = starts[j + 1]!;
      const fields = others.length === 0 ? '' : text.slice(start, end);
      if (others.every((t) => fields.includes(t))) {
        if (text.startsWith(whole, start)) {
          if (nPrefix++ < limit) prefix.push(firstRow + j);
        } else if (nRest++ < limit) rest.push(firstRow + j);
      }
      at = text.indexOf(primary, end);
    }
  }
  return { total: nPrefix + nRest, rows: prefix.concat(rest).slice(0, limit) };
}
