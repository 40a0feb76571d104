/**
 * Track ids as long as the contract allows (track_ids.schema.json's maxLength, read here from the file) are
 * servable over real HTTP: an ASCII one, one of 4-byte UTF-8 characters only (the longest percent-encoded
 * form) and a mixed one with `%` and spaces, through /nearest, /composer-eval and /search; one character more
 * is a 400 from the schema, a segment past the longest encoded form a 414; and no 414, 404 or bad-URL body
 * echoes the URL.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { FastifyInstance } from 'fastify';

import { appFor, cleanupTmp, makeFixture, readEmbeddings, readJson, SCHEMA_DIR } from './helpers.js';

const MAX = readJson(path.join(SCHEMA_DIR, 'track_ids.schema.json')).properties.track_ids.items.maxLength as number;
const DIM = 16;

let app: FastifyInstance;
let base: string;
let ids: string[];
let emb: Float32Array;

async function get(url: string): Promise<{ status: number; text: string; body: any }> {
  const res = await fetch(base + url);
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) };
}

const codePoints = (s: string): number => [...s].length;
const longIds = (): string[] => ids.filter((id) => codePoints(id) === MAX);

before(async () => {
  const dir = makeFixture(['--n', '24', '--long-ids', '--no-eval']);
  ids = readJson(path.join(dir, 'embeddings/track_ids.json')).track_ids;
  emb = readEmbeddings(dir);
  app = await appFor(dir);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});

after(async () => {
  await app?.close();
  cleanupTmp();
});

describe('track ids of the longest allowed length', () => {
  it('the fixture holds an ASCII, a 4-byte-only and a mixed id of maxLength code points', () => {
    const long = longIds();
    assert.equal(long.length, 3, JSON.stringify(long.map((s) => s.slice(0, 12))));
    assert.ok(long.some((id) => /^[\x20-\x7e]+$/.test(id)));
    const worst = long.find((id) => [...id].every((c) => Buffer.byteLength(c) === 4))!;
    assert.ok(worst, 'an id of 4-byte characters only');
    assert.equal(encodeURIComponent(worst).length, MAX * 12, 'the longest percent-encoded form');
    assert.ok(long.some((id) => id.includes('%') && id.includes(' ')));
  });

  it('GET /tracks/:id/nearest and /composer-eval answer 200 for each of them', async () => {
    for (const id of longIds()) {
      const enc = encodeURIComponent(id);
      const n = await get(`/tracks/${enc}/nearest?k=3`);
      assert.equal(n.status, 200, `${id.slice(0, 12)}…: ${n.text.slice(0, 200)}`);
      assert.equal(n.body.query.track_id, id);
      assert.equal(n.body.hits.length, 3);
      const e = await get(`/tracks/${enc}/composer-eval?k=3`);
      assert.equal(e.status, 200, e.text.slice(0, 200));
      assert.equal(e.body.query.track_id, id);
    }
  });

  it('POST /search returns them and accepts them in exclude_track_ids', async () => {
    for (const id of longIds()) {
      const row = ids.indexOf(id);
      const vector = Array.from(emb.subarray(row * DIM, (row + 1) * DIM));
      const post = async (body: unknown) =>
        (await fetch(base + '/search', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<any>;
      assert.equal((await post({ vector, k: 1 })).hits[0].track_id, id);
      const excluded = await post({ vector, k: 1, exclude_track_ids: [id] });
      assert.notEqual(excluded.hits[0].track_id, id, JSON.stringify(excluded).slice(0, 200));
    }
  });

  it('one code point more is a 400 naming the limit, in any encoding', async () => {
    for (const c of ['x', '\u{1d11e}']) {
      const r = await get(`/tracks/${encodeURIComponent(c.repeat(MAX + 1))}/nearest`);
      assert.equal(r.status, 400, r.text.slice(0, 200));
      assert.match(r.body.message, new RegExp(`more than ${MAX} characters`));
    }
  });

  it('a segment longer than the longest encoded id is a 414 that does not echo the URL', async () => {
    const marker = 'q'.repeat(MAX * 12 + 1);
    const r = await get(`/tracks/${marker}/nearest`);
    assert.equal(r.status, 414);
    assert.deepEqual(Object.keys(r.body).sort(), ['error', 'message', 'statusCode']);
    assert.equal(r.body.error, 'URI Too Long');
    assert.ok(!r.text.includes('qqqqqqqq'), r.text.slice(0, 300));
  });

  it('404 and bad-URL bodies do not echo the URL', async () => {
    const nf = await get('/no-such-route-MARKER42');
    assert.equal(nf.status, 404);
    assert.ok(!nf.text.includes('MARKER42'), nf.text);
    const bad = await get('/tracks/%E0%A4%A-MARKER43/nearest');
    assert.equal(bad.status, 400, bad.text);
    assert.deepEqual(Object.keys(bad.body).sort(), ['error', 'message', 'statusCode']);
    assert.ok(!bad.text.includes('MARKER43') && !bad.text.includes('%E0'), bad.text);
  });
});
