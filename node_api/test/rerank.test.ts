/**
 * A re-ranked neighbour table (build-index --rerank; make_fixture.py --rerank writes research_job.rerank.topk's
 * table and its rows and re-ranked scores beside the version folder) over real HTTP: for every method it loads
 * (structural checks only), /nearest answers every track with exactly the table's order (the order Python
 * evaluated, not the cosine's), scored by the cosine, reporting the re-ranking as `ranking`; filtered answers are
 * the list's first survivors, and a fallback to the backend reports plain cosine; GET /models shows the table's
 * ranking and re-ranking; recall is measured against exact cosine, never against the re-ranked table; every
 * structural defect of a re-ranked table still refuses the load, and so does a plain table whose order was
 * tampered (the re-ranked order relabelled plain, two columns swapped); the OpenAPI document declares it all.
 */

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Ajv } from 'ajv';
import type { FastifyInstance } from 'fastify';

import { dotRows } from '../src/lib/exact.js';
import { loadArtifacts, type LoadOptions } from '../src/lib/loader.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource } from '../src/lib/source.js';
import type { LoadedState } from '../src/lib/state.js';
import { nearestResponse200 } from '../src/routes/tracks/index.js';
import { appFor, bruteForce, cleanupTmp, copyFixture, makeFixture, readJson, sha256File, SCHEMA_DIR, writeJson } from './helpers.js';

const schemas = new SchemaRegistry(SCHEMA_DIR);
const load = (dir: string, opts: Partial<LoadOptions> = {}) => loadArtifacts(new LocalDirSource(dir), schemas, { recallSample: 20, ...opts });
const METHODS = ['csls', 'mutual_proximity', 'local_scaling', 'qe_avg', 'qe_alpha'];
const NB = 'index/neighbors.i32';
const K = 10;
const N = 60;
const COSINE = { method: 'cosine', params: {} };
// HNSW_EF >= N: the HNSW fallback is exactly the exact search, so it can be compared hit for hit
const ENV = { RECALL_SAMPLE: '20', HNSW_EF: '64' };

/** research_job.rerank.topk's answer, as make_fixture.py --rerank writes it beside the version folder. */
interface PythonTopk {
  rerank: { method: string; params: Record<string, number> };
  rows: number[][];
  scores: Array<Array<number | null>>;
}

/** One fixture served over HTTP on 127.0.0.1 (port 0), with its state loaded in process for the filters. */
interface Served {
  dir: string;
  py: PythonTopk;
  app: FastifyInstance;
  base: string;
  state: LoadedState;
}

const served = new Map<string, Served>();

async function serve(dir: string): Promise<Served> {
  const app = await appFor(dir, ENV);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const py = JSON.parse(readFileSync(path.join(path.dirname(dir), 'rerank_topk.json'), 'utf8')) as PythonTopk;
  return { dir, py, app, base, state: await load(dir, { backend: 'exact', neighborsTable: 'off' }) };
}

async function get(s: Served, url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(s.base + url);
  return { status: res.status, body: await res.json() };
}

before(async () => {
  for (const m of METHODS) served.set(m, await serve(makeFixture(['--rerank', m, '--no-eval'])));
});

after(async () => {
  for (const s of served.values()) await s.app.close();
  cleanupTmp();
});

const csls = (): Served => served.get('csls')!;
const nearestUrl = (s: Served, row: number, q: string) => `/tracks/${encodeURIComponent(s.state.trackIds[row]!)}/nearest?${q}`;

