/**
 * Radio: a deterministic walk over the similarity graph from a seed (a track's embedding, or a listener's content
 * profile), continued page by page through an opaque token.
 *
 * One page: the station's pool is the top-RADIO_POOL tracks of the seed vector by the serving backend (the /search
 * ranking: exact cosine scores, ties by row), leaving out the token's window of recent tracks and the listener's skipped / disliked tracks. Each
 * step then moves from the current track: the query is normalise(SEED_PULL seed + (1 - SEED_PULL) E[current]),
 * so the walk follows its neighbours without drifting off the station; the next track maximises
 * lambda cos(query, c) - (1 - lambda) max cos(c, r) over the last RECENT_MMR tracks r (MMR, lambda =
 * 1 - diversity), ties by ascending row, among candidates whose composer is not one of the last composer_gap
 * tracks' and whose album is not one of the last album_gap tracks'. The page stops early only when no candidate
 * of the pool qualifies.
 *
 * The token is base64url JSON {v: 1, seed: {track_id} | {user_id}, recent: [the last WINDOW track ids, oldest
 * first]}: the same token always gives the same page, and no track repeats within the window. Ids a reloaded
 * catalogue no longer has are ignored.
 */

import { Ajv } from 'ajv';

import { HttpError } from '../errors.js';
import { dotRow, dotRows, type Hit, type RowExclusion } from '../exact.js';

/** Tracks a token remembers (no repeats within them). */
export const WINDOW = 500;
/** Candidates of a page (the station around the seed). */
export const RADIO_POOL = 200;
/** Recent tracks the MMR term compares a candidate with. */
export const RECENT_MMR = 10;
/** Weight of the seed in each step's query. */
export const SEED_PULL = 0.5;
/** Longest token accepted (characters): the window's ids at their longest, base64url. */
export const MAX_TOKEN_CHARS = 2_000_000;

export type RadioSeed = { readonly track_id: string } | { readonly user_id: string };

export interface RadioToken {
  v: 1;
  seed: RadioSeed;
  recent: string[];
}

const tokenSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['v', 'seed', 'recent'],
  properties: {
    v: { const: 1 },
    seed: {
      oneOf: [
        { type: 'object', additionalProperties: false, required: ['track_id'], properties: { track_id: { type: 'string', minLength: 1, maxLength: 256 } } },
        { type: 'object', additionalProperties: false, required: ['user_id'], properties: { user_id: { type: 'string', minLength: 1, maxLength: 256 } } },
      ],
    },
    recent: { type: 'array', maxItems: WINDOW, items: { type: 'string', minLength: 1, maxLength: 256 } },
  },
} as const;

let validateToken: ReturnType<Ajv['compile']> | null = null;

/** The token of a page whose window is now `recent` (ids, oldest first; the last WINDOW kept). */
export function encodeToken(seed: RadioSeed, recent: readonly string[]): string {
  const token: RadioToken = { v: 1, seed, recent: recent.slice(-WINDOW) };
  return Buffer.from(JSON.stringify(token), 'utf8').toString('base64url');
}

/**
 * The token's content.
 * @throws HttpError 400 naming `continuation`: not base64url, not JSON, or not a radio token
 */
export function decodeToken(text: string): RadioToken {
  const bad = (why: string) => new HttpError(400, `continuation is not a radio token of this API (${why}); pass the continuation of the previous answer as it came`);
  if (text.length > MAX_TOKEN_CHARS) throw bad(`longer than ${MAX_TOKEN_CHARS} characters`);
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw bad('not base64url');
  let obj: unknown;
  try {
    obj = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad('not base64url JSON');
  }
  validateToken ??= new Ajv({ strict: false, allErrors: false }).compile(tokenSchema);
  if (!validateToken(obj)) {
    const e = validateToken.errors?.[0];
    throw bad(`${e?.instancePath || '(root)'} ${e?.message ?? 'invalid'}`);
  }
  return obj as RadioToken;
}

/** What a walk reads of the loaded version. */
export interface RadioCatalogue {
  readonly embeddings: Float32Array;
  readonly dim: number;
  readonly count: number;
  readonly albumOfRow: Int32Array;
  /** standardised composer of a row (null: missing, never conflicts) */
  composerOf(row: number): string | null;
  /** top-k by the serving backend (the /search ranking: exact cosine scores, ties by row) */
  search(q: Float64Array, k: number, exclude: RowExclusion): Promise<Hit[]>;
}

