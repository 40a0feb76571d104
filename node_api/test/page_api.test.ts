/**
 * The API routes of the page (issue 14) on copies of the committed tiny fixture given the optional artifacts by
 * `addPageArtifacts`: GET /tracks?q= (term matching under NFKC and case folding, title-prefix-then-row order,
 * limit, has_preview, 400s); GET /tracks/:id/cluster (200, unknown track, unlisted track, no clusters.json);
 * GET|HEAD /tracks/:id/preview (whole body, every Range form, 416, several ranges, If-None-Match 304,
 * If-Range, a listed file that is missing, of the wrong size or the wrong sha256: an error naming it, and the
 * server keeps serving); GET /report (the HTML under its CSP) and /report/figures/:name (served, unknown, a
 * listed file that is missing, names that try to leave the folder: 404 without a server path); the load
 * refusing an invalid clusters.json, previews.json or figure naming the file; a version without the optional
 * artifacts, an artifact list without the previews keys and a schema folder without previews.schema.json:
 * 404s with the reason while /nearest answers; GET /models says which features are loaded.
 */

import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';

import { ARTIFACT_LIST_FILE } from '../src/lib/layout.js';
import { loadArtifacts } from '../src/lib/loader.js';
import { normalizeSearch, queryTerms } from '../src/lib/catalogSearch.js';
import { parseRange } from '../src/lib/range.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource } from '../src/lib/source.js';
import { REPORT_CSP } from '../src/routes/report/index.js';
import { addPageArtifacts, appFor, cleanupTmp, copyFixture, fakeBytes, readJson, SCHEMA_DIR, tmp, writeJson, type PageArtifacts } from './helpers.js';

const ENV = { RECALL_SAMPLE: '5' };
const schemas = new SchemaRegistry(SCHEMA_DIR);
let app: FastifyInstance;
let dir: string;
let page: PageArtifacts;
let ids: string[];

/** The tiny fixture's catalogue with titles that exercise NFKC and case folding. */
function editTitles(version: string): void {
  const csv = path.join(version, 'metadata', 'tracks_metadata.csv');
  const text = readFileSync(csv, 'utf8')
    .replace('t003,album-3-0,4,Piece 3,', 't003,album-3-0,4,Prélude and fugue,')
    .replace('t005,album-0-1,,Piece 5,', 't005,album-0-1,,Ｆｕｇｕｅ in Ｃ,')
    .replace('t006,album-1-1,7,Piece 6,', 't006,album-1-1,7,FUGUE \uFB01nale,');
  writeFileSync(csv, text);
}

before(async () => {
  dir = copyFixture();
  editTitles(dir);
  page = addPageArtifacts(dir);
  ids = readJson(path.join(dir, 'embeddings', 'track_ids.json')).track_ids;
  app = await appFor(dir, ENV);
});

after(async () => {
  await app?.close();
  cleanupTmp();
});

const url = (id: string, what: string): string => `/tracks/${encodeURIComponent(id)}/${what}`;

function assertError(r: LightMyRequestResponse, status: number, message: RegExp): void {
  assert.equal(r.statusCode, status, r.body);
  const body = r.json();
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message', 'statusCode']);
  assert.equal(body.statusCode, status);
  assert.match(body.message, message);
  assert.ok(!r.body.includes(dir) && !r.body.includes(path.dirname(dir)), `a server path in ${r.body}`);
}

async function search(query: string): Promise<{ total: number; ids: string[]; body: any }> {
  const r = await app.inject(`/tracks?${query}`);
  assert.equal(r.statusCode, 200, r.body);
  const body = r.json();
  return { total: body.total, ids: body.tracks.map((t: { track_id: string }) => t.track_id), body };
}