describe('a re-ranked table over HTTP', () => {
  it("the fixtures are re-ranked: research_job's lists are best first by the re-ranked score, and not by cosine", () => {
    for (const [m, s] of served) {
      assert.equal(s.py.rerank.method, m);
      let notCosineOrder = 0;
      for (let row = 0; row < N; row++) {
        const rows = s.py.rows[row]!;
        const sc = s.py.scores[row]!;
        for (let j = 1; j < K; j++) assert.ok(sc[j]! < sc[j - 1]! || (sc[j] === sc[j - 1] && rows[j]! > rows[j - 1]!), `${m} row ${row} column ${j}`);
        const cos = rows.map((r) => dotRows(s.state.embeddings, s.state.dim, row, r));
        if (cos.some((c, j) => j > 0 && c > cos[j - 1]! + 1e-12)) notCosineOrder++;
      }
      assert.ok(notCosineOrder > N / 2, `${m}: only ${notCosineOrder} lists differ from the cosine order`);
    }
  });

  it("/nearest returns exactly research_job.rerank.topk's order for every track and method, scored by the cosine", async () => {
    const validate = new Ajv({ strict: false }).compile(nearestResponse200);
    for (const [m, s] of served) {
      for (let row = 0; row < N; row++) {
        for (const k of [1, 5, K]) {
          const { status, body } = await get(s, nearestUrl(s, row, `k=${k}`));
          assert.equal(status, 200);
          assert.ok(validate(body), JSON.stringify(validate.errors));
          assert.equal(body.method, 'precomputed');
          assert.deepEqual(body.ranking, s.py.rerank);
          const want = s.py.rows[row]!.slice(0, k);
          assert.deepEqual(body.hits.map((h: any) => h.track_id), want.map((r) => s.state.trackIds[r]), `${m} row ${row} k ${k}`);
          body.hits.forEach((h: any, i: number) => {
            assert.equal(h.rank, i + 1);
            assert.equal(h.score, dotRows(s.state.embeddings, s.state.dim, row, want[i]!), `${m} row ${row} hit ${i + 1}: the cosine, bit for bit`);
          });
        }
      }
    }
  });

  it("filters keep the table's order (its first survivors); a fallback to the backend is plain cosine and says so", async () => {
    const s = csls();
    const st = s.state;
    const paths = new Set<string>();
    for (let row = 0; row < N; row++) {
      const own = st.tracks[row]!.composer;
      for (const composer of [null, own]) {
        for (const sameAlbum of [false, true]) {
          for (const k of [3, K, K + 1]) {
            const q = `k=${k}&exclude_same_album=${sameAlbum}` + (composer === null ? '' : `&composer=${encodeURIComponent(composer)}`);
            const { status, body } = await get(s, nearestUrl(s, row, q));
            assert.equal(status, 200, JSON.stringify(body));
            const keep = (r: number) => r !== row && (!sameAlbum || st.albumOfRow[r] !== st.albumOfRow[row]) && (composer === null || st.tracks[r]!.composer === composer);
            const survivors = s.py.rows[row]!.filter(keep);
            const got = body.hits.map((h: any) => h.track_id);
            if (k <= K && survivors.length >= k) {
              assert.equal(body.method, 'precomputed', `row ${row} ${q}`);
              assert.deepEqual(body.ranking, s.py.rerank);
              assert.deepEqual(got, survivors.slice(0, k).map((r) => st.trackIds[r]), `row ${row} ${q}`);
            } else {
              assert.notEqual(body.method, 'precomputed', `row ${row} ${q}`);
              assert.deepEqual(body.ranking, COSINE, `row ${row} ${q}: the backend ranks by plain cosine`);
              const want = bruteForce(st.embeddings, st.dim, st.embeddings.subarray(row * st.dim, (row + 1) * st.dim), (r) => !keep(r)).slice(0, k);
              assert.deepEqual(got, want.map((h) => st.trackIds[h.row]), `row ${row} ${q}`);
            }
            paths.add(`${body.method} ${body.ranking.method}`);
          }
        }
      }
    }
    assert.deepEqual([...paths].sort(), ['exact (composer subset) cosine', 'hnsw cosine', 'precomputed csls']);
  });

  it('GET /models shows the ranking and the re-ranking of each table, and its counters', async () => {
    for (const [m, s] of served) {
      const before = (await get(s, '/models')).body.neighbors;
      assert.equal((await get(s, nearestUrl(s, 0, 'k=5'))).body.method, 'precomputed');
      assert.equal((await get(s, nearestUrl(s, 0, `k=${K + 1}`))).body.method, 'hnsw');
      const { status, body } = await get(s, '/models');
      assert.equal(status, 200);
      assert.deepEqual(body.neighbors, {
        loaded: true,
        k: K,
        ranking: 'rerank_score_desc_then_row_asc',
        rerank: s.py.rerank,
        served: before.served + 1,
        fallbacks: before.fallbacks + 1,
      }, m);
      assert.deepEqual(body.neighbors.rerank, readJson(path.join(s.dir, 'index/index_meta.json')).neighbors.rerank);
      // the recall of the HNSW path is against exact cosine, never the re-ranked lists
      assert.equal(body.recall.truth, 'exact scan', m);
      assert.equal(body.recall.recall_at_10, 1, `${m}: HNSW_EF >= N is exact`);
    }
  });

  it('a plain table reports its ranking with rerank null, and cosine on its answers', async () => {
    const plain = makeFixture(['--no-eval']);
    const app = await appFor(plain, ENV);
    try {
      const models = (await app.inject('/models')).json();
      assert.equal(models.neighbors.ranking, 'score_desc_float64_then_row_asc');
      assert.equal(models.neighbors.rerank, null);
      assert.equal(models.recall.truth, 'neighbors table');
      const body = (await app.inject('/tracks/t001/nearest?k=5')).json();
      assert.equal(body.method, 'precomputed');
      assert.deepEqual(body.ranking, COSINE);
    } finally {
      await app.close();
    }
  });

  it('the OpenAPI document declares ranking on /nearest and ranking / rerank on /models', async () => {
    const { body } = await get(csls(), '/openapi.json');
    const ok = body.paths['/tracks/{trackId}/nearest'].get.responses['200'].content['application/json'].schema;
    assert.ok(ok.required.includes('ranking'));
    assert.deepEqual(ok.properties.ranking.required, ['method', 'params']);
    assert.match(ok.properties.ranking.description, /Scores are the cosine either way/);
    assert.match(ok.properties.ranking.description, /fallback to the backend is plain cosine/);
    assert.match(ok.properties.hits.items.properties.score.description, /also when a re-ranking ordered the hits/);
    const nb = body.paths['/models'].get.responses['200'].content['application/json'].schema.properties.neighbors;
    assert.ok(nb.required.includes('ranking') && nb.required.includes('rerank'));
    assert.match(nb.properties.rerank.description, /neighbors\.rerank/);
  });
});

