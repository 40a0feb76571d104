/**
 * The recommenders' scores, exactly as research_job/recs/scoring.py computes them (the parity test compares to
 * 1e-4): for a listener u of recs/user_ids.json with training pairs H(u) and positives pos(u) (n_u of them),
 *
 * - cf(u, i) = U[u] . V[i] (float64 from the float32 factors: the exact scan's dot product);
 * - the content profile p_u = normalise(sum over pos(u) of w_j E[j]) and content(u, i) = p_u . E[i] (the
 *   exact scan's cosine); with no positive, content is undefined and popularity answers;
 * - hybrid(u, i) = b_u cf(u, i) / s_u + (1 - b_u) content(u, i), s_u = max_i |cf(u, i)| (1 when 0),
 *   b_u = cf_weight n_u / (n_u + light_user_events).
 *
 * Candidates leave out H(u) (positives and negatives), the request's exclusions and the tracks the listener gave
 * feedback on; ranking is score descending, then track row ascending (the /nearest heap). The popularity model
 * (and the fallback of the content models) is the trending score of popularity.json, 0 for a track off the
 * list. A listener the trained files do not know gets content from their feedback's positive tracks, else
 * popularity. Also the similar-tracks ranking (cosine to the seeds' normalised mean, optionally diversified by
 * MMR).
 *
 * Exact or candidates: with an exact serving backend (or a catalogue of at most `pool` tracks) content and
 * hybrid scan every track, as Python does. With an approximate backend (HNSW, pgvector) on a larger catalogue
 * they score candidates instead (method "candidates"): content is the top k of the backend's top `pool` for p_u
 * (exact cosines of its candidates, as /nearest; the larger search raises its recall); hybrid is the exact
 * hybrid score over the union of the CF top `pool` (from the full CF scan, which s_u needs anyway) and the
 * backend's content top `pool`. A track missing from both lists ranks below `pool` in both models; how often
 * such a track would have made the hybrid top k is the recall the test measures against the exact ranking.
 */

import { HttpError } from '../errors.js';
import { dotRow, dotRows, sortHits, topKFromScores, type Hit, type RowExclusion } from '../exact.js';
import type { ListenerFeedback } from './feedback.js';
import type { RecsModel } from './model.js';

export const REC_MODELS = ['hybrid', 'cf', 'content', 'popularity'] as const;
export type RecModel = (typeof REC_MODELS)[number];
export type PickSource = 'cf' | 'content' | 'hybrid' | 'popularity';

/** One recommended track: its row, its score under the model that picked it, and that model. */
export interface Pick {
  readonly row: number;
  readonly score: number;
  readonly source: PickSource;
}

/** What scoring reads of the loaded version: its embeddings and their full scan. */
export interface Catalogue {
  readonly embeddings: Float32Array;
  readonly dim: number;
  readonly count: number;
  /** cosine of every row with a float64 query (one reused buffer) */
  readonly scoreAll: (q: Float64Array) => Float64Array;
}

/** Training pair entries [start, end) of listener row `u`. */
export function userRange(recs: RecsModel, u: number): [number, number] {
  return [recs.offsets[u]!, recs.offsets[u + 1]!];
}

/** Number of training positives of listener row `u`. */
export function positiveCount(recs: RecsModel, u: number): number {
  let n = 0;
  const [a, b] = userRange(recs, u);
  for (let e = a; e < b; e++) if (recs.weights[e]! > 0) n++;
  return n;
}

/** Track rows and confidences of the positives of listener row `u` (ascending rows). */
export function trainingPositives(recs: RecsModel, u: number): Map<number, number> {
  const out = new Map<number, number>();
  const [a, b] = userRange(recs, u);
  for (let e = a; e < b; e++) if (recs.weights[e]! > 0) out.set(recs.items[e]!, recs.weights[e]!);
  return out;
}

/**
 * normalise(sum of w E[row]) over `weighted` (row -> confidence, iterated in ascending row order as Python's
 * CSR is), or null when it is empty or sums to zero.
 */
export function contentProfile(cat: Catalogue, weighted: ReadonlyMap<number, number>): Float64Array | null {
  if (weighted.size === 0) return null;
  const { embeddings: emb, dim } = cat;
  const p = new Float64Array(dim);
  for (const row of [...weighted.keys()].sort((x, y) => x - y)) {
    const w = weighted.get(row)!;
    const base = row * dim;
    for (let d = 0; d < dim; d++) p[d]! += w * emb[base + d]!;
  }
  return normalised(p);
}

