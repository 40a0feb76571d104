/**
 * The /nearest body written as bytes (src/lib/nearestBody.ts): byte-for-byte what JSON.stringify writes for the same
 * object, for hostile strings (quotes, backslashes, control characters, U+2028, lone surrogates, non-ASCII,
 * emoji), every composer case (display name from composer_raw, the key when it is empty or blank, null when
 * missing; composer_key beside it), both score kinds, every k, filter and ranking (cosine and re-rankings, the mid-body
 * cache keeping rankings apart), and valid against the route's response schema;
 * pre-rendered numbers round-trip exactly across chunk boundaries; bad numbers are refused by name.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Ajv } from 'ajv';

import { mulberry32 } from '../src/lib/random.js';
import { COSINE_RANKING } from '../src/lib/neighbors.js';
import { hitScore, NumberTextBuilder, numberAt, renderTrackJson, trackMembers, writeNearestBody, type NearestBody } from '../src/lib/nearestBody.js';
import type { Ranking, TrackRow } from '../src/lib/types.js';
import { nearestResponse200 } from '../src/routes/tracks/index.js';

const NASTY = ['plain', 'with "quotes"', 'back\\slash', 'new\nline\ttab', 'nul\u0000bell\u0007', 'line\u2028sep', 'lone \ud800 surrogate', 'Dvořák – Slavonic', '🎻 emoji', '', 'del\u007f'];

function track(i: number, rnd: () => number): TrackRow {
  const pick = (): string => NASTY[Math.floor(rnd() * NASTY.length)]!;
  return {
    track_id: `t${i}-${pick()}`.slice(0, 40),
    album_id: `a${i % 7}`,
    track_no: null,
    title: pick(),
    ...composers(rnd, pick),
    audio_s3_key: `audio/${i}.m4a`,
    duration_sec: null,
  };
}

/** Key, catalogue string and missing flag: missing (raw kept or not), a raw string (any, blank or empty), or no raw. */
function composers(rnd: () => number, pick: () => string): Pick<TrackRow, 'composer' | 'composer_raw' | 'composer_missing'> {
  const u = rnd();
  if (u < 0.2) return { composer: null, composer_raw: rnd() < 0.5 ? null : pick(), composer_missing: true };
  const key = pick();
  if (u < 0.35) return { composer: key, composer_raw: null, composer_missing: false };
  if (u < 0.45) return { composer: key, composer_raw: rnd() < 0.5 ? '' : ' \t ', composer_missing: false };
  return { composer: key, composer_raw: pick(), composer_missing: false };
}

/** The public fields written independently of src/lib/trackView.ts: display name = raw unless blank, else the key. */
function pub(t: TrackRow) {
  const display = t.composer === null ? null : t.composer_raw !== null && t.composer_raw.trim() !== '' ? t.composer_raw : t.composer;
  return { track_id: t.track_id, title: t.title, composer: display, composer_key: t.composer, album_id: t.album_id };
}

function tracks(n: number, seed: number): TrackRow[] {
  const rnd = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => track(i, rnd));
}

/** The same body built as an object (our key order) and serialised by JSON.stringify. */
function reference(ts: readonly TrackRow[], b: NearestBody): string {
  return JSON.stringify({
    query: pub(ts[b.queryRow]!),
    k: b.k,
    method: b.method,
    ranking: b.ranking,
    filters: { exclude_same_album: b.excludeSameAlbum, composer: b.composer },
    hits: Array.from(b.rows, (r, i) => ({ rank: i + 1, score: hitScore(b.scores, i), ...pub(ts[r]!) })),
  });
}

/** Rankings as the loader makes them (frozen; a table's params in index_meta's key order), and a hostile name. */
const RANKINGS: Ranking[] = [
  COSINE_RANKING,
  Object.freeze({ method: 'csls', params: Object.freeze({ k: 10 }) }),
  Object.freeze({ method: 'mutual_proximity', params: Object.freeze({}) }),
  Object.freeze({ method: 'qe_alpha', params: Object.freeze({ n: 2, alpha: 3.5 }) }),
  Object.freeze({ method: 'x "\\ \u2028', params: Object.freeze({ alpha: 1e-7, k: 1 }) }),
];

const SPECIAL_SCORES = [1, -1, 0, -0, 0.5, 1e-7, -3.3e-10, 0.1 + 0.2, 0.9999999999999999, -0.000001234567890123456, Number.MIN_VALUE];

