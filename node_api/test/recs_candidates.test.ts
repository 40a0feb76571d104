/**
 * The candidates path of POST /recommend/user's content and hybrid (lib/recs/scoring.ts): on a seeded catalogue
 * of 6,000 clustered tracks and 200 listeners whose ALS factors follow their taste, served by a real hnswlib
 * index, the candidate ranking is compared with the exact full scan of the same model: every score it gives is
 * the exact score of that track, nothing excluded comes back, and the mean recall@20 is at least 0.97 with the
 * default-sized pool (while a pool of k loses tracks, so the measure can fail). The exact path is kept for an
 * exact backend, a catalogue no larger than the pool, and a pool of 0.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import hnswlib from 'hnswlib-node';

import { HnswBackend } from '../src/lib/backends/hnsw.js';
import { dotRow } from '../src/lib/exact.js';
import { mulberry32 } from '../src/lib/random.js';
import { NO_FEEDBACK } from '../src/lib/recs/feedback.js';
import type { RecsModel } from '../src/lib/recs/model.js';
import { listenerExclusion, recommend, type CandidateSearch, type Catalogue, type RecModel } from '../src/lib/recs/scoring.js';

const N = 6000;
const DIM = 48;
const CLUSTERS = 60;
const F = 16;
const USERS = 200;
const K = 20;

function gaussian(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
}

function normalise(v: Float64Array): Float64Array {
  const n = Math.hypot(...v);
  for (let d = 0; d < v.length; d++) v[d]! /= n;
  return v;
}

/** Scores of every row of `m` (rows x width) against q, as the loaded scorers give them. */
function scorer(m: Float32Array, width: number, rows: number): (q: Float64Array) => Float64Array {
  const out = new Float64Array(rows);
  return (q) => {
    for (let r = 0; r < rows; r++) out[r] = dotRow(m, width, r, q);
    return out;
  };
}

function world(): { cat: Catalogue; recs: RecsModel; backend: HnswBackend } {
  const rnd = mulberry32(17);
  const centers = Array.from({ length: CLUSTERS }, () => normalise(Float64Array.from({ length: DIM }, () => gaussian(rnd))));
  const clusterOf = Int32Array.from({ length: N }, () => Math.floor(rnd() * CLUSTERS));
  const emb = new Float32Array(N * DIM);
  for (let i = 0; i < N; i++) {
    const v = normalise(Float64Array.from(centers[clusterOf[i]!]!, (c) => c + 0.45 * gaussian(rnd)));
    emb.set(v, i * DIM);
  }
  // item factors: a fixed projection of the embedding (CF agrees with content only in part) plus noise
  const proj = Float64Array.from({ length: DIM * F }, () => gaussian(rnd) / Math.sqrt(DIM));
  const itemFactors = new Float32Array(N * F);
  for (let i = 0; i < N; i++) {
    for (let f = 0; f < F; f++) {
      let s = 0;
      for (let d = 0; d < DIM; d++) s += emb[i * DIM + d]! * proj[d * F + f]!;
      itemFactors[i * F + f] = s + 0.3 * gaussian(rnd);
    }
  }
  const byCluster: number[][] = Array.from({ length: CLUSTERS }, () => []);
  for (let i = 0; i < N; i++) byCluster[clusterOf[i]!]!.push(i);
  const offsets = new Int32Array(USERS + 1);
  const items: number[] = [];
  const weights: number[] = [];
  const userFactors = new Float32Array(USERS * F);
  for (let u = 0; u < USERS; u++) {
    const tastes = [Math.floor(rnd() * CLUSTERS), Math.floor(rnd() * CLUSTERS)];
    const n = u % 5 === 0 ? 3 : 10 + Math.floor(rnd() * 40); // some light listeners: the hybrid leans on content
    const pairs = new Map<number, number>();
    while (pairs.size < n) {
      const pool = byCluster[tastes[Math.floor(rnd() * 2)]!]!;
      pairs.set(pool[Math.floor(rnd() * pool.length)]!, rnd() < 0.1 ? -1 : 1 + Math.floor(rnd() * 4));
    }
    const rows = [...pairs.keys()].sort((a, b) => a - b);
    for (const r of rows) {
      items.push(r);
      weights.push(pairs.get(r)!);
      if (pairs.get(r)! > 0) for (let f = 0; f < F; f++) userFactors[u * F + f]! += itemFactors[r * F + f]! / n;
    }
    for (let f = 0; f < F; f++) userFactors[u * F + f]! += 0.05 * gaussian(rnd);
    offsets[u + 1] = items.length;
  }
  const trending = Float64Array.from({ length: N }, () => rnd());
  const userIds = Array.from({ length: USERS }, (_, u) => `u${u}`);
  const recs: RecsModel = {
    metaFile: 'recs/recs_meta.json',
    userIds,
    userRow: new Map(userIds.map((id, u) => [id, u])),
    users: USERS,
    factors: F,
    userFactors,
    itemFactors,
    itemScores: scorer(itemFactors, F, N),
    offsets,
    items: Int32Array.from(items),
    weights: Float32Array.from(weights),
    trending,
    cfWeight: 0.7,
    lightUserEvents: 10,
    eventWeights: { play: 1, like: 4, skip: -1, dislike: -4 },
  };
  const cat: Catalogue = { embeddings: emb, dim: DIM, count: N, scoreAll: scorer(emb, DIM, N) };
  const index = new hnswlib.HierarchicalNSW('ip', DIM);
  index.initIndex(N, 16, 200, 5);
  for (let i = 0; i < N; i++) index.addPoint(Array.from(emb.subarray(i * DIM, (i + 1) * DIM)), i);
  return { cat, recs, backend: new HnswBackend(index, emb, DIM, N, 64, {}) };
}

