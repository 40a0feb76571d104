/**
 * The search operations behind the routes, over one `LoadedState`: nearest neighbours of a track (with
 * optional same-album exclusion and composer filter; from the precomputed neighbour table when it holds the
 * answer, then synchronously, in the table's order: plain cosine or the re-ranking it was built with), composer-retrieval evaluation of one query (exact search, as the Python evaluation does), and
 * search by a caller-supplied vector.
 */

import { HttpError } from './errors.js';
import { dotRow, queryExclusion, type Hit, type RowExclusion } from './exact.js';
import { queryMetrics, type QueryMetrics } from './metrics.js';
import { COSINE_RANKING, tableNeighbours } from './neighbors.js';
import { hitScore, type HitScores } from './nearestBody.js';
import { rowVector, type LoadedState } from './state.js';
import { displayComposer, normalizeComposer, publicTrack, type PublicTrack } from './trackView.js';
import type { Ranking } from './types.js';

/** One hit: its rank and score, and the track's public fields (trackView.ts). */
export interface TrackHit extends PublicTrack {
  rank: number;
  score: number;
}

export interface NearestResult {
  method: string;
  /** what ordered the hits: a re-ranked table's re-ranking when it answered, else plain cosine (scores: the cosine either way) */
  ranking: Ranking;
  hits: TrackHit[];
}

/** Row of `trackId`, or a 404 naming it. */
export function rowOf(state: LoadedState, trackId: string): number {
  const row = state.rowById.get(trackId);
  if (row === undefined) throw new HttpError(404, `Unknown track_id '${trackId}': no such track in ${state.artifactVersion}`);
  return row;
}

function trackHit(state: LoadedState, i: number, row: number, score: number): TrackHit {
  const t = state.tracks[row]!;
  return { rank: i + 1, score, ...publicTrack(t) };
}

function toTrackHits(state: LoadedState, hits: Hit[]): TrackHit[] {
  const out: TrackHit[] = new Array(hits.length);
  for (let i = 0; i < hits.length; i++) out[i] = trackHit(state, i, hits[i]!.row, hits[i]!.score);
  return out;
}

/**
 * Rows (ascending) the `composer` filter finds: tracks whose standardised key or display name equals it,
 * both sides trimmed and lower-cased.
 * @throws HttpError 400 naming the value, how it is matched and an example of each form
 */
function composerFilterOrThrow(state: LoadedState, composer: string): Int32Array {
  const rows = state.composerFilterRows.get(normalizeComposer(composer));
  if (rows) return rows;
  const firstRow = state.composerRows.values().next().value?.[0];
  const example = firstRow === undefined ? null : state.tracks[firstRow]!;
  throw new HttpError(
    400,
    `Unknown composer '${composer}': no loaded track has this composer (matched against the display name or the standardised key, ignoring case and surrounding spaces` +
      (example ? `, e.g. '${displayComposer(example)}' or '${example.composer}')` : ')'),
  );
}

/** Whether ascending `rows` holds `row` (binary search: no allocation). */
function holdsRow(rows: Int32Array, row: number): boolean {
  let lo = 0;
  let hi = rows.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = rows[mid]!;
    if (r === row) return true;
    if (r < row) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** Hits of one /nearest query, best first by `ranking`, and which path produced them. */
export interface RankedRows {
  method: string;
  ranking: Ranking;
  rows: ArrayLike<number>;
  scores: HitScores;
}

function ranked(method: string, hits: Hit[]): RankedRows {
  const rows = new Array<number>(hits.length);
  const scores = new Array<number>(hits.length);
  for (let i = 0; i < hits.length; i++) {
    rows[i] = hits[i]!.row;
    scores[i] = hits[i]!.score;
  }
  return { method, ranking: COSINE_RANKING, rows, scores: { kind: 'numbers', values: scores } };
}

/**
 * Top-k neighbours of track `row` (never itself), as rows and scores. When the precomputed neighbour table is
 * loaded and k <= its k, the row's list is walked with the filters applied (same album: the exclusion the
 * backends get; composer: the rows the filter finds by key or display name) and, when k tracks survive, they are the answer
 * (`method: "precomputed"`) in the table's order with the table's exact float64 cosine scores: for a plain table
 * equal to exact search, for a re-ranked one the order Python evaluated (`ranking`: the table's re-ranking); that
 * answer is returned synchronously (no promise on the hot path). Otherwise a promise, ranked by plain cosine
 * (`ranking`: cosine, whatever the table's): with a composer filter the candidates are the rows it finds, searched
 * exactly (small and exact); else the configured backend runs with the exclusion.
 * @throws HttpError 400 (synchronously) on an unknown composer
 */
export function nearestRanked(
  state: LoadedState,
  row: number,
  k: number,
  opts: { excludeSameAlbum: boolean; composer: string | null },
): RankedRows | Promise<RankedRows> {
  const exclude = queryExclusion(row, opts.excludeSameAlbum ? state : null);
  const composerRows = opts.composer === null ? null : composerFilterOrThrow(state, opts.composer);
  const table = state.neighbors;
  if (table !== null) {
    const keep = composerRows === null ? null : (r: number) => holdsRow(composerRows, r);
    const hits = tableNeighbours(table, row, k, exclude, keep);
    if (hits !== null) {
      table.stats.served++;
      return { method: 'precomputed', ranking: table.ranking, rows: hits.rows, scores: { kind: 'rendered', rendered: table.scores, entries: hits.entries } };
    }
    table.stats.fallbacks++;
  }
  const q = rowVector(state, row);
  if (composerRows !== null) return ranked('exact (composer subset)', state.exact.searchSync(q, k, exclude, composerRows));
  const backend = state.backend;
  if (backend.searchTrack) return backend.searchTrack(state.trackIds[row]!, k, opts.excludeSameAlbum).then((hits) => ranked(backend.kind, hits));
  return backend.search(q, k, exclude).then((hits) => ranked(backend.kind, hits));
}

/** `nearestRanked` with each hit's rank and public fields (the objects the other routes and the tests use). */
export async function nearestToRow(
  state: LoadedState,
  row: number,
  k: number,
  opts: { excludeSameAlbum: boolean; composer: string | null },
): Promise<NearestResult> {
  const res = await nearestRanked(state, row, k, opts);
  const hits: TrackHit[] = new Array(res.rows.length);
  for (let i = 0; i < hits.length; i++) hits[i] = trackHit(state, i, res.rows[i]!, hitScore(res.scores, i));
  return { method: res.method, ranking: res.ranking, hits };
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
  const exclude = queryExclusion(row, excludeSameAlbum ? state : null);
  const hits = state.exact.searchSync(rowVector(state, row), k, exclude);
  const composer = state.tracks[row]!.composer;
  const tracked = toTrackHits(state, hits).map((h) => ({ ...h, relevant: composer !== null && h.composer_key === composer }));
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
  return { method: state.backend.kind, ranking: COSINE_RANKING, hits: toTrackHits(state, await state.backend.search(q, k, exclude)) };
}
