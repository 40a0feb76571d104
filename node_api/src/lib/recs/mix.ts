/**
 * Daily mixes: a listener's positive history clustered in embedding space, one mix per cluster.
 *
 * Clustering: spherical k-means (cosine) of the history's embeddings weighted by confidence, k' = min(k, history
 * size); the init is k-means++ drawn with mulberry32 seeded by the FNV-1a hash of the user id (so a listener's
 * mixes are the same until their history changes), then at most KMEANS_ITERATIONS Lloyd steps (ties: the lower
 * cluster; an emptied cluster keeps its centre and is dropped at the end). Only the MAX_HISTORY heaviest
 * positives (confidence descending, then row ascending) are clustered.
 *
 * Each mix: the cluster's centroid track (its member closest to the centre), then `size` tracks interleaving the
 * nearest tracks to the centre that are not in the history nor excluded (source "nearest", the /nearest cosine)
 * (the serving backend's /search ranking) with the cluster's own heaviest members (source "history"), one
 * history track after every two new ones; a track appears in one mix only. Mixes are ordered by their cluster's total confidence, descending.
 */

import { dotRow, type Hit, type RowExclusion } from '../exact.js';
import { mulberry32 } from '../random.js';
import { normalised } from './scoring.js';

export const MAX_HISTORY = 500;
export const KMEANS_ITERATIONS = 25;
/** One history track after this many new ones. */
export const NEW_PER_HISTORY = 2;

export interface MixCatalogue {
  readonly embeddings: Float32Array;
  readonly dim: number;
  /** top-k by the serving backend (the /search ranking) */
  search(q: Float64Array, k: number, exclude: RowExclusion): Promise<Hit[]>;
}

export interface MixTrack {
  row: number;
  score: number;
  source: 'nearest' | 'history';
}

export interface Mix {
  centroidRow: number;
  tracks: MixTrack[];
}

/** FNV-1a (32-bit) of a string's UTF-16 code units: the seed of a listener's clustering. */
export function seedOf(userId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) h = Math.imul(h ^ userId.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Cluster of each point (rows of `emb`, weights `w`) and the unit centres: spherical k-means, k-means++ init
 * from `seed`.
 */
export function kmeans(emb: Float32Array, dim: number, rows: readonly number[], w: readonly number[], k: number, seed: number): { assign: Int32Array; centres: Float64Array[] } {
  const m = rows.length;
  const rnd = mulberry32(seed);
  const centres: Float64Array[] = [];
  const vec = (row: number): Float64Array => {
    const v = new Float64Array(dim);
    for (let d = 0; d < dim; d++) v[d] = emb[row * dim + d]!;
    return v;
  };
  // k-means++: the first centre drawn by weight, each next by weight x (1 - best cosine) (a squared distance / 2 on the sphere)
  const draw = (mass: Float64Array): number => {
    let total = 0;
    for (let i = 0; i < m; i++) total += mass[i]!;
    if (!(total > 0)) return -1;
    let x = rnd() * total;
    for (let i = 0; i < m; i++) {
      x -= mass[i]!;
      if (x < 0 && mass[i]! > 0) return i;
    }
    for (let i = m - 1; i >= 0; i--) if (mass[i]! > 0) return i;
    return -1;
  };
  const best = new Float64Array(m).fill(-Infinity);
  const mass = Float64Array.from(w);
  for (let c = 0; c < k; c++) {
    const i = draw(mass);
    if (i < 0) break;
    const centre = vec(rows[i]!);
    centres.push(centre);
    for (let j = 0; j < m; j++) {
      best[j] = Math.max(best[j]!, dotRow(emb, dim, rows[j]!, centre));
      mass[j] = w[j]! * Math.max(0, 1 - best[j]!);
    }
  }
  const assign = new Int32Array(m).fill(-1);
  for (let it = 0; it < KMEANS_ITERATIONS; it++) {
    let changed = false;
    for (let j = 0; j < m; j++) {
      let bc = 0;
      let bs = -Infinity;
      for (let c = 0; c < centres.length; c++) {
        const s = dotRow(emb, dim, rows[j]!, centres[c]!);
        if (s > bs) {
          bs = s;
          bc = c;
        }
      }
      if (assign[j] !== bc) changed = true;
      assign[j] = bc;
    }
    if (!changed) break;
    for (let c = 0; c < centres.length; c++) {
      const sum = new Float64Array(dim);
      let any = false;
      for (let j = 0; j < m; j++) {
        if (assign[j] !== c) continue;
        any = true;
        const base = rows[j]! * dim;
        for (let d = 0; d < dim; d++) sum[d]! += w[j]! * emb[base + d]!;
      }
      const unit = any ? normalised(sum) : null;
      if (unit) centres[c] = unit;
    }
  }
  return { assign, centres };
}

/**
 * The mixes of a listener whose positive history is `history` (row -> confidence), excluding `exclude` (their
 * history, negatives and feedback tracks) from the new tracks.
 */
export async function dailyMixes(cat: MixCatalogue, history: ReadonlyMap<number, number>, userId: string, k: number, size: number, exclude: ReadonlySet<number>): Promise<Mix[]> {
  const ranked = [...history].sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, MAX_HISTORY);
  const rows = ranked.map(([r]) => r);
  const w = ranked.map(([, c]) => c);
  const { assign, centres } = kmeans(cat.embeddings, cat.dim, rows, w, Math.min(k, rows.length), seedOf(userId));
  const clusters = centres
    .map((centre, c) => {
      const members = rows.map((row, j) => ({ row, w: w[j]!, j })).filter((x) => assign[x.j] === c);
      const total = members.reduce((s, x) => s + x.w, 0);
      return { centre, members, total };
    })
    .filter((c) => c.members.length > 0);
  const withCos = clusters.map((c) => {
    const members = c.members.map((x) => ({ ...x, cos: dotRow(cat.embeddings, cat.dim, x.row, c.centre) }));
    let centroid = members[0]!;
    for (const x of members) if (x.cos > centroid.cos || (x.cos === centroid.cos && x.row < centroid.row)) centroid = x;
    return { ...c, members, centroidRow: centroid.row };
  });
  withCos.sort((a, b) => b.total - a.total || a.centroidRow - b.centroidRow);
  const taken = new Set<number>(exclude);
  for (const row of rows) taken.add(row);
  const used = new Set<number>();
  const mixes: Mix[] = [];
  for (const c of withCos) {
    const own = [...c.members].sort((a, b) => b.w - a.w || b.cos - a.cos || a.row - b.row).filter((x) => !used.has(x.row));
    const nearest = await cat.search(c.centre, size, taken);
    const tracks: MixTrack[] = [];
    let ni = 0;
    let hi = 0;
    while (tracks.length < size && (ni < nearest.length || hi < own.length)) {
      const historyTurn = (tracks.length + 1) % (NEW_PER_HISTORY + 1) === 0;
      if ((historyTurn && hi < own.length) || ni >= nearest.length) {
        const x = own[hi++]!;
        tracks.push({ row: x.row, score: x.cos, source: 'history' });
      } else {
        const h = nearest[ni++]!;
        tracks.push({ row: h.row, score: h.score, source: 'nearest' });
      }
    }
    for (const t of tracks) {
      used.add(t.row);
      taken.add(t.row);
    }
    mixes.push({ centroidRow: c.centroidRow, tracks });
  }
  return mixes;
}
