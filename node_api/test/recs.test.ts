/**
 * The recommendation endpoints over a fixture version with a recs/ folder written by the test
 * (fixtures/recsFixture.ts): POST /recommend/user equals the contract's scoring (an independent full-scan
 * reference) for every listener and model, cold starts and exclusions included; /recommend/similar is the cosine
 * to the seeds' mean (brute force), MMR keeps the seeds out; the radio is deterministic, spaced by composer and
 * album, continues without repeats and refuses a bad token naming `continuation`; the daily mixes are
 * deterministic, distinct and labelled; a version without recs/ answers 503 on the recs endpoints and serves
 * similar and radio; a corrupt recs/ refuses the load naming the file; /feedback without FEEDBACK_DATABASE_URL
 * is a 503 naming it, with an unreachable database a 503 that never shows the password; every answer matches the
 * schema the OpenAPI document gives it.
 */

import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'csv-parse/sync';
import type { FastifyInstance } from 'fastify';

import { buildApp } from '../src/app.js';
import { ArtifactError } from '../src/lib/errors.js';
import { loadArtifacts } from '../src/lib/loader.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource } from '../src/lib/source.js';
import { loadConfig } from '../src/plugins/env.js';
import { bruteForce, cleanupTmp, copyFixture, generatedFixture, readJson, writeJson } from './helpers.js';
import { recsSchemaDir, referenceRecommend, rerecord, writeRecs, type RecsFixture } from './fixtures/recsFixture.js';

type Json = Record<string, any>;

let schemaDir: string;
let fx: RecsFixture;
let app: FastifyInstance;
let bare: FastifyInstance;
let bareDir: string;
let albumOf: Map<string, string>;
let composerOf: Map<string, string | null>;

const config = (dir: string, env: Record<string, string> = {}) => loadConfig({ ARTIFACTS_DIR: dir, ARTIFACT_SCHEMA_DIR: schemaDir, LOG_LEVEL: 'silent', ...env });

async function post(a: FastifyInstance, url: string, body: unknown): Promise<{ status: number; json: Json }> {
  const r = await a.inject({ method: 'POST', url, payload: body as Json });
  return { status: r.statusCode, json: r.json() };
}