describe('renderTrackJson / writeNearestBody', () => {
  const ts = tracks(300, 7);
  const json = renderTrackJson(ts);

  it('renders each track as JSON.stringify would, at the recorded offsets', () => {
    assert.equal(json.offsets.length, ts.length + 1);
    const text = Buffer.from(json.bytes).toString('utf8');
    ts.forEach((t, row) => {
      const got = Buffer.from(json.bytes.subarray(json.offsets[row]!, json.offsets[row + 1]!)).toString('utf8');
      assert.equal(got, trackMembers(t));
      assert.deepEqual(JSON.parse(`{${got}}`), pub(t));
      assert.equal(got, JSON.stringify(pub(t)).slice(1, -1), 'members in the order of the public fields');
    });
    assert.equal(Buffer.byteLength(ts.map(trackMembers).join(''), 'utf8'), json.bytes.length);
    assert.ok(text.includes('\\u0000') && text.includes('\\ud800') && text.includes('Dvořák'), 'escapes and UTF-8 present');
    const kinds = new Set(ts.map((t) => (t.composer === null ? 'missing' : pub(t).composer === t.composer_raw ? 'raw' : 'key fallback')));
    assert.deepEqual([...kinds].sort(), ['key fallback', 'missing', 'raw'], 'every composer case is exercised');
  });

  it('writes bytes equal to JSON.stringify of the same object, for numbers and pre-rendered scores, any k and filter', () => {
    const rnd = mulberry32(3);
    const validate = new Ajv({ strict: false }).compile(nearestResponse200);
    for (let trial = 0; trial < 400; trial++) {
      const n = Math.floor(rnd() * 12); // 0 hits included
      const rows = Array.from({ length: n }, () => Math.floor(rnd() * ts.length));
      const values = rows.map((_, i) => (trial % 5 === 0 ? SPECIAL_SCORES[(trial + i) % SPECIAL_SCORES.length]! : rnd() * 2 - 1));
      const builder = new NumberTextBuilder(values.length);
      values.forEach((v) => builder.push(v));
      const rendered = builder.finish();
      const common = {
        queryRow: Math.floor(rnd() * ts.length),
        k: 1 + Math.floor(rnd() * 100),
        method: ['precomputed', 'hnsw', 'exact', 'exact (composer subset)', 'méthode "x"'][trial % 5]!,
        ranking: RANKINGS[Math.floor(rnd() * RANKINGS.length)]!,
        excludeSameAlbum: rnd() < 0.5,
        composer: rnd() < 0.5 ? null : NASTY[trial % NASTY.length]!,
        rows,
      };
      const asNumbers: NearestBody = { ...common, scores: { kind: 'numbers', values } };
      const asRendered: NearestBody = { ...common, scores: { kind: 'rendered', rendered, entries: values.map((_, i) => i) } };
      const want = reference(ts, asNumbers);
      const a = writeNearestBody(json, asNumbers);
      const b = writeNearestBody(json, asRendered);
      assert.equal(a.toString('utf8'), want, `trial ${trial}`);
      assert.ok(a.equals(b), `trial ${trial}: rendered scores write the same bytes`);
      assert.ok(validate(JSON.parse(want)), JSON.stringify(validate.errors));
    }
  });

  it('keeps rankings apart in the mid-body cache: same method, k and filters, another ranking, other bytes', () => {
    const body = (ranking: Ranking): NearestBody => ({ queryRow: 1, k: 3, method: 'precomputed', ranking, excludeSameAlbum: false, composer: null, rows: [4, 9, 2], scores: { kind: 'numbers', values: [0.5, 0.25, 0.75] } });
    for (let pass = 0; pass < 2; pass++) {
      for (const r of RANKINGS) {
        const got = JSON.parse(writeNearestBody(json, body(r)).toString('utf8'));
        assert.deepEqual(got.ranking, r);
        assert.equal(writeNearestBody(json, body(r)).toString('utf8'), reference(ts, body(r)));
      }
    }
    // an equal ranking in another object (another loaded state) writes the same bytes
    assert.ok(writeNearestBody(json, body({ method: 'csls', params: { k: 10 } })).equals(writeNearestBody(json, body(RANKINGS[1]!))));
  });

  it('refuses a non-finite score, naming the hit and its row', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      assert.throws(
        () => writeNearestBody(json, { queryRow: 0, k: 2, method: 'exact', ranking: COSINE_RANKING, excludeSameAlbum: false, composer: null, rows: [4, 9], scores: { kind: 'numbers', values: [0.5, bad] } }),
        new RegExp(`^RangeError: hit 2 \\(row 9\\) has score ${bad}, not a finite number$`),
      );
    }
  });
});

describe('NumberTextBuilder', () => {
  it('round-trips every number exactly, across the 1 MiB chunk boundary', () => {
    const rnd = mulberry32(11);
    const n = 90_000; // ~18 bytes each: more than one chunk
    const values = Array.from({ length: n }, (_, i) => (i < SPECIAL_SCORES.length ? SPECIAL_SCORES[i]! : (rnd() * 2 - 1) * 10 ** -Math.floor(rnd() * 9)));
    const b = new NumberTextBuilder(n);
    values.forEach((v) => b.push(v));
    const r = b.finish();
    assert.ok(r.text.length > 1 << 20, `text is ${r.text.length} bytes`);
    assert.equal(r.offsets[n], r.text.length);
    values.forEach((v, e) => {
      assert.equal(Buffer.from(r.text.subarray(r.offsets[e]!, r.offsets[e + 1]!)).toString('latin1'), JSON.stringify(v));
      assert.ok(Object.is(numberAt(r, e), v === 0 ? 0 : v), `entry ${e}: ${v}`);
    });
  });

  it('refuses non-finite numbers, extra entries and an early finish', () => {
    const b = new NumberTextBuilder(2);
    assert.throws(() => b.push(NaN), /^RangeError: entry 0 is NaN, not a finite number$/);
    b.push(0.25);
    assert.throws(() => b.finish(), /^RangeError: NumberTextBuilder: 1 of 2 entries pushed$/);
    b.push(-0.5);
    assert.throws(() => b.push(1), /^RangeError: NumberTextBuilder: more than 2 entries$/);
    const r = b.finish();
    assert.deepEqual([numberAt(r, 0), numberAt(r, 1)], [0.25, -0.5]);
  });
});