/** `v / |v|` in place, or null when |v| is zero or not finite. */
export function normalised(v: Float64Array): Float64Array | null {
  let ss = 0;
  for (let d = 0; d < v.length; d++) ss += v[d]! * v[d]!;
  const norm = Math.sqrt(ss);
  if (!(norm > 0) || !Number.isFinite(norm)) return null;
  for (let d = 0; d < v.length; d++) v[d]! /= norm;
  return v;
}

/** Row `u` of the user factors as a float64 vector. */
function userVector(recs: RecsModel, u: number): Float64Array {
  const f = recs.factors;
  const q = new Float64Array(f);
  for (let d = 0; d < f; d++) q[d] = recs.userFactors[u * f + d]!;
  return q;
}

/** The top k by trending score (0 off the list), not excluded: score descending, then row ascending. */
export function popularPicks(recs: RecsModel, k: number, exclude: RowExclusion): Pick[] {
  return picks(topKFromScores(recs.trending, k, exclude), 'popularity');
}

const picks = (hits: Hit[], source: PickSource): Pick[] => hits.map((h) => ({ row: h.row, score: h.score, source }));

/** Everything a listener's recommendations leave out: training pairs, feedback tracks and the request's rows. */
export function listenerExclusion(recs: RecsModel | null, u: number | null, feedback: ListenerFeedback, exclude: Iterable<number>): Set<number> {
  const out = new Set<number>(exclude);
  if (recs !== null && u !== null) {
    const [a, b] = userRange(recs, u);
    for (let e = a; e < b; e++) out.add(recs.items[e]!);
  }
  for (const row of feedback.tracks) out.add(row);
  return out;
}

/** How content and hybrid were scored: every track, or the candidates of an approximate backend. */
export type ScoringMethod = 'exact' | 'candidates';

/** An approximate backend's search and the candidates per model (0: always exact). */
export interface CandidateSearch {
  readonly search: (q: Float64Array, k: number, exclude: RowExclusion) => Promise<Hit[]>;
  readonly pool: number;
}

/** Whether content and hybrid score candidates on a catalogue of `count` tracks with `pool` per model. */
export function scoresCandidates(count: number, pool: number): boolean {
  return pool > 0 && count > pool;
}

/** Picks and how they were scored. */
export interface Recommendation {
  readonly picks: Pick[];
  readonly method: ScoringMethod;
}

/**
 * Top-k picks of `model` for listener row `u` (known) or a listener the trained files do not know (u null:
 * content from the feedback's positive tracks, else trending), `exclude` left out. `candidates` (null: exact)
 * lets content and hybrid score an approximate backend's candidates on a catalogue larger than its pool.
 */
export async function recommend(
  cat: Catalogue,
  recs: RecsModel,
  u: number | null,
  model: RecModel,
  k: number,
  exclude: RowExclusion,
  feedback: ListenerFeedback,
  candidates: CandidateSearch | null = null,
): Promise<Recommendation> {
  const approx = candidates !== null && scoresCandidates(cat.count, candidates.pool) ? candidates : null;
  const exact = (p: Pick[]): Recommendation => ({ picks: p, method: 'exact' });
  const content = async (p: Float64Array): Promise<Recommendation> =>
    approx === null
      ? exact(picks(topKFromScores(cat.scoreAll(p), k, exclude), 'content'))
      : { picks: picks((await approx.search(p, Math.max(k, approx.pool), exclude)).slice(0, k), 'content'), method: 'candidates' };
  if (u === null) {
    const p = contentProfile(cat, feedback.positive);
    return p === null ? exact(popularPicks(recs, k, exclude)) : content(p);
  }
  if (model === 'popularity') return exact(popularPicks(recs, k, exclude));
  if (model === 'cf') return exact(picks(topKFromScores(recs.itemScores(userVector(recs, u)), k, exclude), 'cf'));
  const positives = trainingPositives(recs, u);
  const p = contentProfile(cat, positives);
  if (p === null) return exact(popularPicks(recs, k, exclude));
  if (model === 'content') return content(p);
  if (approx === null) return exact(picks(topKFromScores(hybridScores(recs, u, positives.size, cat.scoreAll(p)), k, exclude), 'hybrid'));
  return { picks: picks(await hybridCandidates(cat, recs, u, positives.size, p, k, exclude, approx), 'hybrid'), method: 'candidates' };
}