describe('GET /tracks?q= (catalogue search)', () => {
  it('matches every term as a substring of a field, title-prefix matches first, then row order', async () => {
    // rows 3, 5, 6 hold "fugue"; 5 and 6 start with it (fullwidth letters and upper case fold to it)
    assert.deepEqual((await search('q=fugue')).ids, ['t005', 't006', 't003']);
    // "piece 1": titles starting with it (rows 1, 10, 11) before rows matching the terms elsewhere (album-3-1, album-4-1)
    const r = await search('q=piece%201');
    assert.deepEqual(r.ids, ['t001', 't010', 't011', 't008', 't009']);
    assert.equal(r.total, 5);
  });

  it('folds case and compatibility forms (NFKC) on both sides, and matches composer names, keys and album ids', async () => {
    assert.deepEqual((await search(`q=${encodeURIComponent('FINALE')}`)).ids, ['t006']);
    // fullwidth terms: "fugue" and "in" (t003 by its composer "chopin", t006 by "finale"); t005's title starts with the query
    assert.deepEqual((await search(`q=${encodeURIComponent('ＦＵＧＵＥ ＩＮ')}`)).ids, ['t005', 't003', 't006']);
    assert.deepEqual((await search(`q=${encodeURIComponent('  PRE\u0301LUDE\t')}`)).ids, ['t003']);
    assert.deepEqual((await search(`q=${encodeURIComponent('FRÉDÉRIC')}`)).ids, ['t003', 't008']);
    assert.deepEqual((await search('q=frederic%20chopin')).ids, ['t003', 't008']);
    assert.deepEqual((await search('q=album-4')).ids, ['t004', 't009']);
    assert.deepEqual((await search('q=debussy%209')).ids, ['t009']);
    // a term never matches across two fields ("9" + composer)
    assert.deepEqual((await search(`q=${encodeURIComponent('9claude')}`)).ids, []);
    assert.equal(normalizeSearch('Ｆｕｇｕｅ\u200b\u0007 ﬁ  X'), 'fugue fi x');
    assert.deepEqual(queryTerms('ab abc b abc'), ['abc']);
  });

  it('returns at most limit tracks with the total, each with its public fields and has_preview', async () => {
    const r = await search('q=piece&limit=3');
    assert.equal(r.total, 7);
    assert.deepEqual(r.ids, ['t001', 't002', 't004']);
    assert.deepEqual(r.body.tracks[0], {
      track_id: 't001',
      title: 'Piece 1',
      composer: 'Mozart, W. A.',
      composer_key: 'wolfgang amadeus mozart',
      album_id: 'album-1-0',
      has_preview: true,
    });
    assert.deepEqual([r.body.q, r.body.limit], ['piece', 3]);
    const all = await search('q=piece&limit=50');
    const preview = Object.fromEntries(all.body.tracks.map((t: { track_id: string; has_preview: boolean }) => [t.track_id, t.has_preview]));
    assert.deepEqual([preview.t001, preview.t010, preview.t011], [true, false, false]);
    assert.equal((await search('q=piece')).body.limit, 20);
    assert.equal((await search(`q=${'z'.repeat(200)}`)).total, 0);
    // no term at all (spaces, a C1 control, a format character): nothing matches, not an error
    for (const q of ['%20%20%09', '%C2%90', '%E2%80%8B']) {
      const r = await search(`q=${q}`);
      assert.deepEqual([r.total, r.ids], [0, []], q);
    }
  });

  it('answers 400 on a missing, empty or too long q, too many terms, a bad limit or an unknown parameter', async () => {
    for (const [query, message] of [
      ['', /must have required property 'q'/],
      ['q=', /fewer than 1 characters/],
      [`q=${'z'.repeat(201)}`, /more than 200 characters/],
      [`q=${Array.from({ length: 13 }, (_, i) => `w${i}x`).join('%20')}`, /13 distinct terms; at most 12/],
      ['q=piece&limit=0', /limit must be >= 1/],
      ['q=piece&limit=51', /limit must be <= 50/],
      ['q=piece&limit=two', /limit must be integer/],
      ['q=piece&sort=title', /must NOT have additional properties/],
    ] as const) {
      assertError(await app.inject(`/tracks?${query}`), 400, message);
    }
  });
});

