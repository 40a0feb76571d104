/**
 * HTTP byte ranges (RFC 9110 section 14) of a representation of known size: what a `Range` header asks for,
 * whether an `If-Range` or `If-None-Match` validator matches an entity tag. One range is served (206); several
 * are answered with the whole body (200, which the RFC allows: a server may ignore Range); a header that is
 * not a valid bytes range is ignored too (200); a valid one that selects nothing is unsatisfiable (416).
 */

/** What a Range header asks of a body of `size` bytes. */
export type RangeAnswer =
  | { readonly kind: 'whole' }
  | { readonly kind: 'partial'; readonly start: number; readonly end: number }
  | { readonly kind: 'unsatisfiable' };

const WHOLE: RangeAnswer = Object.freeze({ kind: 'whole' });
const UNSATISFIABLE: RangeAnswer = Object.freeze({ kind: 'unsatisfiable' });

/** `bytes=a-b`, `bytes=a-` or `bytes=-n` (one range; spaces around it allowed, unit case-insensitive). */
const ONE_RANGE = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i;
const MULTI_RANGE = /^\s*bytes\s*=.*,/i;

/**
 * The answer to `header` for a body of `size` bytes: `partial` with inclusive `start..end` (`end` clamped to
 * the last byte), `whole` (no header, a malformed one, several ranges), or `unsatisfiable` (the first byte
 * asked is past the end, a suffix of 0 bytes, or any range of an empty body).
 */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return WHOLE;
  if (MULTI_RANGE.test(header)) return WHOLE;
  const m = ONE_RANGE.exec(header);
  if (!m) return WHOLE;
  const [, first, last] = m as unknown as [string, string, string];
  if (first === '' && last === '') return WHOLE;
  if (first === '') {
    // a suffix: the last n bytes
    const n = Number(last);
    if (n === 0 || size === 0) return UNSATISFIABLE;
    return { kind: 'partial', start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Number(last);
  if (last !== '' && end < start) return WHOLE;
  if (start >= size) return UNSATISFIABLE;
  return { kind: 'partial', start, end: Math.min(end, size - 1) };
}

/** The entity tags of an `If-None-Match` / `If-Range` value (weak prefixes dropped: weak comparison), or '*'. */
function tagsOf(header: string): string[] | '*' {
  if (header.trim() === '*') return '*';
  return [...header.matchAll(/(?:W\/)?("[^"]*")/g)].map((m) => m[1]!);
}

/** Whether `If-None-Match: header` matches `etag` (weak comparison, as RFC 9110 13.1.2 says for GET). */
export function noneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const tags = tagsOf(header);
  return tags === '*' || tags.includes(etag);
}

/**
 * Whether a Range may be honoured under `If-Range: header` (absent: yes). An entity tag must equal `etag`
 * (strong comparison: a weak tag never matches); a date is not a validator this server issues, so no.
 */
export function ifRangeAllows(header: string | undefined, etag: string): boolean {
  if (header === undefined) return true;
  return header.trim() === etag;
}