before(async () => {
  schemaDir = recsSchemaDir();
  fx = writeRecs(copyFixture(generatedFixture()));
  app = await buildApp({ config: config(fx.dir), logger: false });
  bareDir = copyFixture(generatedFixture());
  bare = await buildApp({ config: config(bareDir), logger: false });
  const rows = parse(readFileSync(path.join(fx.dir, 'metadata/tracks_metadata.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
  albumOf = new Map(rows.map((r) => [r.track_id!, r.album_id!]));
  composerOf = new Map(rows.map((r) => [r.track_id!, r.composer || null]));
});

after(async () => {
  await app?.close();
  await bare?.close();
  cleanupTmp();
});

describe('POST /recommend/user', () => {
  it("equals the contract's scoring for every listener and model (ids, order, scores to 1e-9, sources)", async () => {
    for (const [u, user] of fx.userIds.entries()) {
      for (const model of ['hybrid', 'cf', 'content', 'popularity']) {
        const { status, json } = await post(app, '/recommend/user', { user_id: user, k: 10, model });
        assert.equal(status, 200, JSON.stringify(json));
        const want = referenceRecommend(fx, u, model, 10);
        assert.equal(json.known_user, true);
        assert.equal(json.model, model);
        assert.deepEqual(json.items.map((i: Json) => i.track_id), want.map((w) => w.track_id), `${user} ${model}`);
        json.items.forEach((i: Json, j: number) => assert.ok(Math.abs(i.score - want[j]!.score) < 1e-9, `${user} ${model} #${j}: ${i.score} vs ${want[j]!.score}`));
        assert.deepEqual(json.items.map((i: Json) => i.source), want.map((w) => w.source), `${user} ${model}`);
      }
    }
  });

  it('defaults to hybrid with k = 20, never returns a training pair, and honours exclude', async () => {
    const { json } = await post(app, '/recommend/user', { user_id: fx.userIds[0] });
    assert.equal(json.model, 'hybrid');
    assert.equal(json.items.length, 20);
    const history = new Set(fx.pairs[0]!.map(([r]) => fx.trackIds[r]));
    assert.ok(!json.items.some((i: Json) => history.has(i.track_id)));
    const drop = [json.items[0].track_id, json.items[3].track_id];
    const again = await post(app, '/recommend/user', { user_id: fx.userIds[0], exclude: drop });
    const want = referenceRecommend(fx, 0, 'hybrid', 20, new Set(drop.map((id) => fx.trackIds.indexOf(id))));
    assert.deepEqual(again.json.items.map((i: Json) => i.track_id), want.map((w) => w.track_id));
  });

  it('a listener with negatives only gets trending popularity from the content models, cf still answers', async () => {
    const hybrid = await post(app, '/recommend/user', { user_id: fx.userIds[1], k: 5 });
    assert.deepEqual(new Set(hybrid.json.items.map((i: Json) => i.source)), new Set(['popularity']));
    const cf = await post(app, '/recommend/user', { user_id: fx.userIds[1], k: 5, model: 'cf' });
    assert.deepEqual(new Set(cf.json.items.map((i: Json) => i.source)), new Set(['cf']));
  });

  it('an unknown listener is a cold start (trending, known_user false), not a 404', async () => {
    const { status, json } = await post(app, '/recommend/user', { user_id: 'nobody-yet', k: 5 });
    assert.equal(status, 200);
    assert.equal(json.known_user, false);
    assert.deepEqual(json.items.map((i: Json) => i.track_id), fx.trending.slice(0, 5).map((e) => e.track_id));
    assert.deepEqual(json.items.map((i: Json) => i.score), fx.trending.slice(0, 5).map((e) => e.score));
  });

  it('scores exactly on a small catalogue; over HNSW with RECS_CANDIDATES below the count it scores candidates, and GET /models says which', async () => {
    const exact = await post(app, '/recommend/user', { user_id: fx.userIds[0], k: 5 });
    assert.equal(exact.json.method, 'exact');
    const m = (await app.inject('/models')).json();
    assert.deepEqual(
      { ...m.recs, reason: null },
      { loaded: true, reason: null, users: fx.userIds.length, factors: m.recs.factors, cf_weight: m.recs.cf_weight, light_user_events: m.recs.light_user_events, scoring: 'exact', candidates: 200, feedback_store: false },
    );
    assert.ok(m.recs.factors >= 1);
    const off = (await bare.inject('/models')).json().recs;
    assert.equal(off.loaded, false);
    assert.match(off.reason, /train-recs/);
    const small = await buildApp({ config: config(fx.dir, { VECTOR_BACKEND: 'hnsw', RECS_CANDIDATES: '12' }), logger: false });
    try {
      assert.equal((await small.inject('/models')).json().recs.scoring, 'candidates');
      for (const model of ['hybrid', 'content']) {
        const r = await post(small, '/recommend/user', { user_id: fx.userIds[0], k: 5, model });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.equal(r.json.method, 'candidates');
        const history = new Set(fx.pairs[0]!.map(([row]) => fx.trackIds[row]));
        assert.equal(new Set(r.json.items.map((i: Json) => i.track_id)).size, 5);
        assert.ok(!r.json.items.some((i: Json) => history.has(i.track_id)), model);
      }
      assert.equal((await post(small, '/recommend/user', { user_id: fx.userIds[0], k: 5, model: 'cf' })).json.method, 'exact');
    } finally {
      await small.close();
    }
  });

  it('names the bad field: unknown model, unknown excluded track (404), an unsafe user id', async () => {
    const bad = await post(app, '/recommend/user', { user_id: 'x', model: 'svd' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.message, /model/);
    const unknown = await post(app, '/recommend/user', { user_id: 'x', exclude: ['no-such-track'] });
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.message, /exclude\[0\].*no-such-track/);
    assert.equal((await post(app, '/recommend/user', { user_id: '../etc' })).status, 400);
  });
});

describe('POST /recommend/similar', () => {
  it("is the cosine to the seeds' normalised mean, seeds and exclusions left out, ties by row", async () => {
    const seeds = [3, 40];
    const q = new Float64Array(fx.dim);
    for (const r of seeds) for (let d = 0; d < fx.dim; d++) q[d]! += fx.emb[r * fx.dim + d]! / 2;
    const norm = Math.hypot(...q);
    for (let d = 0; d < fx.dim; d++) q[d]! /= norm;
    const excluded = fx.trackIds[0]!;
    const want = bruteForce(fx.emb, fx.dim, q, (r) => seeds.includes(r) || r === 0).slice(0, 8);
    const { status, json } = await post(app, '/recommend/similar', { track_ids: seeds.map((r) => fx.trackIds[r]), k: 8, exclude: [excluded] });
    assert.equal(status, 200, JSON.stringify(json));
    assert.deepEqual(json.items.map((i: Json) => i.track_id), want.map((w) => fx.trackIds[w.row]));
    json.items.forEach((i: Json, j: number) => assert.ok(Math.abs(i.score - want[j]!.score) < 1e-12));
    assert.ok('title' in json.items[0] && 'album_id' in json.items[0]);
  });

  it('with diversity the picks are k distinct non-seed tracks, the first the most similar, and differ from plain similarity', async () => {
    const body = { track_ids: [fx.trackIds[10]], k: 10 };
    const plain = (await post(app, '/recommend/similar', body)).json.items.map((i: Json) => i.track_id);
    const div = (await post(app, '/recommend/similar', { ...body, diversity: 0.8 })).json.items.map((i: Json) => i.track_id);
    assert.equal(new Set(div).size, 10);
    assert.ok(!div.includes(fx.trackIds[10]));
    assert.equal(div[0], plain[0]);
    assert.notDeepEqual(div, plain);
  });

  it('answers 404 naming an unknown seed, 400 for no seeds or too many, and works without recs/', async () => {
    const r = await post(app, '/recommend/similar', { track_ids: [fx.trackIds[1], 'nope'] });
    assert.equal(r.status, 404);
    assert.match(r.json.message, /track_ids\[1\].*'nope'/);
    assert.equal((await post(app, '/recommend/similar', { track_ids: [] })).status, 400);
    assert.equal((await post(app, '/recommend/similar', { track_ids: new Array(51).fill(fx.trackIds[1]) })).status, 400);
    assert.equal((await post(bare, '/recommend/similar', { track_ids: [fx.trackIds[1]] })).status, 200);
  });
});

describe('POST /radio/generate', () => {
  const body = () => ({ seed_track_id: fx.trackIds[7], n: 12, composer_gap: 2, album_gap: 3 });

  it('is deterministic, spaced by composer and album, and continues without repeats', async () => {
    const first = await post(app, '/radio/generate', body());
    assert.equal(first.status, 200, JSON.stringify(first.json));
    assert.deepEqual((await post(app, '/radio/generate', body())).json, first.json);
    const more = await post(app, '/radio/generate', { ...body(), continuation: first.json.continuation });
    assert.equal(more.status, 200, JSON.stringify(more.json));
    const played = [fx.trackIds[7]!, ...[...first.json.tracks, ...more.json.tracks].map((t: Json) => t.track_id as string)];
    assert.equal(played.length, 25);
    assert.equal(new Set(played).size, 25, 'no repeats, the seed included');
    for (let i = 1; i < played.length; i++) {
      const albums = played.slice(Math.max(0, i - 3), i).map((id) => albumOf.get(id));
      assert.ok(!albums.includes(albumOf.get(played[i]!)), `album repeats at ${i}`);
      const c = composerOf.get(played[i]!);
      if (c !== null) assert.ok(!played.slice(Math.max(0, i - 2), i).some((id) => composerOf.get(id) === c), `composer repeats at ${i}`);
    }
    // the same continuation gives the same page
    assert.deepEqual((await post(app, '/radio/generate', { continuation: first.json.continuation, n: 12, composer_gap: 2, album_gap: 3 })).json, more.json);
  });

  it('diversity 0 follows similarity: the first track is the seed\'s nearest allowed neighbour', async () => {
    const r = await post(app, '/radio/generate', { seed_track_id: fx.trackIds[7], n: 1, diversity: 0, composer_gap: 0, album_gap: 0 });
    const nearest = (await app.inject(`/tracks/${encodeURIComponent(fx.trackIds[7]!)}/nearest?k=1`)).json().hits[0].track_id;
    assert.equal(r.json.tracks[0].track_id, nearest);
  });

  it("a listener's station leaves out their training negatives", async () => {
    const r = await post(app, '/radio/generate', { user_id: fx.userIds[0], n: 30, composer_gap: 0, album_gap: 0 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const negatives = new Set(fx.pairs[0]!.filter(([, w]) => w < 0).map(([row]) => fx.trackIds[row]));
    assert.ok(negatives.size > 0);
    assert.ok(!r.json.tracks.some((t: Json) => negatives.has(t.track_id)));
    assert.equal((await post(app, '/radio/generate', { user_id: 'nobody', n: 3 })).status, 404);
  });

  it('refuses a bad token naming continuation, a token of another seed, and a body without a seed', async () => {
    for (const token of ['bm90IGEgdG9rZW4', 'a b', Buffer.from(JSON.stringify({ v: 2, seed: { track_id: 'x' }, recent: [] })).toString('base64url')]) {
      const r = await post(app, '/radio/generate', { ...body(), continuation: token });
      assert.equal(r.status, 400, token);
      assert.match(r.json.message, /continuation/);
    }
    const first = await post(app, '/radio/generate', body());
    const other = await post(app, '/radio/generate', { seed_track_id: fx.trackIds[8], continuation: first.json.continuation });
    assert.equal(other.status, 400);
    assert.match(other.json.message, /continuation/);
    assert.equal((await post(app, '/radio/generate', { n: 3 })).status, 400);
    assert.equal((await post(app, '/radio/generate', { seed_track_id: fx.trackIds[1], user_id: 'u' })).status, 400);
    assert.equal((await post(app, '/radio/generate', { seed_track_id: 'nope' })).status, 404);
  });

  it('serves a track station without recs/', async () => {
    const r = await post(bare, '/radio/generate', { seed_track_id: fx.trackIds[7], n: 5 });
    assert.equal(r.status, 200);
    assert.equal(r.json.tracks.length, 5);
  });
});

describe('POST /daily-mix', () => {
  it('gives up to k deterministic mixes of distinct tracks, each labelled nearest or history', async () => {
    const body = { user_id: fx.userIds[0], k: 2, size: 6 };
    const { status, json } = await post(app, '/daily-mix', body);
    assert.equal(status, 200, JSON.stringify(json));
    assert.ok(json.mixes.length >= 1 && json.mixes.length <= 2);
    const positives = new Set(fx.pairs[0]!.filter(([, w]) => w > 0).map(([r]) => fx.trackIds[r]));
    const negatives = new Set(fx.pairs[0]!.filter(([, w]) => w < 0).map(([r]) => fx.trackIds[r]));
    const all: string[] = [];
    for (const mix of json.mixes) {
      assert.ok(positives.has(mix.centroid_track_id));
      assert.ok(mix.tracks.length >= 1 && mix.tracks.length <= 6);
      for (const t of mix.tracks) {
        all.push(t.track_id);
        assert.equal(t.source === 'history', positives.has(t.track_id), t.track_id);
        assert.ok(!negatives.has(t.track_id));
      }
      assert.ok(mix.tracks.some((t: Json) => t.source === 'nearest'));
    }
    assert.equal(new Set(all).size, all.length, 'a track appears in one mix only');
    assert.deepEqual((await post(app, '/daily-mix', body)).json, json);
  });

  it('answers 404 for a listener without history, 503 without recs/', async () => {
    const r = await post(app, '/daily-mix', { user_id: 'nobody-here', k: 2 });
    assert.equal(r.status, 404);
    assert.match(r.json.message, /nobody-here/);
    const b = await post(bare, '/daily-mix', { user_id: fx.userIds[0] });
    assert.equal(b.status, 503);
    assert.match(b.json.message, /no recs\/ \(run research-job train-recs\)/);
    assert.equal((await post(bare, '/recommend/user', { user_id: fx.userIds[0] })).status, 503);
  });
});

describe('POST /feedback', () => {
  it('answers 503 naming FEEDBACK_DATABASE_URL when none is set', async () => {
    const r = await post(app, '/feedback', { user_id: 'u1', track_id: fx.trackIds[1], event: 'like', idempotency_key: 'key-00000001' });
    assert.equal(r.status, 503);
    assert.match(r.json.message, /FEEDBACK_DATABASE_URL/);
  });

  it('validates the body first, naming the field', async () => {
    const base = { user_id: 'u1', track_id: fx.trackIds[1], event: 'like', idempotency_key: 'key-00000001' };
    for (const [patch, field] of [[{ event: 'love' }, 'event'], [{ idempotency_key: 'short' }, 'idempotency_key'], [{ duration_sec: -1 }, 'duration_sec']] as const) {
      const r = await post(app, '/feedback', { ...base, ...patch });
      assert.equal(r.status, 400, field);
      assert.match(r.json.message, new RegExp(field));
    }
  });

  it('an unreachable database is a 503 that never shows the password', async () => {
    const secret = 'pw-SECRET-93a1';
    const down = await buildApp({ config: config(fx.dir, { FEEDBACK_DATABASE_URL: `postgresql://rec:${secret}@127.0.0.1:1/feedback` }), logger: false });
    try {
      const r = await down.inject({ method: 'POST', url: '/feedback', payload: { user_id: 'u1', track_id: fx.trackIds[1], event: 'like', idempotency_key: 'key-00000001' } });
      assert.equal(r.statusCode, 503, r.body);
      assert.match(r.body, /FEEDBACK_DATABASE_URL/);
      assert.ok(!r.body.includes(secret), r.body);
      const rec = await down.inject({ method: 'POST', url: '/recommend/user', payload: { user_id: 'u1' } });
      assert.equal(rec.statusCode, 503);
      assert.ok(!rec.body.includes(secret));
    } finally {
      await down.close();
    }
    assert.throws(() => config(fx.dir, { FEEDBACK_DATABASE_URL: `mysql://u:${secret}@h/db` }), (e: Error) => /FEEDBACK_DATABASE_URL/.test(e.message) && !e.message.includes(secret));
  });
});

describe('a corrupt recs/ refuses the version, naming the file', () => {
  const registry = () => new SchemaRegistry(schemaDir);
  const refuses = async (mutate: (dir: string) => void, file: RegExp, detail: RegExp) => {
    const dir = copyFixture(fx.dir);
    mutate(dir);
    await assert.rejects(loadArtifacts(new LocalDirSource(dir), registry(), { recallSample: 0 }), (e: unknown) => {
      assert.ok(e instanceof ArtifactError, String(e));
      assert.match(e.file, file);
      assert.match(e.message, detail);
      return true;
    });
  };
  const meta = (dir: string) => path.join(dir, 'recs', 'recs_meta.json');

  it('trained for other track ids', () =>
    refuses((d) => writeJson(meta(d), { ...readJson(meta(d)), embeddings: { ...readJson(meta(d)).embeddings, track_ids_sha256: 'a'.repeat(64) } }), /recs_meta\.json$/, /track_ids_sha256/));

  it('a factor file of the wrong size, even with its sha256 re-recorded', () =>
    refuses(
      (d) => {
        const f = path.join(d, 'recs', 'user_factors.f32');
        writeFileSync(f, readFileSync(f).subarray(4));
        rerecord(d, 'user_factors.f32');
      },
      /user_factors\.f32$/,
      /bytes/,
    ));

  it('a changed byte (sha256)', () =>
    refuses(
      (d) => {
        const f = path.join(d, 'recs', 'item_factors.f32');
        const b = readFileSync(f);
        b[0] = b[0]! ^ 1;
        writeFileSync(f, b);
      },
      /item_factors\.f32$/,
      /sha256/,
    ));

  it('decreasing offsets and out-of-range track rows', async () => {
    await refuses(
      (d) => {
        const f = path.join(d, 'recs', 'user_items_offsets.i64');
        const b = readFileSync(f);
        b.writeBigInt64LE(1000n, 8);
        writeFileSync(f, b);
        rerecord(d, 'user_items_offsets.i64');
      },
      /user_items_offsets\.i64$/,
      /offsets\[2\]/,
    );
    await refuses(
      (d) => {
        const f = path.join(d, 'recs', 'user_items.i32');
        const b = readFileSync(f);
        b.writeInt32LE(fx.trackIds.length, 0);
        writeFileSync(f, b);
        rerecord(d, 'user_items.i32');
      },
      /user_items\.i32$/,
      /outside/,
    );
  });

  it('a popularity track the catalogue lacks', () =>
    refuses(
      (d) => {
        const f = path.join(d, 'recs', 'popularity.json');
        const p = readJson(f);
        p.global[0].track_id = 'ghost';
        writeJson(f, p);
        rerecord(d, 'popularity.json');
      },
      /popularity\.json$/,
      /ghost/,
    ));

  it('recs files without recs_meta.json are off, not refused', async () => {
    const dir = copyFixture(fx.dir);
    rmSync(meta(dir));
    const state = await loadArtifacts(new LocalDirSource(dir), registry(), { recallSample: 0 });
    assert.equal(state.recs.on, false);
    assert.match(state.recs.on ? '' : state.recs.reason, /user_factors\.f32/);
  });
});

describe('OpenAPI', () => {
  it('documents the five routes, and real answers match their schemas', async () => {
    const d = (await app.inject('/openapi.json')).json();
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addSchema({ $id: 'doc', components: d.components ?? {} });
    const compile = (s: Json) => ajv.compile(JSON.parse(JSON.stringify(s).replaceAll('"#/components/', '"doc#/components/')));
    const calls: Array<[string, Json]> = [
      ['/recommend/similar', { track_ids: [fx.trackIds[2]], k: 3 }],
      ['/recommend/similar', { track_ids: ['nope'] }],
      ['/recommend/user', { user_id: fx.userIds[2], k: 3 }],
      ['/recommend/user', { user_id: 'cold', k: 3 }],
      ['/radio/generate', { seed_track_id: fx.trackIds[2], n: 3 }],
      ['/radio/generate', { seed_track_id: fx.trackIds[2], continuation: '!!' }],
      ['/daily-mix', { user_id: fx.userIds[3] }],
      ['/feedback', { user_id: 'u', track_id: fx.trackIds[2], event: 'play', idempotency_key: 'abcdefgh' }],
    ];
    for (const [url, body] of calls) {
      const r = await app.inject({ method: 'POST', url, payload: body });
      const schema = d.paths[url]?.post?.responses?.[String(r.statusCode)]?.content?.['application/json']?.schema;
      assert.ok(schema, `${url}: status ${r.statusCode} is not in the document`);
      const v = compile(schema);
      assert.ok(v(r.json()), `${url} ${r.statusCode}: ${JSON.stringify(v.errors)}`);
    }
  });
});
