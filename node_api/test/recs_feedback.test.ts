/**
 * POST /feedback against a real PostgreSQL (pgserver, started by test/fixtures/publish_server.py): the table and
 * its user_id index are created at start-up, an event is stored once per idempotency key (201, then 200
 * duplicate), with its timestamp normalised to UTC; an unknown track is a 404; and the stored feedback changes
 * the picks: a cold listener's like turns popularity into content (the liked track not recommended back), a
 * skip keeps the track off that listener's radio and recommendations.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { FastifyInstance } from 'fastify';
import pg from 'pg';

import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/plugins/env.js';
import { cleanupTmp, copyFixture, generatedFixture } from './helpers.js';
import { recsSchemaDir, writeRecs, type RecsFixture } from './fixtures/recsFixture.js';
import { PublishFixture } from './publishFixture.js';

type Json = Record<string, any>;

let server: PublishFixture;
let pool: pg.Pool;
let fx: RecsFixture;
let app: FastifyInstance;

async function post(url: string, body: unknown): Promise<{ status: number; json: Json }> {
  const r = await app.inject({ method: 'POST', url, payload: body as Json });
  return { status: r.statusCode, json: r.json() };
}

before(async () => {
  server = await PublishFixture.start({ pg: true });
  pool = new pg.Pool({ connectionString: server.ready.pg! });
  fx = writeRecs(copyFixture(generatedFixture()));
  const config = loadConfig({ ARTIFACTS_DIR: fx.dir, ARTIFACT_SCHEMA_DIR: recsSchemaDir(), LOG_LEVEL: 'silent', FEEDBACK_DATABASE_URL: server.ready.pg! });
  app = await buildApp({ config, logger: false });
});

after(async () => {
  await app?.close();
  await pool?.end();
  await server?.close();
  cleanupTmp();
});

describe('POST /feedback with PostgreSQL', () => {
  it('stores an event once per idempotency key, ts normalised to UTC, in an indexed table', async () => {
    const event = { user_id: 'fb-user', track_id: fx.trackIds[4], event: 'play', ts: '2026-11-30T10:00:00+02:00', duration_sec: 31.5, idempotency_key: 'fb-key-0001' };
    const first = await post('/feedback', event);
    assert.equal(first.status, 201, JSON.stringify(first.json));
    assert.deepEqual(first.json, { stored: true });
    const dup = await post('/feedback', { ...event, event: 'like' });
    assert.equal(dup.status, 200);
    assert.deepEqual(dup.json, { stored: false, duplicate: true });
    const rows = (await pool.query("SELECT user_id, track_id, event, ts, duration_sec, origin FROM feedback_events WHERE idempotency_key = 'fb-key-0001'")).rows;
    assert.equal(rows.length, 1);
    assert.equal(rows[0].event, 'play');
    assert.equal((rows[0].ts as Date).toISOString(), '2026-11-30T08:00:00.000Z');
    assert.equal(rows[0].origin, 'feedback');
    assert.equal(rows[0].duration_sec, 31.5);
    const idx = (await pool.query("SELECT indexdef FROM pg_indexes WHERE tablename = 'feedback_events'")).rows.map((r) => r.indexdef as string);
    assert.ok(idx.some((d) => /\(user_id\)/.test(d)), idx.join('; '));
  });

  it('answers 404 for an unknown track, 400 naming a ts that is not a date-time with an offset, and stores an odd but valid ts as given', async () => {
    const base = { user_id: 'fb-user', track_id: fx.trackIds[4], event: 'play', idempotency_key: 'fb-key-0002' };
    const missing = await post('/feedback', { ...base, track_id: 'no-such-track' });
    assert.equal(missing.status, 404);
    assert.match(missing.json.message, /no-such-track/);
    for (const ts of ['yesterday', '2026-11-30T10:00:00', '2026-13-40T10:00:00Z']) {
      const r = await post('/feedback', { ...base, ts });
      assert.equal(r.status, 400, ts);
      assert.match(r.json.message, /\bts\b/);
    }
    // a client with a wrong clock: stored (export-interactions drops and counts it), never a lost batch
    assert.equal((await post('/feedback', { ...base, ts: '1999-12-31T23:00:00-01:00' })).status, 201);
    const rows = (await pool.query("SELECT ts FROM feedback_events WHERE idempotency_key = 'fb-key-0002'")).rows;
    assert.equal((rows[0].ts as Date).toISOString(), '2000-01-01T00:00:00.000Z');
  });

  it("a cold listener's like turns popularity into content, the liked track not recommended back", async () => {
    const cold = await post('/recommend/user', { user_id: 'newcomer', k: 5 });
    assert.equal(cold.json.known_user, false);
    assert.deepEqual(new Set(cold.json.items.map((i: Json) => i.source)), new Set(['popularity']));
    const liked = fx.trackIds[11]!;
    assert.equal((await post('/feedback', { user_id: 'newcomer', track_id: liked, event: 'like', idempotency_key: 'fb-key-0003' })).status, 201);
    const warm = await post('/recommend/user', { user_id: 'newcomer', k: 5 });
    assert.deepEqual(new Set(warm.json.items.map((i: Json) => i.source)), new Set(['content']));
    assert.ok(!warm.json.items.some((i: Json) => i.track_id === liked));
    // the content profile of one liked track: its nearest neighbours
    const near = (await app.inject(`/tracks/${encodeURIComponent(liked)}/nearest?k=5`)).json().hits.map((h: Json) => h.track_id);
    assert.deepEqual(warm.json.items.map((i: Json) => i.track_id), near);
    const radio = await post('/radio/generate', { user_id: 'newcomer', n: 3 });
    assert.equal(radio.status, 200, JSON.stringify(radio.json));
  });

  it("a skip keeps the track off the listener's radio and recommendations", async () => {
    const user = fx.userIds[0]!;
    const radio = await post('/radio/generate', { user_id: user, n: 10 });
    const recs = await post('/recommend/user', { user_id: user, k: 10 });
    const skippedRadio = radio.json.tracks[0].track_id as string;
    const skippedRec = recs.json.items[0].track_id as string;
    for (const [i, track_id] of [skippedRadio, skippedRec].entries()) {
      assert.equal((await post('/feedback', { user_id: user, track_id, event: 'skip', idempotency_key: `fb-skip-000${i}` })).status, 201);
    }
    const again = await post('/radio/generate', { user_id: user, n: 10 });
    assert.ok(!again.json.tracks.some((t: Json) => t.track_id === skippedRadio));
    const recsAgain = await post('/recommend/user', { user_id: user, k: 10 });
    assert.ok(!recsAgain.json.items.some((i: Json) => i.track_id === skippedRec));
    // the rest of the ranking is unchanged: the skipped tracks are only left out
    const kept = recs.json.items.map((i: Json) => i.track_id).filter((id: string) => id !== skippedRec && id !== skippedRadio);
    assert.deepEqual(recsAgain.json.items.slice(0, kept.length).map((i: Json) => i.track_id), kept);
  });
});