export interface RadioParams {
  n: number;
  composerGap: number;
  albumGap: number;
  diversity: number;
}

/** One page's tracks (rows) with the cosine of each to its step's query. */
export async function walk(cat: RadioCatalogue, seed: Float64Array, window: readonly number[], banned: ReadonlySet<number>, p: RadioParams): Promise<Hit[]> {
  const { embeddings: emb, dim } = cat;
  const exclusion = new Set<number>(banned);
  for (const r of window) exclusion.add(r);
  const pool = await cat.search(seed, Math.min(cat.count, RADIO_POOL), exclusion);
  const m = pool.length;
  const ring = new Float64Array(m * RECENT_MMR);
  let head = 0;
  let filled = 0;
  const remember = (row: number): void => {
    for (let i = 0; i < m; i++) ring[i * RECENT_MMR + head] = dotRows(emb, dim, row, pool[i]!.row);
    head = (head + 1) % RECENT_MMR;
    filled = Math.min(filled + 1, RECENT_MMR);
  };
  const tail = [...window];
  for (const r of tail.slice(-RECENT_MMR)) remember(r);
  // composer and album of each pool row and of the tail, as small integers (-1: no composer), read once
  const composerIds = new Map<string, number>();
  const composerId = (row: number): number => {
    const c = cat.composerOf(row);
    if (c === null) return -1;
    let id = composerIds.get(c);
    if (id === undefined) composerIds.set(c, (id = composerIds.size));
    return id;
  };
  const poolComposer = Int32Array.from(pool, (h) => composerId(h.row));
  const poolAlbum = Int32Array.from(pool, (h) => cat.albumOfRow[h.row]!);
  const tailComposer = tail.slice(-Math.max(p.composerGap, 1)).map(composerId);
  const tailAlbum = tail.slice(-Math.max(p.albumGap, 1)).map((r) => cat.albumOfRow[r]!);
  const used = new Uint8Array(m);
  const lambda = 1 - p.diversity;
  const out: Hit[] = [];
  while (out.length < p.n) {
    const cur = tail.length > 0 ? tail[tail.length - 1]! : -1;
    // |a s + b e|^2 = a^2 + b^2 + 2ab s.e for unit s and e
    const a = SEED_PULL;
    const b = 1 - SEED_PULL;
    const norm = cur >= 0 ? Math.sqrt(a * a + b * b + 2 * a * b * dotRow(emb, dim, cur, seed)) : 1;
    const latest = (head + RECENT_MMR - 1) % RECENT_MMR;
    const composers = p.composerGap > 0 ? tailComposer.slice(-p.composerGap).filter((c) => c >= 0) : [];
    const albums = p.albumGap > 0 ? tailAlbum.slice(-p.albumGap) : [];
    let best = -1;
    let bestValue = -Infinity;
    let bestRel = 0;
    for (let i = 0; i < m; i++) {
      if (used[i]) continue;
      const row = pool[i]!.row;
      if (albums.includes(poolAlbum[i]!)) continue;
      if (poolComposer[i]! >= 0 && composers.includes(poolComposer[i]!)) continue;
      const rel = cur >= 0 && norm > 0 ? (a * pool[i]!.score + b * ring[i * RECENT_MMR + latest]!) / norm : pool[i]!.score;
      let maxRecent = 0;
      for (let j = 0; j < filled; j++) {
        const s = ring[i * RECENT_MMR + j]!;
        if (j === 0 || s > maxRecent) maxRecent = s;
      }
      const value = lambda * rel - (1 - lambda) * maxRecent;
      if (best < 0 || value > bestValue || (value === bestValue && row < pool[best]!.row)) {
        best = i;
        bestValue = value;
        bestRel = rel;
      }
    }
    if (best < 0) break;
    used[best] = 1;
    const row = pool[best]!.row;
    out.push({ row, score: bestRel });
    tail.push(row);
    tailComposer.push(poolComposer[best]!);
    tailAlbum.push(poolAlbum[best]!);
    remember(row);
  }
  return out;
}
