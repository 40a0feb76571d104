/**
 * The public view of a track: the fields every response that names a track carries (query, hits of
 * /nearest, /composer-eval and /search). `composer` is the display name, the catalogue's string as exported
 * (composer_raw), or the standardised key when the catalogue has none; `composer_key` is the standardised key
 * (what composer-eval's relevance compares); both are null when the composer is missing. Also the one
 * normalisation of the `composer` filter (trim + lower-case), applied alike to the request and to the names.
 */

import type { TrackRow } from './types.js';

/** A track's public fields, in the order the responses write them. */
export interface PublicTrack {
  track_id: string;
  title: string;
  composer: string | null;
  composer_key: string | null;
  album_id: string;
}

/** Display name of the track's composer: composer_raw unless empty or blank, else the key; null when missing. */
export function displayComposer(t: TrackRow): string | null {
  if (t.composer === null) return null;
  const raw = t.composer_raw;
  return raw !== null && raw.trim() !== '' ? raw : t.composer;
}

/** The public fields of `t`. */
export function publicTrack(t: TrackRow): PublicTrack {
  return { track_id: t.track_id, title: t.title, composer: displayComposer(t), composer_key: t.composer, album_id: t.album_id };
}

/** A composer name as the filter compares it: NFKC, format characters dropped, whitespace collapsed and trimmed, lower-cased. */
export function normalizeComposer(name: string): string {
  // as research_job.metadata.normalize_composer makes keys: NFKC, format characters (ZWSP, ...) dropped, any
  // whitespace run (NBSP included) one space; lower-case stands in for Python's casefold (a name with 'ß' still
  // matches through its display name)
  return name.normalize('NFKC').replace(/\p{Cf}/gu, '').replace(/\s+/gu, ' ').trim().toLowerCase();
}

/**
 * The names a `composer` filter finds `t` by, normalised: its key and its display name (one name when they
 * normalise alike); none when the composer is missing.
 */
export function composerFilterNames(t: TrackRow): string[] {
  if (t.composer === null) return [];
  const key = normalizeComposer(t.composer);
  const display = normalizeComposer(displayComposer(t)!);
  return display === key ? [key] : [key, display];
}
