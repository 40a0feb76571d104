/**
 * The search operations behind the routes, over one `LoadedState`: nearest neighbours of a track (with
 * optional same-album exclusion and composer filter), composer-retrieval evaluation of one query (exact
 * search, as the Python evaluation does), and search by a caller-supplied vector.
 */

import { HttpError } from './errors.js';
import { dotRow, type Hit, type RowExclusion } from './exact.js';
import { queryMetrics, type QueryMetrics } from './metrics.js';
import { queryExclusion, rowVector, type LoadedState } from './state.js';
import type { TrackRow } from './types.js';

export interface TrackHit {
  rank: number;
  track_id: string;
  score: number;
  title: string;
  composer: string | null;
  album_id: string;
}

export interface NearestResult {
  method: string;
  hits: TrackHit[];
}

/** Row of `trackId`, or a 404 naming it. */
export function rowOf(state: LoadedState, trackId: string): number {
  const row = state.rowById.get(trackId);
  if (row === undefined) throw new HttpError(404, `Unknown track_id '${trackId}': no such track in ${state.artifactVersion}`);
  return row;
}

/** Public fields of a track. */
export function trackSummary(t: TrackRow): Omit<TrackHit, 'rank' | 'score'> {
  return { track_id: t.track_id, title: t.title, composer: t.composer, album_id: t.album_id };
}

function toTrackHits(state: LoadedState, hits: Hit[]): TrackHit[] {
  return hits.map((h, i) => ({ rank: i + 1, score: h.score, ...trackSummary(state.tracks[h.row]!) }));
}

function composerRowsOrThrow(state: LoadedState, composer: string): Int32Array {
  const rows = state.composerRows.get(composer);
  if (!rows) {
    const example = state.composerRows.keys().next().value;
    throw new HttpError(
      400,
      `Unknown composer '${composer}': no loaded track has this standardised composer` +
        (example ? ` (names are standardised, e.g. '${example}')` : ''),
    );
  }
  return rows;
}

/**
 * Top-k neighbours of track `row` (never itself). With a composer filter the candidates are that composer's
 * rows, searched exactly (small and exact); otherwise the configured backend runs with the exclusion.
 */
export async function nearestToRow(
  state: LoadedState,
  row: number,
  k: number,
  opts: { excludeSameAlbum: boolean; composer: string | null },
): Promise<NearestResult> {
  const q = rowVector(state, row);
  const exclude = queryExclusion(state, row, opts.excludeSameAlbum);
  if (opts.composer !== null) {
    const rows = composerRowsOrThrow(state, opts.composer);
    return { method: 'exact (composer subset)', hits: toTrackHits(state, state.exact.searchSync(q, k, exclude, rows)) };
  }
  if (state.backend.searchTrack) {
    const hits = await state.backend.searchTrack(state.trackIds[row]!, k, opts.excludeSameAlbum);
    return { method: state.backend.kind, hits: toTrackHits(state, hits) };
  }
  return { method: state.backend.kind, hits: toTrackHits(state, await state.backend.search(q, k, exclude)) };
}

export interface ComposerEvalResult {
  hits: Array<TrackHit & { relevant: boolean }>;
  n_relevant_candidates: number;
  metrics: QueryMetrics | null;
  reason: 'missing_composer' | 'no_other_track_by_composer' | null;
}

/**
 * 1-based rank, in the full exact ranking (score descending, ties by ascending row; excluded rows aside), of the
 * best-ranked track by `composer`: 1 + the candidates that outrank it. One extra pass over the embeddings.
 */
function firstRelevantRank(state: LoadedState, row: number, composer: string, exclude: RowExclusion): number {
  const q = rowVector(state, row);
  let bestScore = -Infinity;
  let bestRow = -1;
  for (const r of state.composerRows.get(composer)!) {
    if (exclude.has(r)) continue;
    const s = dotRow(state.embeddings, state.dim, r, q);
    if (s > bestScore || (s === bestScore && r < bestRow)) {
      bestScore = s;
      bestRow = r;
    }
  }
  let ahead = 0;
  for (let r = 0; r < state.count; r++) {
    if (exclude.has(r)) continue;
    const s = dotRow(state.embeddings, state.dim, r, q);
    if (s > bestScore || (s === bestScore && r < bestRow)) ahead++;
  }
  return ahead + 1;
}

/**
 * Composer-retrieval evaluation of one query track, defined as in eval_results.schema.json: exact search, self
 * excluded by track id (and the query's album when `excludeSameAlbum`), relevant iff same standardised composer.
 */
export function composerEval(state: LoadedState, row: number, k: number, excludeSameAlbum: boolean): ComposerEvalResult {
  const exclude = queryExclusion(state, row, excludeSameAlbum);
  const hits = state.exact.searchSync(rowVector(state, row), k, exclude);
  const composer = state.tracks[row]!.composer;
  const tracked = toTrackHits(state, hits).map((h) => ({ ...h, relevant: composer !== null && h.composer === composer }));
  if (composer === null) return { hits: tracked, n_relevant_candidates: 0, metrics: null, reason: 'missing_composer' };
  let nRel = 0;
  for (const r of state.composerRows.get(composer)!) if (!exclude.has(r)) nRel++;
  if (nRel === 0) return { hits: tracked, n_relevant_candidates: 0, metrics: null, reason: 'no_other_track_by_composer' };
  return {
    hits: tracked,
    n_relevant_candidates: nRel,
    metrics: queryMetrics(tracked.map((h) => h.relevant), nRel, k, firstRelevantRank(state, row, composer, exclude)),
    reason: null,
  };
}

/**
 * Top-k neighbours of a caller-supplied vector (normalised here), skipping `excludeTrackIds`.
 * @throws HttpError 400 on a wrong length, a non-finite component, a zero vector or an unknown excluded id
 */
export async function searchVector(state: LoadedState, vector: readonly number[], k: number, excludeTrackIds: readonly string[]): Promise<NearestResult> {
  if (vector.length !== state.dim) throw new HttpError(400, `vector has length ${vector.length}, expected ${state.dim} (the embedding dim)`);
  let ss = 0;
  for (let d = 0; d < vector.length; d++) {
    const v = vector[d]!;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new HttpError(400, `vector[${d}] is not a finite number`);
    ss += v * v;
  }
  const norm = Math.sqrt(ss);
  if (norm === 0 || !Number.isFinite(norm)) throw new HttpError(400, 'vector has zero (or non-finite) length; cannot normalise it');
  const q = new Float64Array(vector.length);
  for (let d = 0; d < vector.length; d++) q[d] = vector[d]! / norm;
  const rows = new Set<number>();
  excludeTrackIds.forEach((id, i) => {
    const r = state.rowById.get(id);
    if (r === undefined) throw new HttpError(400, `exclude_track_ids[${i}]: unknown track_id '${id}'`);
    rows.add(r);
  });
  const exclude: RowExclusion = rows;
  return { method: state.backend.kind, hits: toTrackHits(state, await state.backend.search(q, k, exclude)) };
}
