/**
 * The precomputed neighbour table index/neighbors.i32 (make_fixture.py computes it by brute force in numpy):
 * /nearest answers from it equal the exact backend's for every track, every filter combination and k = 1, 5,
 * K and K + 1 (the fallback); a padded table (count - 1 < K); every kind of bad table refuses the load naming
 * the file and the first bad row; NEIGHBORS_TABLE auto / require / off; GET /models reports it; composer-eval
 * is unaffected.
 */

import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { dotRows } from '../src/lib/exact.js';
import { loadArtifacts, type LoadOptions } from '../src/lib/loader.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { composerEval, nearestToRow } from '../src/lib/search.js';
import { LocalDirSource } from '../src/lib/source.js';
import type { LoadedState } from '../src/lib/state.js';
import { appFor, cleanupTmp, copyFixture, generatedFixture, makeFixture, readJson, sha256File, SCHEMA_DIR, TINY, writeJson } from './helpers.js';

const schemas = new SchemaRegistry(SCHEMA_DIR);
const load = (dir: string, opts: Partial<LoadOptions> = {}) => loadArtifacts(new LocalDirSource(dir), schemas, { recallSample: 20, ...opts });
const NB = 'index/neighbors.i32';
const K = 10;

let dir: string;
let withTable: LoadedState;
let exactOnly: LoadedState;

before(async () => {
  dir = generatedFixture();
  withTable = await load(dir);
  exactOnly = await load(dir, { backend: 'exact', neighborsTable: 'off' });
});
after(cleanupTmp);

