/**
 * The recommendation endpoints' operations over one loaded state (the routes only validate and call these):
 * similar tracks, a listener's recommendations, a radio page and the daily mixes. Ids are resolved here (an
 * unknown track or listener is a 404 naming it; recommend/user's unknown listener is a cold start instead), the
 * listener's feedback is read once per request, and each answer names its tracks with their public fields.
 */

import { HttpError } from '../errors.js';
import type { Hit, RowExclusion } from '../exact.js';
import type { LoadedState } from '../state.js';
import { publicTrack, type PublicTrack } from '../trackView.js';
import { DEFAULT_EVENT_WEIGHTS, NO_FEEDBACK, summarizeFeedback, type FeedbackReader, type ListenerFeedback } from './feedback.js';
import { dailyMixes } from './mix.js';
import type { RecsModel } from './model.js';
import { decodeToken, encodeToken, walk, type RadioSeed } from './radio.js';
import { contentProfile, listenerExclusion, mmr, recommend, scoresCandidates, seedsQuery, trainingPositives, userRange, type Catalogue, type RecModel, type ScoringMethod } from './scoring.js';

/** Candidates MMR re-ranks per requested track. */
const MMR_POOL_PER_PICK = 10;

export type TrackItem = PublicTrack & { score: number };

/** The recommenders, or the 503 saying why they are off. */
export function requireRecs(state: LoadedState): RecsModel {
  if (!state.recs.on) throw new HttpError(503, state.recs.reason);
  return state.recs.value;
}

/** Rows of `ids` (field `field` of the body). @throws HttpError 404 naming the field and the first unknown id */
export function rowsOf(state: LoadedState, ids: readonly string[], field: string): number[] {
  return ids.map((id, i) => {
    const row = state.rowById.get(id);
    if (row === undefined) throw new HttpError(404, `${field}[${i}]: unknown track_id '${id}': no such track in ${state.artifactVersion}`);
    return row;
  });
}

/** The state as scoring reads it (never spread: the state's catalogue search index is built on first read). */
function catalogue(state: LoadedState): Catalogue {
  return state;
}

function item(state: LoadedState, row: number, score: number): TrackItem {
  return { ...publicTrack(state.tracks[row]!), score };
}

/** A listener as the recommenders see them: their row (null: unknown), feedback, positives and negatives. */
interface Listener {
  readonly u: number | null;
  readonly feedback: ListenerFeedback;
  /** training positives (known listener), else the feedback's positive tracks */
  readonly positives: ReadonlyMap<number, number>;
  /** training negatives and the feedback's skipped / disliked tracks */
  readonly negatives: ReadonlySet<number>;
}

async function listener(state: LoadedState, reader: FeedbackReader, userId: string): Promise<Listener> {
  const recs = state.recs.on ? state.recs.value : null;
  const counts = reader === null ? [] : await reader(userId);
  const feedback = counts.length === 0 ? NO_FEEDBACK : summarizeFeedback(counts, state.rowById, recs?.eventWeights ?? DEFAULT_EVENT_WEIGHTS);
  const u = recs?.userRow.get(userId) ?? null;
  const negatives = new Set<number>(feedback.negative);
  if (recs !== null && u !== null) {
    const [a, b] = userRange(recs, u);
    for (let e = a; e < b; e++) if (recs.weights[e]! < 0) negatives.add(recs.items[e]!);
  }
  const positives = recs !== null && u !== null ? trainingPositives(recs, u) : feedback.positive;
  return { u, feedback, positives, negatives };
}

/** POST /recommend/similar: nearest tracks to the seeds' normalised mean by the serving backend (MMR-diversified when diversity > 0). */
export async function similar(state: LoadedState, body: { track_ids: string[]; k: number; exclude: string[]; diversity: number }): Promise<{ items: TrackItem[] }> {
  const seeds = rowsOf(state, body.track_ids, 'track_ids');
  const exclude = new Set<number>([...seeds, ...rowsOf(state, body.exclude, 'exclude')]);
  const q = seedsQuery(catalogue(state), seeds);
  let hits: Hit[];
  // the serving backend, as POST /search: exact float64 cosine scores, ties by row (HNSW candidates re-scored)
  if (body.diversity === 0) hits = await state.backend.search(q, body.k, exclude);
  else {
    const pool = await state.backend.search(q, Math.min(state.count, body.k * MMR_POOL_PER_PICK), exclude);
    hits = mmr(state.embeddings, state.dim, pool, body.k, 1 - body.diversity);
  }
  return { items: hits.map((h) => item(state, h.row, h.score)) };
}

/**
 * How /recommend/user scores content and hybrid on `state` (GET /models says it): the candidates of an
 * approximate backend (HNSW, pgvector) when the catalogue has more than `pool` tracks, else exact scans.
 */
export function contentScoring(state: LoadedState, pool: number): ScoringMethod {
  return state.backend.kind !== 'exact' && scoresCandidates(state.count, pool) ? 'candidates' : 'exact';
}

/**
 * POST /recommend/user: the listener's top-k under `model` (a cold start for a listener train-recs did not see).
 * `pool`: candidates per model of content and hybrid with an approximate backend (RECS_CANDIDATES; 0: exact).
 */
