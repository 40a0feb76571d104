/**
 * Parity inside Node on the generated fixture: the HNSW path returns exactly the exact backend's top-k (rows
 * and scores) for every track, and composer-eval metrics averaged over all tracks equal the eval_results.json
 * that make_fixture.py computed in Python.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { loadArtifacts } from '../src/lib/loader.js';
import type { QueryMetrics } from '../src/lib/metrics.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { composerEval } from '../src/lib/search.js';
import { LocalDirSource } from '../src/lib/source.js';
import { queryExclusion } from '../src/lib/exact.js';
import { rowVector, type LoadedState } from '../src/lib/state.js';
import { cleanupTmp, generatedFixture, readJson, SCHEMA_DIR } from './helpers.js';

let state: LoadedState;
let evalFile: Record<string, any>;

before(async () => {
  const dir = generatedFixture();
  state = await loadArtifacts(new LocalDirSource(dir), new SchemaRegistry(SCHEMA_DIR), {});
  evalFile = readJson(path.join(dir, 'eval/eval_results.json'));
});
after(cleanupTmp);

const KEYS: Array<keyof QueryMetrics> = ['precision_at_k', 'hit_rate_at_k', 'ndcg_at_k', 'mrr'];

function means(list: QueryMetrics[]): Record<string, number> {
  return Object.fromEntries(KEYS.map((m) => [m, list.reduce((s, q) => s + q[m], 0) / list.length]));
}

function close(a: Record<string, number>, b: Record<string, number>, what: string): void {
  for (const m of KEYS) assert.ok(Math.abs(a[m]! - b[m]!) < 1e-12, `${what} ${m}: node ${a[m]} vs python ${b[m]}`);
}

describe('HNSW path vs exact search', () => {
  it('uses HNSW and returns the exact top-k for every track (k = 1, 5, 10, 30; with and without same-album exclusion)', async () => {
    assert.equal(state.backend.kind, 'hnsw');
    for (const sameAlbum of [false, true]) {
      for (let row = 0; row < state.count; row++) {
        const q = rowVector(state, row);
        const ex = queryExclusion(row, sameAlbum ? state : null);
        for (const k of [1, 5, 10, 30]) {
          const want = state.exact.searchSync(q, k, ex);
          const got = await state.backend.search(q, k, ex);
          assert.deepEqual(got, want, `row ${row} k ${k} sameAlbum ${sameAlbum}`);
        }
      }
    }
  });
});

describe('composer-eval vs the Python evaluation', () => {
  for (const [block, sameAlbum] of [['overall', false], ['exclude_same_album', true]] as const) {
    it(`per-query metrics averaged over all tracks equal eval_results.${block}`, () => {
      const k = evalFile.k as number;
      const counted: QueryMetrics[] = [];
      const reasons: Record<string, number> = {};
      for (let row = 0; row < state.count; row++) {
        const r = composerEval(state, row, k, sameAlbum);
        if (r.metrics) counted.push(r.metrics);
        else reasons[r.reason!] = (reasons[r.reason!] ?? 0) + 1;
      }
      assert.equal(counted.length, evalFile[block].n_queries);
      close(means(counted), evalFile[block].metrics, block);
      if (!sameAlbum) {
        assert.equal(reasons.missing_composer, evalFile.query_policy.n_excluded_missing_composer);
        assert.equal(reasons.no_other_track_by_composer, evalFile.query_policy.n_excluded_no_other_track);
      }
    });
  }

  it('per-composer means equal eval_results.per_composer', () => {
    const k = evalFile.k as number;
    for (const pc of evalFile.per_composer as Array<Record<string, any>>) {
      const rows = [...state.composerRows.get(pc.composer)!];
      assert.equal(rows.length, pc.n_tracks);
      const ms = rows.map((r) => composerEval(state, r, k, false).metrics).filter((m): m is QueryMetrics => m !== null);
      assert.equal(ms.length, pc.n_queries);
      close(means(ms), pc as Record<string, number>, pc.composer);
    }
  });
});