function readTable(d: string): Int32Array {
  const b = readFileSync(path.join(d, NB));
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

/** Write `table` as the fixture copy's neighbors.i32 and record its size and sha256, so only the content is bad. */
function writeTable(d: string, table: Int32Array, meta: (nb: Record<string, any>) => void = () => {}): void {
  const file = path.join(d, NB);
  writeFileSync(file, Buffer.from(table.buffer, table.byteOffset, table.byteLength));
  const o = readJson(path.join(d, 'index/index_meta.json'));
  o.neighbors.sha256 = sha256File(file);
  o.neighbors.size_bytes = table.byteLength;
  meta(o.neighbors);
  writeJson(path.join(d, 'index/index_meta.json'), o);
}

/** Every filter combination of one query row: none, same album, own composer, another composer, both. */
function filterSets(s: LoadedState, row: number): Array<{ excludeSameAlbum: boolean; composer: string | null }> {
  const composers = [...s.composerRows.keys()];
  const own = s.tracks[row]!.composer;
  const other = composers.find((c) => c !== own)!;
  const out: Array<{ excludeSameAlbum: boolean; composer: string | null }> = [];
  for (const excludeSameAlbum of [false, true]) {
    for (const composer of new Set([null, own, other])) out.push({ excludeSameAlbum, composer });
  }
  return out;
}

describe('answers from the table', () => {
  it('loads the table of the generated fixture (k = 10) as a zero-copy Int32Array', () => {
    assert.ok(withTable.neighbors);
    assert.equal(withTable.neighbors.k, K);
    assert.ok(withTable.neighbors.rows instanceof Int32Array);
    assert.equal(withTable.neighbors.rows.length, withTable.count * K);
    assert.deepEqual(withTable.neighbors.rows, readTable(dir));
    assert.equal(withTable.backend.kind, 'hnsw');
  });

  it('equal the exact backend for every track, every filter combination, k = 1, 5, K and K + 1', async () => {
    const served = { plain: 0, filtered: 0, fellBack: 0 };
    for (let row = 0; row < withTable.count; row++) {
      for (const f of filterSets(withTable, row)) {
        for (const k of [1, 5, K, K + 1]) {
          const got = await nearestToRow(withTable, row, k, f);
          const want = await nearestToRow(exactOnly, row, k, f);
          assert.deepEqual(got.hits, want.hits, `row ${row} k ${k} ${JSON.stringify(f)} (${got.method})`);
          if (k > K) assert.notEqual(got.method, 'precomputed');
          if (got.method === 'precomputed') {
            if (f.excludeSameAlbum || f.composer !== null) served.filtered++;
            else served.plain++;
          } else {
            assert.equal(got.method, want.method === 'exact' ? 'hnsw' : want.method, 'the fallback is the path that would run without the table');
            if (k <= K) served.fellBack++;
          }
          if (k <= K && !f.excludeSameAlbum && f.composer === null) assert.equal(got.method, 'precomputed', `row ${row} k ${k}`);
        }
      }
    }
    // both paths ran under filters: some filtered queries were answered from the table, some fell back
    assert.equal(served.plain, withTable.count * 3);
    assert.ok(served.filtered > 0 && served.fellBack > 0, JSON.stringify(served));
  });

  it('scores are the exact float64 dot product (bit for bit) and ties keep ascending rows', async () => {
    // rows 8, 9 and 33 hold the same vector: row 8's list starts with 9 then 33 at equal scores
    const r = await nearestToRow(withTable, 8, 2, { excludeSameAlbum: false, composer: null });
    assert.equal(r.method, 'precomputed');
    assert.deepEqual(r.hits.map((h) => h.track_id), [withTable.trackIds[9], withTable.trackIds[33]]);
    assert.equal(r.hits[0]!.score, r.hits[1]!.score);
  });

  it('still refuses an unknown composer (400) before looking at the table', async () => {
    await assert.rejects(nearestToRow(withTable, 0, 5, { excludeSameAlbum: false, composer: 'nobody' }), (e: Error & { statusCode?: number }) => e.statusCode === 400);
  });

  it('leaves composer-eval unchanged (it ranks all tracks)', () => {
    for (let row = 0; row < withTable.count; row++) {
      for (const album of [false, true]) assert.deepEqual(composerEval(withTable, row, 5, album), composerEval(exactOnly, row, 5, album));
    }
  });

  it('serves a padded table (count - 1 < K): k <= count - 1 from the table, larger k from the backend', async () => {
    const small = makeFixture(['--n', '12', '--neighbors-k', '16', '--no-eval']);
    const t = readTable(small);
    for (let row = 0; row < 12; row++) assert.deepEqual([...t.subarray(row * 16 + 11, row * 16 + 16)], [-1, -1, -1, -1, -1]);
    const s = await load(small);
    const e = await load(small, { backend: 'exact', neighborsTable: 'off' });
    assert.equal(s.neighbors?.k, 16);
    for (let row = 0; row < 12; row++) {
      for (const f of filterSets(s, row)) {
        for (const k of [1, 5, 11, 12, 16, 17]) {
          const got = await nearestToRow(s, row, k, f);
          assert.deepEqual(got.hits, (await nearestToRow(e, row, k, f)).hits, `row ${row} k ${k} ${JSON.stringify(f)}`);
          if (k > 11) assert.notEqual(got.method, 'precomputed');
        }
      }
    }
  });
});

describe('refusing a bad table', () => {
  async function refuses(edit: (d: string, t: Int32Array) => void, detail: RegExp, opts: Partial<LoadOptions> = {}, file = /^index\/neighbors\.i32: /): Promise<void> {
    const d = copyFixture(dir);
    edit(d, readTable(d));
    await assert.rejects(load(d, opts), (err: Error) => {
      assert.equal(err.name, 'ArtifactError', err.message);
      assert.match(err.message, file);
      assert.match(err.message, detail);
      return true;
    });
  }
  const n = 60;

  it('a size that is not count x k x 4', () => refuses((d, t) => writeTable(d, t.subarray(0, t.length - 1)), /size is 2396 bytes but count x k x 4 = 60 x 10 x 4 = 2400/));
  it('a size other than size_bytes', () => refuses((d, t) => writeTable(d, t, (nb) => (nb.size_bytes = 2404)), /size is 2400 bytes but index\/index_meta\.json records size_bytes 2404/));
  it('a sha256 other than recorded', () => refuses((d, t) => writeTable(d, t, (nb) => (nb.sha256 = '0'.repeat(64))), /sha256 is [0-9a-f]{64} but index\/index_meta\.json records 0{64}/));
  it('a row out of range', () => refuses((d, t) => ((t[7 * K + 3] = n), writeTable(d, t)), /row 7 column 3 holds 60, outside \[0, 60\)/));
  it('a negative value other than padding', () => refuses((d, t) => ((t[5 * K] = -5), writeTable(d, t)), /row 5 column 0 holds -5, outside \[0, 60\)/));
  it('-1 padding where count - 1 >= k', () => refuses((d, t) => ((t[4 * K + 9] = -1), writeTable(d, t)), /row 4 column 9 holds -1 padding before the row's 10 neighbours are listed/));
  it('the track itself', () => refuses((d, t) => ((t[2 * K + 4] = 2), writeTable(d, t)), /row 2 column 4 lists the track itself/));
  it('a row listed twice', () => refuses((d, t) => ((t[3 * K + 6] = t[3 * K + 1]!), writeTable(d, t)), /row 3 column 6 lists row \d+ a second time/));
  it('a well-formed table whose lists are not best first (every list reversed): caught on every row', () =>
    refuses((d, t) => {
      for (let r = 0; r < n; r++) t.subarray(r * K, (r + 1) * K).reverse();
      writeTable(d, t);
    }, /row 0 column 1 lists row \d+ with score [-0-9.e]+, above column 0's [-0-9.e]+: lists must be best first \(the table does not match embeddings\/embeddings\.f32\)/));
  it("lists best first but not the nearest (each row's K farthest tracks): caught by the exact spot check", () =>
    refuses((d, t) => {
      const { embeddings: emb, dim } = exactOnly;
      for (let r = 0; r < n; r++) {
        const others = [...Array(n).keys()].filter((o) => o !== r).map((o) => ({ o, s: dotRows(emb, dim, r, o) }));
        others.sort((a, b) => a.s - b.s || a.o - b.o);
        const farthest = others.slice(0, K).sort((a, b) => b.s - a.s || a.o - b.o);
        farthest.forEach((x, j) => (t[r * K + j] = x.o));
      }
      writeTable(d, t);
    }, /row \d+ column 0 lists row \d+ \(score [-0-9.e]+\) but exact search ranks row \d+ \(score [-0-9.e]+\) there: the table does not match embeddings\/embeddings\.f32/));
  it('index_meta failing its schema (k 0)', () => refuses((d, t) => writeTable(d, t, (nb) => (nb.k = 0)), /neighbors\/k|must be >= 1/, {}, /^index\/index_meta\.json: /));
});

describe('NEIGHBORS_TABLE', () => {
  it('auto (default) uses the table when listed; serves without it when unlisted or missing', async () => {
    assert.ok((await load(dir, { neighborsTable: 'auto' })).neighbors);
    assert.equal((await load(TINY)).neighbors, null, 'tiny has no table');
    const d = copyFixture(dir);
    rmSync(path.join(d, NB));
    const logs: string[] = [];
    const s = await load(d, { log: (m) => logs.push(m) });
    assert.equal(s.neighbors, null);
    assert.ok(logs.some((m) => /index\/neighbors\.i32 is listed in index\/index_meta\.json but missing/.test(m)), logs.join('\n'));
    const r = await nearestToRow(s, 0, 5, { excludeSameAlbum: false, composer: null });
    assert.equal(r.method, 'hnsw');
  });

  it('require refuses without the table (unlisted, missing, or no index_meta)', async () => {
    await assert.rejects(load(TINY, { neighborsTable: 'require' }), /^ArtifactError: index\/index_meta\.json: NEIGHBORS_TABLE=require but no "neighbors" entry is listed/);
    const d = copyFixture(dir);
    rmSync(path.join(d, NB));
    await assert.rejects(load(d, { neighborsTable: 'require' }), /index\/neighbors\.i32: missing, but index\/index_meta\.json lists it and NEIGHBORS_TABLE=require/);
    rmSync(path.join(d, 'index'), { recursive: true });
    await assert.rejects(load(d, { neighborsTable: 'require' }), /index\/index_meta\.json: NEIGHBORS_TABLE=require but the file is missing/);
    assert.equal((await load(dir, { neighborsTable: 'require' })).neighbors?.k, K);
  });

  it('off ignores the table, even a corrupt one', async () => {
    const d = copyFixture(dir);
    writeFileSync(path.join(d, NB), 'garbage');
    const s = await load(d, { neighborsTable: 'off' });
    assert.equal(s.neighbors, null);
    assert.equal((await nearestToRow(s, 0, 5, { excludeSameAlbum: false, composer: null })).method, 'hnsw');
  });

  it('GET /models reports the table and counts requests served from it and passed on', async () => {
    const app = await appFor(dir, { RECALL_SAMPLE: '10' });
    try {
      assert.deepEqual((await app.inject('/models')).json().neighbors, { loaded: true, k: K, ranking: 'score_desc_float64_then_row_asc', rerank: null, served: 0, fallbacks: 0 });
      const id = encodeURIComponent(withTable.trackIds[0]!);
      const a = (await app.inject(`/tracks/${id}/nearest?k=5`)).json();
      assert.equal(a.method, 'precomputed');
      assert.equal(a.hits.length, 5);
      assert.equal((await app.inject(`/tracks/${id}/nearest?k=11`)).json().method, 'hnsw');
      assert.deepEqual((await app.inject('/models')).json().neighbors, { loaded: true, k: K, ranking: 'score_desc_float64_then_row_asc', rerank: null, served: 1, fallbacks: 1 });
    } finally {
      await app.close();
    }
    const off = await appFor(dir, { RECALL_SAMPLE: '10', NEIGHBORS_TABLE: 'off' });
    try {
      assert.deepEqual((await off.inject('/models')).json().neighbors, { loaded: false, k: null, ranking: null, rerank: null, served: 0, fallbacks: 0 });
    } finally {
      await off.close();
    }
  });
});
