/**
 * VECTOR_BACKEND=pgvector against a real PostgreSQL + pgvector (pgserver, started by
 * test/fixtures/publish_server.py; the version published by the Python publisher): for every track of a
 * 300-track fixture, with and without exclude_same_album, Node's top-5 equals the exact backend's (the recall
 * of the HNSW path is measured and reported; a swap is allowed only between near-equal scores), equals Python's
 * `nearest_pgvector` exactly, and the start-up check refuses a version whose N or dim differ.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { FastifyInstance } from 'fastify';

import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/plugins/env.js';
import { cleanupTmp, SCHEMA_DIR, tmp } from './helpers.js';
import { PublishFixture } from './publishFixture.js';

const N = 300;
let fx: PublishFixture;
let dir: string;
let version: string;
let pgApp: FastifyInstance;
let exactApp: FastifyInstance;

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { ARTIFACTS_DIR: dir, ARTIFACT_SCHEMA_DIR: SCHEMA_DIR, LOG_LEVEL: 'silent', RECALL_SAMPLE: '100', ...extra };
}

before(async () => {
  fx = await PublishFixture.start({ pg: true });
  dir = (await fx.request<{ dir: string }>({ op: 'make', root: tmp('node-api-pg-'), n: N, dim: 32, seed: 11 })).dir;
  version = (await fx.request({ op: 'publish_pg', dir, release: 'r1' })).report.version;
  pgApp = await buildApp({ config: loadConfig(env({ VECTOR_BACKEND: 'pgvector', DATABASE_URL: fx.ready.pg! })), logger: false });
  exactApp = await buildApp({ config: loadConfig(env({ VECTOR_BACKEND: 'exact' })), logger: false });
});

after(async () => {
  await pgApp?.close();
  await exactApp?.close();
  await fx?.close();
  cleanupTmp();
});

interface Hit {
  track_id: string;
  score: number;
}

async function hits(a: FastifyInstance, id: string, album: boolean): Promise<Hit[]> {
  const r = await a.inject(`/tracks/${id}/nearest?k=5${album ? '&exclude_same_album=true' : ''}`);
  assert.equal(r.statusCode, 200, r.body);
  return r.json().hits as Hit[];
}

const ids = Array.from({ length: N }, (_, i) => `t${String(i).padStart(5, '0')}`);

describe('pgvector backend', () => {
  it('reports the version, table and measured recall in GET /models', async () => {
    const m = (await pgApp.inject('/models')).json();
    assert.equal(m.backend, 'pgvector');
    assert.equal(m.pgvector.version, version);
    assert.match(m.pgvector.table, /^track_vectors_/);
    assert.equal(m.pgvector.ef_search, 100);
    assert.equal(m.recall.sample_size, 100);
    assert.ok(m.recall.recall_at_5 >= 0.99, `recall@5 ${m.recall.recall_at_5}`);
  });

  for (const album of [false, true]) {
    it(`top-5 equals the exact backend for all ${N} tracks${album ? ' (exclude_same_album)' : ''}`, async (t) => {
      let found = 0;
      let identical = 0;
      let maxScoreDiff = 0;
      for (const id of ids) {
        const [got, want] = [await hits(pgApp, id, album), await hits(exactApp, id, album)];
        assert.equal(got.length, 5);
        assert.ok(!got.some((h) => h.track_id === id), `${id} returned itself`);
        const wantIds = new Set(want.map((h) => h.track_id));
        found += got.filter((h) => wantIds.has(h.track_id)).length;
        if (got.map((h) => h.track_id).join() === want.map((h) => h.track_id).join()) identical++;
        else {
          // only a swap between near-equal exact scores (pgvector accumulates the cosine in float32)
          got.forEach((h, i) => {
            if (h.track_id !== want[i]!.track_id) assert.ok(Math.abs(h.score - want[i]!.score) < 1e-5, `${id} rank ${i + 1}: ${h.track_id} vs ${want[i]!.track_id}`);
          });
        }
        got.forEach((h, i) => (maxScoreDiff = Math.max(maxScoreDiff, Math.abs(h.score - want[i]!.score))));
      }
      const recall = found / (5 * N);
      t.diagnostic(`pgvector vs exact${album ? ' (exclude_same_album)' : ''}: recall@5 ${recall.toFixed(4)}, identical ranking ${identical}/${N}, max |score diff| ${maxScoreDiff.toExponential(2)}`);
      assert.ok(recall >= 0.99, `recall@5 ${recall}`);
      assert.ok(maxScoreDiff < 1e-5);
    });
  }

  it("returns exactly Python nearest_pgvector's ranking (same SQL)", async () => {
    const sample = ids.filter((_, i) => i % 10 === 0);
    for (const album of [false, true]) {
      const py = (await fx.request({ op: 'nearest_pg', version, track_ids: sample, k: 5, exclude_same_album: album })).nearest as Record<string, [string, number][]>;
      for (const id of sample) {
        const got = await hits(pgApp, id, album);
        assert.deepEqual(got.map((h) => h.track_id), py[id]!.map((p) => p[0]), id);
        got.forEach((h, i) => assert.ok(Math.abs(h.score - py[id]![i]![1]) < 1e-9));
      }
    }
  });

  it('k = 100 with exclude_same_album: the ANN list runs short, the exact rerun fills it', async (t) => {
    const before = (await pgApp.inject('/models')).json().pgvector.exact_reruns as number;
    let identical = 0;
    for (const id of ids.slice(0, 10)) {
      const [g, w] = await Promise.all([pgApp, exactApp].map((a) => a.inject(`/tracks/${id}/nearest?k=100&exclude_same_album=true`)));
      const got = g!.json().hits as Hit[];
      const want = w!.json().hits as Hit[];
      assert.equal(got.length, 100);
      got.forEach((h, i) => {
        if (h.track_id !== want[i]!.track_id) assert.ok(Math.abs(h.score - want[i]!.score) < 1e-5, `${id} rank ${i + 1}`);
      });
      if (got.map((h) => h.track_id).join() === want.map((h) => h.track_id).join()) identical++;
    }
    const reruns = ((await pgApp.inject('/models')).json().pgvector.exact_reruns as number) - before;
    t.diagnostic(`k=100 exclude_same_album: ${reruns}/10 exact reruns, identical ranking ${identical}/10`);
    assert.ok(reruns >= 1);
  });

  it('answers 404 for an unknown track and serves POST /search', async () => {
    assert.equal((await pgApp.inject('/tracks/nope/nearest?k=5')).statusCode, 404);
    const m = (await exactApp.inject('/tracks/t00003/nearest?k=5')).json();
    const vec = Array.from({ length: 32 }, (_, d) => Math.sin(d + 1));
    const body = { vector: vec, k: 5, exclude_track_ids: ['t00003'] };
    const [p, e] = await Promise.all([pgApp.inject({ method: 'POST', url: '/search', payload: body }), exactApp.inject({ method: 'POST', url: '/search', payload: body })]);
    assert.equal(p.statusCode, 200, p.body);
    assert.deepEqual(p.json().hits.map((h: Hit) => h.track_id), e.json().hits.map((h: Hit) => h.track_id));
    assert.ok(m.hits.length === 5);
  });

  it('refuses a pgvector version whose N or dim differ from the artifacts, naming it', async () => {
    const other = (await fx.request<{ dir: string }>({ op: 'make', root: tmp('node-api-pg-'), n: 200, dim: 32, seed: 12, created_at: '2026-11-22T05:00:00Z' })).dir;
    const v2 = (await fx.request({ op: 'publish_pg', dir: other, release: 'r2', set_latest: false })).report.version;
    await assert.rejects(
      buildApp({ config: loadConfig(env({ VECTOR_BACKEND: 'pgvector', DATABASE_URL: fx.ready.pg!, PGVECTOR_VERSION: v2 })), logger: false }),
      (err: Error) => err.name === 'ArtifactError' && err.message === `vector_versions '${v2}': has N = 200 but the loaded artifacts have ${N} tracks`,
    );
    await assert.rejects(
      buildApp({ config: loadConfig(env({ VECTOR_BACKEND: 'pgvector', DATABASE_URL: fx.ready.pg!, PGVECTOR_VERSION: 'v1_model_fake-model/nope' })), logger: false }),
      /vector_versions: pgvector .* has no version 'v1_model_fake-model\/nope'; known versions: v1_model_fake-model\/r1, v1_model_fake-model\/r2/,
    );
  });
});