describe('load checks of re-ranked and tampered tables', () => {
  function readTable(d: string): Int32Array {
    const b = readFileSync(path.join(d, NB));
    return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
  }

  /** Write `table` and record its size and sha256 (so only the content, or the edited entry, is wrong). */
  function writeTable(d: string, table: Int32Array, meta: (nb: Record<string, any>) => void = () => {}): void {
    const file = path.join(d, NB);
    writeFileSync(file, Buffer.from(table.buffer, table.byteOffset, table.byteLength));
    const o = readJson(path.join(d, 'index/index_meta.json'));
    o.neighbors.sha256 = sha256File(file);
    o.neighbors.size_bytes = table.byteLength;
    meta(o.neighbors);
    writeJson(path.join(d, 'index/index_meta.json'), o);
  }

  async function refuses(src: string, edit: (d: string, t: Int32Array) => void, detail: RegExp, file = /^index\/neighbors\.i32: /): Promise<void> {
    const d = copyFixture(src);
    edit(d, readTable(d));
    await assert.rejects(load(d), (err: Error) => {
      assert.equal(err.name, 'ArtifactError', err.message);
      assert.match(err.message, file);
      assert.match(err.message, detail);
      return true;
    });
  }

  it('loads every re-ranked table (no cosine-order check) and logs that it is served in its own order', async () => {
    for (const [m, s] of served) {
      const logs: Array<[string, Record<string, unknown> | undefined]> = [];
      const st = await load(s.dir, { log: (msg, f) => logs.push([msg, f]) });
      assert.deepEqual(st.neighbors?.ranking, s.py.rerank);
      assert.deepEqual(Array.from(st.neighbors!.rows), s.py.rows.flat());
      assert.ok(logs.some(([msg, f]) => msg.startsWith(`neighbors table ordered by ${m}: served in its order`) && f?.ranking === 'rerank_score_desc_then_row_asc'), m);
    }
  });

  const structural: Array<[string, (t: Int32Array) => void, RegExp]> = [
    ['a row out of range', (t) => (t[7 * K + 3] = N), /row 7 column 3 holds 60, outside \[0, 60\)/],
    ['-1 padding where count - 1 >= k', (t) => (t[4 * K + 9] = -1), /row 4 column 9 holds -1 padding before the row's 10 neighbours are listed/],
    ['the track itself', (t) => (t[2 * K + 4] = 2), /row 2 column 4 lists the track itself/],
    ['a row listed twice', (t) => (t[3 * K + 6] = t[3 * K + 1]!), /row 3 column 6 lists row \d+ a second time/],
  ];
  for (const [what, edit, detail] of structural) {
    it(`a re-ranked table with ${what} still refuses`, () => refuses(csls().dir, (d, t) => (edit(t), writeTable(d, t)), detail));
  }
  it('a re-ranked table of another size or sha256 than recorded still refuses', async () => {
    await refuses(csls().dir, (d, t) => writeTable(d, t, (nb) => (nb.size_bytes = 2404)), /size is 2400 bytes but index\/index_meta\.json records size_bytes 2404/);
    await refuses(csls().dir, (d, t) => writeTable(d, t, (nb) => (nb.sha256 = '0'.repeat(64))), /sha256 is [0-9a-f]{64} but index\/index_meta\.json records 0{64}/);
  });

  it('a re-ranked order relabelled as a plain table refuses: lists must be best first', () =>
    refuses(csls().dir, (d, t) => writeTable(d, t, (nb) => ((nb.ranking = 'score_desc_float64_then_row_asc'), delete nb.rerank)), /lists must be best first \(the table does not match embeddings\/embeddings\.f32\)/));

  it('a plain table with two columns of one row swapped refuses', async () => {
    const plain = makeFixture(['--no-eval']);
    await refuses(plain, (d, t) => {
      [t[5 * K + 2], t[5 * K + 6]] = [t[5 * K + 6]!, t[5 * K + 2]!];
      writeTable(d, t);
    }, /row 5 column \d lists row \d+ with score [-0-9.e]+, above column \d's [-0-9.e]+: lists must be best first/);
  });

  it('index_meta must name the re-ranking of a re-ranked table, and only of one (schema)', async () => {
    const index = /^index\/index_meta\.json: /;
    await refuses(csls().dir, (d, t) => writeTable(d, t, (nb) => delete nb.rerank), /\/neighbors must have required property 'rerank'/, index);
    await refuses(csls().dir, (d, t) => writeTable(d, t, (nb) => (nb.ranking = 'score_desc_float64_then_row_asc')), /\/neighbors must NOT be valid; \/neighbors must match "else" schema/, index);
    await refuses(csls().dir, (d, t) => writeTable(d, t, (nb) => (nb.rerank.method = 'hubless')), /\/neighbors\/rerank\/method must be equal to one of the allowed values/, index);
  });
});