export async function recommendUser(
  state: LoadedState,
  reader: FeedbackReader,
  body: { user_id: string; k: number; model: RecModel; exclude: string[] },
  pool: number,
): Promise<{ user_id: string; known_user: boolean; model: RecModel; method: ScoringMethod; items: Array<TrackItem & { source: string }> }> {
  const recs = requireRecs(state);
  const excluded = rowsOf(state, body.exclude, 'exclude');
  const who = await listener(state, reader, body.user_id);
  const exclude = listenerExclusion(recs, who.u, who.feedback, excluded);
  const candidates = contentScoring(state, pool) === 'exact' ? null : { search: (q: Float64Array, k: number, ex: RowExclusion) => state.backend.search(q, k, ex), pool };
  const { picks, method } = await recommend(catalogue(state), recs, who.u, body.model, body.k, exclude, who.feedback, candidates);
  return {
    user_id: body.user_id,
    known_user: who.u !== null,
    model: body.model,
    method,
    items: picks.map((p) => ({ ...item(state, p.row, p.score), source: p.source })),
  };
}

export interface RadioBody {
  seed_track_id?: string;
  user_id?: string;
  n: number;
  continuation?: string;
  composer_gap: number;
  album_gap: number;
  diversity: number;
}

/** The seed of a radio request: the body's, or the continuation's (which must agree). @throws HttpError 400 */
function radioSeed(body: RadioBody): { seed: RadioSeed; recent: string[] } {
  if (body.seed_track_id !== undefined && body.user_id !== undefined) throw new HttpError(400, 'give one of seed_track_id and user_id, not both');
  const given: RadioSeed | null = body.seed_track_id !== undefined ? { track_id: body.seed_track_id } : body.user_id !== undefined ? { user_id: body.user_id } : null;
  if (body.continuation === undefined) {
    if (given === null) throw new HttpError(400, 'give one of seed_track_id and user_id (or the continuation of a previous answer)');
    return { seed: given, recent: 'track_id' in given ? [given.track_id] : [] };
  }
  const token = decodeToken(body.continuation);
  if (given !== null && JSON.stringify(given) !== JSON.stringify(token.seed)) {
    throw new HttpError(400, `continuation belongs to the radio of ${JSON.stringify(token.seed)}, not of ${JSON.stringify(given)}`);
  }
  return { seed: token.seed, recent: token.recent };
}

/** POST /radio/generate: the next page of a station and the token of the one after. */
export async function radio(state: LoadedState, reader: FeedbackReader, body: RadioBody): Promise<{ tracks: TrackItem[]; continuation: string }> {
  const { seed, recent } = radioSeed(body);
  let seedVector: Float64Array;
  let banned: ReadonlySet<number> = new Set();
  if ('track_id' in seed) {
    const row = rowsOf(state, [seed.track_id], 'seed_track_id')[0]!;
    seedVector = seedsQuery(catalogue(state), [row]);
  } else {
    const who = await listener(state, reader, seed.user_id);
    const p = contentProfile(catalogue(state), who.positives);
    if (p === null) throw new HttpError(404, `user_id '${seed.user_id}' has no listening history to start a radio from (not a listener of recs/ with a positive event, and no play or like in the feedback store)`);
    seedVector = p;
    banned = who.negatives;
  }
  const window: number[] = [];
  for (const id of recent) {
    const row = state.rowById.get(id);
    if (row !== undefined) window.push(row);
  }
  const hits = await walk(
    {
      embeddings: state.embeddings,
      dim: state.dim,
      count: state.count,
      albumOfRow: state.albumOfRow,
      composerOf: (row) => state.tracks[row]!.composer,
      search: (q, k, ex) => state.backend.search(q, k, ex),
    },
    seedVector,
    window,
    banned,
    { n: body.n, composerGap: body.composer_gap, albumGap: body.album_gap, diversity: body.diversity },
  );
  const tracks = hits.map((h) => item(state, h.row, h.score));
  return { tracks, continuation: encodeToken(seed, [...recent, ...tracks.map((t) => t.track_id)]) };
}

/** POST /daily-mix: one mix per taste cluster of the listener's positive history. */
export async function dailyMix(
  state: LoadedState,
  reader: FeedbackReader,
  body: { user_id: string; k: number; size: number },
): Promise<{ user_id: string; mixes: Array<{ mix_id: string; centroid_track_id: string; tracks: Array<TrackItem & { source: string }> }> }> {
  const recs = requireRecs(state);
  const who = await listener(state, reader, body.user_id);
  if (who.positives.size === 0) {
    throw new HttpError(404, `user_id '${body.user_id}' has no positive listening history to mix (not a listener of recs/ with a positive event, and no play or like in the feedback store)`);
  }
  const exclude = listenerExclusion(recs, who.u, who.feedback, who.negatives);
  const mixes = await dailyMixes({ embeddings: state.embeddings, dim: state.dim, search: (q, k, ex) => state.backend.search(q, k, ex) }, who.positives, body.user_id, body.k, body.size, exclude);
  return {
    user_id: body.user_id,
    mixes: mixes.map((m, i) => ({
      mix_id: `mix-${i + 1}`,
      centroid_track_id: state.trackIds[m.centroidRow]!,
      tracks: m.tracks.map((t) => ({ ...item(state, t.row, t.score), source: t.source })),
    })),
  };
}