describe('GET /tracks/:trackId/cluster', () => {
  it("answers the track's cluster with its name, confidence and the cluster's fields", async () => {
    const r = await app.inject(url('t 000', 'cluster'));
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(r.json(), {
      track_id: 't 000',
      cluster: 0,
      name: 'claude debussy',
      confidence: 0.5,
      n_tracks: 6,
      dominant_share: 0.5,
      method: 'kmeans',
      k: 2,
      label: 'composer',
      top_tags: [],
    });
    const second = (await app.inject(url('t001', 'cluster'))).json();
    assert.deepEqual([second.cluster, second.name, second.n_tracks], [1, '', 5]);
    assert.equal(second.confidence, 0.5 + 1 / 48);
  });

  it('is 404 for an unknown track and for a track clusters.json does not list (naming it)', async () => {
    assertError(await app.inject(url('nope', 'cluster')), 404, /Unknown track_id 'nope'/);
    assertError(await app.inject(url(page.unclustered, 'cluster')), 404, new RegExp(`Track '${page.unclustered}' has no cluster: eval/clusters\\.json of v1_model_fixture-enc does not list it`));
  });
});

describe('GET /tracks/:trackId/preview', () => {
  const id = 't001';
  const bytes = (): Buffer => page.previews.get(id)!;
  const get = (headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') => app.inject({ method, url: url(id, 'preview'), headers });
  const etag = (): string => `"${readJson(path.join(dir, 'previews', 'previews.json')).tracks[1].sha256.slice(0, 32)}"`;

  it('serves the whole file as audio/ogg with Accept-Ranges, a strong ETag and an hour of public caching', async () => {
    const r = await get();
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'audio/ogg');
    assert.equal(r.headers['accept-ranges'], 'bytes');
    assert.equal(r.headers['cache-control'], 'public, max-age=3600');
    assert.equal(r.headers.etag, etag());
    assert.equal(Number(r.headers['content-length']), bytes().length);
    assert.ok(r.rawPayload.equals(bytes()));
    // a track id that is not a plain file name has a hashed file name; it is looked up, not built
    const first = await app.inject(url('t 000', 'preview'));
    assert.equal(first.statusCode, 200);
    assert.ok(first.rawPayload.equals(page.previews.get('t 000')!));
  });

  it('answers each single Range form with 206 and Content-Range (end clamped to the last byte)', async () => {
    const size = bytes().length;
    for (const [range, start, end] of [
      ['bytes=0-99', 0, 99],
      ['bytes=900-', 900, size - 1],
      ['bytes=-100', size - 100, size - 1],
      ['bytes=1005-99999', 1005, size - 1],
      ['bytes=-99999', 0, size - 1],
      ['bytes=7-7', 7, 7],
      ['Bytes = 10 - 19', 10, 19],
    ] as const) {
      const r = await get({ range });
      assert.equal(r.statusCode, 206, `${range}: ${r.statusCode}`);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${size}`, range);
      assert.equal(r.headers['content-type'], 'audio/ogg');
      assert.equal(Number(r.headers['content-length']), end - start + 1, range);
      assert.ok(r.rawPayload.equals(bytes().subarray(start, end + 1)), range);
    }
  });

  it('is 416 with Content-Range bytes */size when the range selects nothing; several or malformed ranges get the whole body', async () => {
    const size = bytes().length;
    for (const range of [`bytes=${size}-`, `bytes=${size + 5}-${size + 9}`, 'bytes=-0']) {
      const r = await get({ range });
      assertError(r, 416, new RegExp(`selects no byte of the preview of track '${id}', which has ${size} bytes`));
      assert.equal(r.headers['content-range'], `bytes */${size}`);
    }
    for (const range of ['bytes=0-1,5-6', 'bytes=9-3', 'items=0-1', 'bytes=-', 'bytes=a-b']) {
      const r = await get({ range });
      assert.equal(r.statusCode, 200, range);
      assert.equal(r.headers['content-range'], undefined);
      assert.ok(r.rawPayload.equals(bytes()), range);
    }
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const r = await get({}, 'HEAD');
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'audio/ogg');
    assert.equal(Number(r.headers['content-length']), bytes().length);
    assert.equal(r.headers.etag, etag());
    assert.equal(r.rawPayload.length, 0);
    const part = await get({ range: 'bytes=0-9' }, 'HEAD');
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], `bytes 0-9/${bytes().length}`);
    assert.equal(Number(part.headers['content-length']), 10);
  });

  it('answers If-None-Match with 304 when it holds the ETag, and honours If-Range only with the same ETag', async () => {
    for (const inm of [etag(), `W/${etag()}`, `"other", ${etag()}`, '*']) {
      const r = await get({ 'if-none-match': inm });
      assert.equal(r.statusCode, 304, inm);
      assert.equal(r.headers.etag, etag());
      assert.equal(r.rawPayload.length, 0);
    }
    assert.equal((await get({ 'if-none-match': '"0123"' })).statusCode, 200);
    assert.equal((await get({ 'if-range': etag(), range: 'bytes=0-9' })).statusCode, 206);
    const stale = await get({ 'if-range': '"stale"', range: 'bytes=0-9' });
    assert.equal(stale.statusCode, 200);
    assert.ok(stale.rawPayload.equals(bytes()));
  });

  it('is 404 naming why for an unknown track, a track recorded as failed and one previews.json does not list', async () => {
    assertError(await app.inject(url('nope', 'preview')), 404, /Unknown track_id 'nope'/);
    assertError(await app.inject(url(page.failedPreview, 'preview')), 404, new RegExp(`Track '${page.failedPreview}' has no preview in v1_model_fixture-enc: previews/previews\\.json records its preview as failed`));
    assertError(await app.inject(url(page.unlistedPreview, 'preview')), 404, /previews\/previews\.json lists no preview of it/);
  });

  it('a listed file that is missing, of the wrong size or the wrong sha256 is an error naming it, and the server keeps serving', async () => {
    const own = copyFixture();
    const art = addPageArtifacts(own);
    const served = await appFor(own, ENV);
    try {
      const [gone, short, changed] = ['t002', 't003', 't004'];
      rmSync(path.join(own, art.previewFiles.get(gone)!));
      writeFileSync(path.join(own, art.previewFiles.get(short)!), fakeBytes(10, 3));
      const other = Buffer.from(art.previews.get(changed)!);
      other[5]! ^= 0xff;
      writeFileSync(path.join(own, art.previewFiles.get(changed)!), other);
      assertError(await served.inject(url(gone, 'preview')), 404, /The preview of track 't002' cannot be served: previews\/t002\.ogg: missing from the version folder \(listed in previews\/previews\.json\)/);
      assertError(await served.inject(url(short, 'preview')), 500, /The preview of track 't003' cannot be served: previews\/t003\.ogg: is 10 bytes, expected 1030 bytes \(size_bytes in previews\/previews\.json\)/);
      assertError(await served.inject(url(changed, 'preview')), 500, /The preview of track 't004' cannot be served: previews\/t004\.ogg: sha256 is [0-9a-f]{64} but previews\/previews\.json records/);
      assert.equal((await served.inject({ method: 'HEAD', url: url(short, 'preview') })).statusCode, 500);
      // a link out of the folder to a file of the recorded size is refused, its content never sent
      const secret = path.join(tmp(), 'secret.ogg');
      writeFileSync(secret, Buffer.alloc(art.previews.get('t006')!.length, 'S'));
      rmSync(path.join(own, art.previewFiles.get('t006')!));
      symlinkSync(secret, path.join(own, art.previewFiles.get('t006')!));
      const linked = await served.inject(url('t006', 'preview'));
      assertError(linked, 500, /previews\/t006\.ogg: is a link to a path outside the version folder/);
      assert.ok(!linked.body.includes('SSSS') && !linked.body.includes(secret), linked.body);
      const ok = await served.inject(url('t005', 'preview'));
      assert.equal(ok.statusCode, 200);
      assert.ok(ok.rawPayload.equals(art.previews.get('t005')!));
      assert.equal((await served.inject(url('t005', 'nearest'))).statusCode, 200);
    } finally {
      await served.close();
    }
  });

  it('parseRange: a suffix of an empty body and a first byte past the end are unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=-5', 0), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange(undefined, 10), { kind: 'whole' });
    assert.deepEqual(parseRange('bytes=3-', 10), { kind: 'partial', start: 3, end: 9 });
  });
});

describe('GET /report and /report/figures/:name', () => {
  it('serves report.html as UTF-8 HTML under the strict Content-Security-Policy', async () => {
    const r = await app.inject('/report');
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(r.headers['content-security-policy'], "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'");
    assert.equal(REPORT_CSP, r.headers['content-security-policy']);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.body, page.reportHtml);
  });

  it("serves a figure report.json names, byte for byte, with an ETag (304 on If-None-Match)", async () => {
    const r = await app.inject('/report/figures/map.png');
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'image/png');
    assert.ok(r.rawPayload.equals(page.figures.get('map.png')!));
    assert.match(String(r.headers['content-security-policy']), /^default-src 'none'/);
    const again = await app.inject({ url: '/report/figures/map.png', headers: { 'if-none-match': String(r.headers.etag) } });
    assert.equal(again.statusCode, 304);
  });

  it('is 404 for an unknown figure, a listed one whose file is missing, and names that try to leave the folder', async () => {
    assertError(await app.inject('/report/figures/nope.png'), 404, /No figure of that name in the report \(its figures: map\.png, hubness\.png\)/);
    assertError(await app.inject(`/report/figures/${page.missingFigure}`), 404, /Figure 'hubness\.png' is listed in eval\/report\.json but eval\/figures\/hubness\.png is missing/);
    writeFileSync(path.join(dir, 'x'), 'secret');
    // a name is only ever looked up among report.json's figures
    for (const name of ['..%2fx', '%2e%2e%2fx', '%2E%2E%2F..%2Fx', 'map.png%00', '%2fetc%2fpasswd', '..%5cx']) {
      const r = await app.inject(`/report/figures/${name}`);
      assertError(r, 404, /^No figure of that name in the report \(its figures: map\.png, hubness\.png\)$/);
      assert.ok(!r.body.includes('secret') && !r.body.includes('/tmp'), r.body);
    }
    // dot segments are resolved by the router before any route: no route matches
    for (const u of ['/report/figures/../x', '/report/figures/..', '/report/figures/%2e%2e']) {
      const r = await app.inject(u);
      assertError(r, 404, /^No route answers GET on this path/);
      assert.ok(!r.body.includes('secret'), r.body);
    }
  });
});

describe('GET /models features', () => {
  it('says which optional features are loaded, with their counts', async () => {
    const f = (await app.inject('/models')).json().features;
    assert.deepEqual(f, {
      report: { loaded: true, count: null, reason: null },
      figures: { loaded: true, count: 2, reason: null },
      clusters: { loaded: true, count: 11, reason: null },
      previews: { loaded: true, count: 10, reason: null },
    });
  });
});

/** Load `version` with the registry of `schemaDir` and expect an ArtifactError naming `file` and `detail`. */
async function refuses(version: string, file: RegExp, detail: RegExp, registry = schemas): Promise<void> {
  await assert.rejects(loadArtifacts(new LocalDirSource(version), registry, { recallSample: 0 }), (err: Error) => {
    assert.equal(err.name, 'ArtifactError', err.message);
    assert.match(err.message, file);
    assert.match(err.message, detail);
    return true;
  });
}

/** A copy of the tiny fixture with the page artifacts, `rel` (JSON) edited by `edit`. */
function withEdited(rel: string, edit: (o: Record<string, any>) => void): string {
  const version = copyFixture();
  addPageArtifacts(version);
  const o = readJson(path.join(version, rel));
  edit(o);
  writeJson(path.join(version, rel), o);
  return version;
}

describe('an optional artifact that is there but invalid refuses the load, naming the file', () => {
  it('clusters.json: its schema, other embeddings, an unknown or repeated track, an unknown cluster', async () => {
    await refuses(withEdited('eval/clusters.json', (o) => (o.tracks[0].confidence = 2)), /^eval\/clusters\.json: /, /does not match clusters\.schema\.json: \/tracks\/0\/confidence must be <= 1/);
    await refuses(withEdited('eval/clusters.json', (o) => (o.embeddings_sha256 = 'a'.repeat(64))), /eval\/clusters\.json/, /embeddings_sha256 is a{64} but embeddings\/embeddings\.f32 hashes to/);
    await refuses(withEdited('eval/clusters.json', (o) => (o.tracks[2].track_id = 'ghost')), /eval\/clusters\.json/, /tracks\[2\]: track id "ghost" is not in the catalogue/);
    await refuses(withEdited('eval/clusters.json', (o) => (o.tracks[3].track_id = o.tracks[1].track_id)), /eval\/clusters\.json/, /tracks\[3\]: track id "t001" is listed twice/);
    await refuses(withEdited('eval/clusters.json', (o) => (o.tracks[4].cluster = 7)), /eval\/clusters\.json/, /cluster 7 is not among clusters \(0, 1\)/);
    const notJson = copyFixture();
    addPageArtifacts(notJson);
    writeFileSync(path.join(notJson, 'eval', 'clusters.json'), '{"tracks": [');
    await refuses(notJson, /eval\/clusters\.json/, /not valid JSON/);
  });

  it('previews.json: its schema (a file outside previews/), an unknown or repeated track, a shared file', async () => {
    await refuses(withEdited('previews/previews.json', (o) => (o.tracks[0].file = 'previews/../embeddings/embeddings.f32')), /previews\/previews\.json/, /does not match previews\.schema\.json: \/tracks\/0\/file must match pattern/);
    await refuses(withEdited('previews/previews.json', (o) => (o.tracks[1].track_id = 'ghost')), /previews\/previews\.json/, /tracks\[1\]: track id "ghost" is not in the catalogue/);
    await refuses(withEdited('previews/previews.json', (o) => (o.tracks[2].track_id = o.tracks[1].track_id)), /previews\/previews\.json/, /tracks\[2\]: track id "t001" has a second preview/);
    await refuses(withEdited('previews/previews.json', (o) => (o.tracks[2].file = o.tracks[1].file)), /previews\/previews\.json/, /file 'previews\/t001\.ogg' is another track's preview too/);
  });

  it("report.json: another version's embeddings, a figure whose bytes are not the recorded ones", async () => {
    await refuses(withEdited('eval/report.json', (o) => (o.embeddings_sha256 = 'b'.repeat(64))), /eval\/report\.json/, /embeddings_sha256 is b{64}/);
    const version = copyFixture();
    addPageArtifacts(version);
    writeFileSync(path.join(version, 'eval', 'figures', 'map.png'), 'not the figure');
    await refuses(version, /^eval\/figures\/map\.png: /, /sha256 is [0-9a-f]{64} but eval\/report\.json records/);
  });
});

describe('without the optional artifacts', () => {
  async function expectOff(served: FastifyInstance, reasons: { report: RegExp; figures: RegExp; clusters: RegExp; previews: RegExp }): Promise<void> {
    assertError(await served.inject('/report'), 404, reasons.report);
    assertError(await served.inject('/report/figures/map.png'), 404, reasons.figures);
    assertError(await served.inject(url('t001', 'cluster')), 404, reasons.clusters);
    assertError(await served.inject(url('t001', 'preview')), 404, reasons.previews);
    assert.equal((await served.inject(url('t001', 'nearest'))).statusCode, 200);
    const found = (await served.inject('/tracks?q=piece')).json();
    assert.ok(found.total > 0 && found.tracks.every((t: { has_preview: boolean }) => !t.has_preview));
  }

  it('a version without them loads; each route is 404 with the reason while /nearest answers', async () => {
    const served = await appFor(copyFixture(), ENV);
    try {
      await expectOff(served, {
        report: /^No eval\/report\.html in v1_model_fixture-enc; run research-job report$/,
        figures: /^No eval\/report\.json in v1_model_fixture-enc; run research-job report$/,
        clusters: /^No eval\/clusters\.json in v1_model_fixture-enc; run research-job report$/,
        previews: /^No previews\/previews\.json in v1_model_fixture-enc; run research-job previews$/,
      });
      const f = (await served.inject('/models')).json().features;
      assert.deepEqual(f.previews, { loaded: false, count: null, reason: 'No previews/previews.json in v1_model_fixture-enc; run research-job previews' });
    } finally {
      await served.close();
    }
  });

  it('an artifact list without the previews keys, or a schema folder without previews.schema.json, turns previews off', async () => {
    const version = copyFixture();
    addPageArtifacts(version);
    const noKeys = path.join(tmp('node-api-schema-'), 'artifact_schema');
    cpSync(SCHEMA_DIR, noKeys, { recursive: true });
    const list = readJson(path.join(noKeys, ARTIFACT_LIST_FILE));
    list.artifacts = list.artifacts.filter((a: { key: string }) => !a.key.startsWith('previews'));
    writeJson(path.join(noKeys, ARTIFACT_LIST_FILE), list);
    const noSchema = path.join(tmp('node-api-schema-'), 'artifact_schema');
    cpSync(SCHEMA_DIR, noSchema, { recursive: true });
    rmSync(path.join(noSchema, 'previews.schema.json'));
    for (const [schemaDir, reason] of [
      [noKeys, /^previews_json is off in this server: the artifact list artifacts\.json names no 'previews_json'$/],
      [noSchema, /^previews_json is off in this server: the schema folder has no previews\.schema\.json to check 'previews_json' with$/],
    ] as const) {
      const served = await appFor(version, { ...ENV, ARTIFACT_SCHEMA_DIR: schemaDir });
      try {
        assertError(await served.inject(url('t001', 'preview')), 404, reason);
        assert.equal((await served.inject(url('t001', 'cluster'))).statusCode, 200);
        assert.equal((await served.inject('/report')).statusCode, 200);
      } finally {
        await served.close();
      }
    }
  });
});

describe('OpenAPI', () => {
  it('documents the page routes with their parameters and responses', async () => {
    const d = (await app.inject('/openapi.json')).json();
    for (const p of ['/tracks', '/tracks/{trackId}/cluster', '/tracks/{trackId}/preview', '/report', '/report/figures/{name}', '/']) assert.ok(d.paths[p]?.get, `missing GET ${p}`);
    assert.ok(d.paths['/tracks'].get.parameters.some((x: { name: string; required?: boolean }) => x.name === 'q' && x.required));
    assert.deepEqual(Object.keys(d.paths['/tracks/{trackId}/preview'].get.responses).sort(), ['200', '206', '304', '400', '404', '416', '500', '503']);
    assert.ok(d.paths['/tracks/{trackId}/preview'].get.responses['206'].content['audio/ogg']);
    assert.ok(ids.includes(d.paths['/tracks/{trackId}/cluster'].get.parameters.find((x: { in: string }) => x.in === 'path').example));
  });

  it('the JSON answers (200s included) match the schema the document gives their operation and status', async () => {
    const d = (await app.inject('/openapi.json')).json();
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addSchema({ $id: 'doc', components: d.components ?? {} });
    for (const [p, u] of [
      ['/tracks', '/tracks?q=piece'],
      ['/tracks', '/tracks?q=%20'],
      ['/tracks/{trackId}/cluster', url('t001', 'cluster')],
      ['/tracks/{trackId}/cluster', url(page.unclustered, 'cluster')],
      ['/tracks/{trackId}/preview', url(page.failedPreview, 'preview')],
      ['/report/figures/{name}', '/report/figures/nope.png'],
      ['/models', '/models'],
    ] as const) {
      const r = await app.inject(u);
      const schema = d.paths[p].get.responses[String(r.statusCode)]?.content?.['application/json']?.schema;
      assert.ok(schema, `${u}: status ${r.statusCode} is not in the document`);
      const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"doc#/components/')));
      assert.ok(validate(r.json()), `${u} ${r.statusCode}: ${JSON.stringify(validate.errors)}`);
    }
  });
});