const { cat, recs, backend } = world();
const search: CandidateSearch['search'] = (q, k, ex) => backend.search(q, k, ex);

/** Mean recall@K of the candidate ranking against the exact one, after checking each candidate score is exact. */
async function recallOf(model: RecModel, pool: number): Promise<number> {
  let total = 0;
  for (let u = 0; u < USERS; u++) {
    const exclude = listenerExclusion(recs, u, NO_FEEDBACK, []);
    const full = await recommend(cat, recs, u, model, N, exclude, NO_FEEDBACK, null);
    assert.equal(full.method, 'exact');
    const exactScore = new Map(full.picks.map((p) => [p.row, p.score]));
    const got = await recommend(cat, recs, u, model, K, exclude, NO_FEEDBACK, { search, pool });
    assert.equal(got.method, 'candidates');
    assert.equal(got.picks.length, K);
    for (const p of got.picks) {
      assert.ok(!exclude.has(p.row), `u${u} ${model}: excluded row ${p.row} returned`);
      assert.equal(p.source, model);
      assert.ok(Math.abs(p.score - exactScore.get(p.row)!) < 1e-9, `u${u} ${model} row ${p.row}: ${p.score} vs exact ${exactScore.get(p.row)}`);
    }
    const want = new Set(full.picks.slice(0, K).map((p) => p.row));
    total += got.picks.filter((p) => want.has(p.row)).length / K;
  }
  return total / USERS;
}

describe('recommend: candidates of an approximate backend', () => {
  it('hybrid over the CF and content top 200 (the default pool) keeps recall@20 >= 0.97 of the exact scan, scores exact', async () => {
    const recall = await recallOf('hybrid', 200);
    assert.ok(recall >= 0.97, `hybrid recall@20 ${recall.toFixed(4)}`);
  });

  it('content from the backend keeps recall@20 >= 0.97, scores exact', async () => {
    const recall = await recallOf('content', 200);
    assert.ok(recall >= 0.97, `content recall@20 ${recall.toFixed(4)}`);
  });

  it('a pool of k loses part of the hybrid top k (the recall measure can fail)', async () => {
    const recall = await recallOf('hybrid', K);
    assert.ok(recall < 0.95, `hybrid recall@20 with a pool of ${K}: ${recall.toFixed(4)}`);
  });

  it('stays exact for a pool of 0, a catalogue no larger than the pool, cf and popularity', async () => {
    const exclude = listenerExclusion(recs, 3, NO_FEEDBACK, []);
    const exact = await recommend(cat, recs, 3, 'hybrid', K, exclude, NO_FEEDBACK, null);
    for (const pool of [0, N]) {
      const r = await recommend(cat, recs, 3, 'hybrid', K, exclude, NO_FEEDBACK, { search, pool });
      assert.equal(r.method, 'exact', `pool ${pool}`);
      assert.deepEqual(r.picks, exact.picks);
    }
    for (const model of ['cf', 'popularity'] as const) assert.equal((await recommend(cat, recs, 3, model, K, exclude, NO_FEEDBACK, { search, pool: 100 })).method, 'exact');
  });
});