/** s_u (max |cf|, 1 when 0) and b_u of listener `u` from their full cf scores. */
function hybridMix(recs: RecsModel, nPositives: number, cf: Float64Array): { s: number; b: number } {
  let s = 0;
  for (let i = 0; i < cf.length; i++) {
    const a = Math.abs(cf[i]!);
    if (a > s) s = a;
  }
  return { s: s === 0 ? 1 : s, b: (recs.cfWeight * nPositives) / (nPositives + recs.lightUserEvents) };
}

/** b_u cf / s_u + (1 - b_u) content for every track (a new array; `content` is read, not kept). */
function hybridScores(recs: RecsModel, u: number, nPositives: number, content: Float64Array): Float64Array {
  const cf = recs.itemScores(userVector(recs, u));
  const { s, b } = hybridMix(recs, nPositives, cf);
  const out = new Float64Array(cf.length);
  for (let i = 0; i < cf.length; i++) out[i] = (b * cf[i]!) / s + (1 - b) * content[i]!;
  return out;
}

/**
 * The exact hybrid score of the union of the CF top `pool` and the backend's content top `pool`, top k of it
 * (score descending, then row). The cf scores are read before the backend is awaited (itemScores reuses its
 * buffer across requests).
 */
async function hybridCandidates(cat: Catalogue, recs: RecsModel, u: number, nPositives: number, p: Float64Array, k: number, exclude: RowExclusion, approx: CandidateSearch): Promise<Hit[]> {
  const uv = userVector(recs, u);
  const cf = recs.itemScores(uv);
  const { s, b } = hybridMix(recs, nPositives, cf);
  const pool = Math.max(k, approx.pool);
  const cfOf = new Map<number, number>();
  for (const h of topKFromScores(cf, pool, exclude)) cfOf.set(h.row, h.score);
  const contentOf = new Map<number, number>();
  for (const h of await approx.search(p, pool, exclude)) contentOf.set(h.row, h.score);
  const out: Hit[] = [];
  for (const row of new Set([...cfOf.keys(), ...contentOf.keys()])) {
    const c = cfOf.get(row) ?? dotRow(recs.itemFactors, recs.factors, row, uv);
    const t = contentOf.get(row) ?? dotRow(cat.embeddings, cat.dim, row, p);
    out.push({ row, score: (b * c) / s + (1 - b) * t });
  }
  return sortHits(out).slice(0, k);
}

/**
 * The normalised mean of the seeds' embeddings.
 * @throws HttpError 400 naming `track_ids` when the seeds cancel out (a zero mean cannot be normalised)
 */
export function seedsQuery(cat: Catalogue, rows: readonly number[]): Float64Array {
  const { embeddings: emb, dim } = cat;
  const q = new Float64Array(dim);
  for (const row of rows) for (let d = 0; d < dim; d++) q[d]! += emb[row * dim + d]!;
  for (let d = 0; d < dim; d++) q[d]! /= rows.length;
  const out = normalised(q);
  if (out === null) throw new HttpError(400, 'track_ids: the seeds\' embeddings sum to zero; their mean has no direction to search');
  return out;
}

/**
 * Maximal marginal relevance over `candidates` (best first by relevance): k picks, each maximising
 * lambda relevance - (1 - lambda) max cosine to the picks so far (0 before the first), ties by ascending row.
 * Each pick keeps its relevance as its score.
 */
export function mmr(emb: Float32Array, dim: number, candidates: readonly Hit[], k: number, lambda: number): Hit[] {
  const m = candidates.length;
  const maxSim = new Float64Array(m);
  const taken = new Uint8Array(m);
  const out: Hit[] = [];
  while (out.length < Math.min(k, m)) {
    let best = -1;
    let bestValue = -Infinity;
    for (let i = 0; i < m; i++) {
      if (taken[i]) continue;
      const value = lambda * candidates[i]!.score - (1 - lambda) * maxSim[i]!;
      if (best < 0 || value > bestValue || (value === bestValue && candidates[i]!.row < candidates[best]!.row)) {
        best = i;
        bestValue = value;
      }
    }
    taken[best] = 1;
    const picked = candidates[best]!;
    out.push(picked);
    for (let i = 0; i < m; i++) {
      if (taken[i]) continue;
      const s = dotRows(emb, dim, picked.row, candidates[i]!.row);
      maxSim[i] = out.length === 1 ? s : Math.max(maxSim[i]!, s);
    }
  }
  return out;
}
