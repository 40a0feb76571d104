/** Unit tests: exact top-k against a brute-force reference (ties, exclusions, subsets), metrics by hand, sampling. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ExactBackend } from '../src/lib/backends/exact.js';
import { dotRow, dotRows, exactTopK, topKFromScores } from '../src/lib/exact.js';
import { queryMetrics } from '../src/lib/metrics.js';
import { mulberry32, sampleRows } from '../src/lib/random.js';
import { SimdScorer } from '../src/lib/simd.js';
import { normalizeComposer } from '../src/lib/trackView.js';
import { bruteForce } from './helpers.js';

function randomEmb(n: number, dim: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  const e = new Float32Array(n * dim);
  for (let i = 0; i < e.length; i++) e[i] = rnd() - 0.5;
  for (let r = 0; r < n; r++) {
    const row = e.subarray(r * dim, (r + 1) * dim);
    const norm = Math.hypot(...row);
    for (let d = 0; d < dim; d++) row[d] = row[d]! / norm;
  }
  // exact duplicates of row 0 at rows 7 and 3: ties broken by ascending row
  for (const dst of [7, 3]) e.copyWithin(dst * dim, 0, dim);
  return e;
}

describe('exactTopK', () => {
  const n = 500;
  const dim = 13; // not a multiple of 4: exercises the remainder loop
  const emb = randomEmb(n, dim, 42);

  it('equals a brute-force full sort for many queries and k', () => {
    for (const qRow of [0, 1, 3, 7, 100, 499]) {
      const q = Float64Array.from(emb.subarray(qRow * dim, (qRow + 1) * dim));
      for (const k of [1, 5, 10, 100]) {
        const got = exactTopK(emb, dim, n, q, k, new Set([qRow]));
        const want = bruteForce(emb, dim, q, (r) => r === qRow).slice(0, k);
        assert.deepEqual(got.map((h) => h.row), want.map((h) => h.row), `q=${qRow} k=${k}`);
        got.forEach((h, i) => assert.ok(Math.abs(h.score - want[i]!.score) < 1e-12));
      }
    }
  });

  it('breaks ties by ascending row', () => {
    const q = Float64Array.from(emb.subarray(0, dim));
    const got = exactTopK(emb, dim, n, q, 3);
    assert.deepEqual(got.map((h) => h.row), [0, 3, 7]);
    assert.equal(got[0]!.score, got[1]!.score);
    assert.equal(got[1]!.score, got[2]!.score);
    const noSelf = exactTopK(emb, dim, n, q, 2, new Set([0]));
    assert.deepEqual(noSelf.map((h) => h.row), [3, 7]);
  });

  it('searches only the given rows, and returns fewer hits when fewer rows remain', () => {
    const q = Float64Array.from(emb.subarray(5 * dim, 6 * dim));
    const rows = [2, 5, 9, 40];
    const got = exactTopK(emb, dim, n, q, 10, new Set([5]), rows);
    const want = bruteForce(emb, dim, q, (r) => r === 5 || !rows.includes(r));
    assert.deepEqual(got.map((h) => h.row), want.map((h) => h.row));
    assert.equal(got.length, 3);
    assert.deepEqual(exactTopK(emb, dim, n, q, 0), []);
  });
});

describe('dotRows', () => {
  it('is bit-identical to dotRow with the first row copied to float64', () => {
    for (const dim of [16, 17, 200]) {
      const emb = randomEmb(30, dim, dim);
      for (let a = 0; a < 30; a++) {
        const q = Float64Array.from(emb.subarray(a * dim, (a + 1) * dim));
        for (let b = 0; b < 30; b++) assert.equal(dotRows(emb, dim, a, b), dotRow(emb, dim, b, q));
      }
    }
  });
});

describe('queryMetrics', () => {
  it('matches hand-worked values', () => {
    // relevant at ranks 2 and 3, 4 relevant candidates, k = 5
    const m = queryMetrics([false, true, true, false, false], 4, 5, 2);
    assert.equal(m.precision_at_k, 0.4);
    assert.equal(m.hit_rate_at_k, 1);
    assert.equal(m.mrr, 0.5);
    const dcg = 1 / Math.log2(3) + 1 / Math.log2(4);
    const idcg = 1 + 1 / Math.log2(3) + 1 / Math.log2(4) + 1 / Math.log2(5);
    assert.ok(Math.abs(m.ndcg_at_k - dcg / idcg) < 1e-15);
  });

  it('caps the ideal DCG at k and at the number of relevant candidates', () => {
    assert.equal(queryMetrics([true, false, false], 1, 3, 1).ndcg_at_k, 1);
    assert.equal(queryMetrics([true, true], 10, 2, 1).ndcg_at_k, 1);
    // no relevant hit in the top 2; the first relevant candidate is 4th in the full ranking
    const none = queryMetrics([false, false], 3, 2, 4);
    assert.deepEqual(none, { precision_at_k: 0, hit_rate_at_k: 0, ndcg_at_k: 0, mrr: 0.25 });
  });

  it('divides precision by k even when fewer hits exist', () => {
    assert.equal(queryMetrics([true], 1, 5, 1).precision_at_k, 0.2);
  });

  it('refuses a query without relevant candidates', () => {
    assert.throws(() => queryMetrics([false], 0, 5, 1), /nRelevant must be > 0/);
  });
});

describe('sampleRows', () => {
  it('is seeded, distinct, sorted and capped at n', () => {
    const a = sampleRows(1000, 50, 0);
    assert.deepEqual(a, sampleRows(1000, 50, 0));
    assert.notDeepEqual(a, sampleRows(1000, 50, 1));
    assert.equal(new Set(a).size, 50);
    assert.deepEqual(a, [...a].sort((x, y) => x - y));
    assert.deepEqual(sampleRows(5, 50, 0), [0, 1, 2, 3, 4]);
  });
});

describe('SimdScorer (WebAssembly SIMD exact scan)', () => {
  it('gives scores bit-identical to dotRow, and the same top-k as the JS scan', () => {
    const n = 257;
    const dim = 24;
    const emb = randomEmb(n, dim, 9);
    const scorer = SimdScorer.create(emb, dim, n);
    assert.ok(scorer, 'WebAssembly SIMD is available on Node 20');
    assert.deepEqual(scorer.embeddings, emb);
    for (const qRow of [0, 5, 256]) {
      const q = Float64Array.from(emb.subarray(qRow * dim, (qRow + 1) * dim));
      const scores = scorer.scoreAll(q);
      for (let r = 0; r < n; r++) assert.equal(scores[r], dotRow(emb, dim, r, q), `row ${r}`);
      const ex = new Set([qRow]);
      assert.deepEqual(topKFromScores(scorer.scoreAll(q), 10, ex), exactTopK(emb, dim, n, q, 10, ex));
      assert.deepEqual(new ExactBackend(scorer.embeddings, dim, n, scorer).searchSync(q, 7, ex), exactTopK(emb, dim, n, q, 7, ex));
    }
  });

  it('declines dims that are not a multiple of 4 (the JS loop runs)', () => {
    assert.equal(SimdScorer.create(randomEmb(10, 13, 1), 13, 10), null);
  });
});

describe('normalizeComposer', () => {
  it('finds one composer through invisible characters, odd spaces and fullwidth letters (as Python makes keys)', () => {
    const want = 'johann sebastian bach';
    for (const v of ['Johann Sebastian Bach', ' johann  sebastian bach ', 'Johann\u00a0Sebastian\u2003Bach', 'Johann Sebas\u200btian Bach\ufeff', 'Ｊｏｈａｎｎ Ｓｅｂａｓｔｉａｎ Ｂａｃｈ']) {
      assert.equal(normalizeComposer(v), want, JSON.stringify(v));
    }
    assert.notEqual(normalizeComposer('Johann Christian Bach'), want);
  });
});
