/**
 * Loading the committed tiny fixture, and refusing to start on each kind of corruption with a message that
 * names the file and the mismatch. No Python needed.
 */

import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import hnswlib from 'hnswlib-node';

import { loadArtifacts } from '../src/lib/loader.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource } from '../src/lib/source.js';
import { appFor, cleanupTmp, copyFixture, readEmbeddings, readJson, sha256File, SCHEMA_DIR, TINY, writeJson } from './helpers.js';

const schemas = new SchemaRegistry(SCHEMA_DIR);
const load = (dir: string, opts = {}) => loadArtifacts(new LocalDirSource(dir), schemas, { recallSample: 20, ...opts });
const p = (dir: string, rel: string) => path.join(dir, rel);

after(cleanupTmp);

/** Edit a JSON file of a fixture copy. */
function editJson(dir: string, rel: string, edit: (o: Record<string, any>) => void): void {
  const o = readJson(p(dir, rel));
  edit(o);
  writeJson(p(dir, rel), o);
}

/** Replace index/hnsw.index by one written by hnswlib-node and record its sha/size so only the content differs. */
function replaceIndex(dir: string, dim: number, rows: Float32Array[]): void {
  const idx = new hnswlib.HierarchicalNSW('ip', dim);
  idx.initIndex(rows.length, 8, 100, 3);
  rows.forEach((r, i) => idx.addPoint(Array.from(r), i));
  const file = p(dir, 'index/hnsw.index');
  idx.writeIndexSync(file);
  editJson(dir, 'index/index_meta.json', (o) => {
    o.indexes[0].sha256 = sha256File(file);
    o.indexes[0].size_bytes = statSync(file).size;
  });
}

async function refuses(dir: string, file: RegExp, detail: RegExp, opts = {}): Promise<void> {
  await assert.rejects(load(dir, opts), (err: Error) => {
    assert.equal(err.name, 'ArtifactError', err.message);
    assert.match(err.message, file);
    assert.match(err.message, detail);
    return true;
  });
}

describe('loading the tiny fixture', () => {
  it('loads every file, aligns metadata to rows and uses the HNSW index', async () => {
    const s = await load(TINY);
    const ids = readJson(p(TINY, 'embeddings/track_ids.json')).track_ids as string[];
    assert.equal(s.count, 12);
    assert.equal(s.dim, 8);
    assert.deepEqual([...s.trackIds], ids);
    s.tracks.forEach((t, i) => assert.equal(t.track_id, ids[i]));
    assert.equal(s.backend.kind, 'hnsw');
    assert.ok(s.recall && s.recall.recall_at_5 >= 0.99, JSON.stringify(s.recall));
    assert.deepEqual(s.embeddings, readEmbeddings(TINY));
    assert.equal(s.evalResults?.n_tracks, 12);
    // quoted CSV fields with commas, quotes and newlines come back intact
    const t0 = s.tracks[s.rowById.get(ids[0]!)!]!;
    assert.equal(t0.title, 'Two-line\ntitle 0, with comma');
    assert.equal(s.tracks.find((t) => t.composer_missing)?.composer, null);
    assert.ok(s.tracks.some((t) => t.composer_raw === 'Beethoven, Ludwig "van"'));
    assert.ok(Object.isFrozen(s));
    assert.equal(s.exact.kernel, 'wasm-simd');
    assert.equal((await load(TINY, { simdKernel: false })).exact.kernel, 'js');
  });

  it('serves exactly when VECTOR_BACKEND=exact, or when there is no index', async () => {
    assert.equal((await load(TINY, { backend: 'exact' })).backend.kind, 'exact');
    const dir = copyFixture();
    rmSync(p(dir, 'index'), { recursive: true });
    const s = await load(dir);
    assert.equal(s.backend.kind, 'exact');
    assert.equal(s.recall, null);
    await refuses(dir, /index_meta\.json/, /VECTOR_BACKEND=hnsw/, { backend: 'hnsw' });
  });
});

describe('optional eval results', () => {
  it('loads a subset evaluation (evaluate --tracks multi_label_albums) scoring fewer tracks', async () => {
    const dir = copyFixture();
    editJson(dir, 'eval/eval_results.json', (o) => Object.assign(o, { tracks: 'multi_label_albums', n_tracks: 5 }));
    const s = await load(dir);
    assert.equal(s.evalResults?.n_tracks, 5);
    assert.equal(s.evalResults?.tracks, 'multi_label_albums');
  });

  it('loads without eval/eval_results.json and answers /eval/summary with a 404 saying why', async () => {
    const dir = copyFixture();
    rmSync(p(dir, 'eval'), { recursive: true });
    const app = await appFor(dir, { RECALL_SAMPLE: '5' });
    try {
      const r = await app.inject('/eval/summary');
      assert.equal(r.statusCode, 404);
      assert.deepEqual(r.json(), {
        error: 'Not Found',
        message: "No eval/eval_results.json in v1_model_fixture-enc; run the research job's evaluate step",
        statusCode: 404,
      });
      assert.equal((await app.inject('/health')).statusCode, 200);
    } finally {
      await app.close();
    }
  });
});

describe('refuses to start', () => {
  it('on a schema failure', async () => {
    const dir = copyFixture();
    editJson(dir, 'embeddings/embeddings_meta.json', (o) => (o.dtype = 'float64'));
    await refuses(dir, /embeddings\/embeddings_meta\.json/, /does not match embeddings_meta\.schema\.json: \/dtype/);
  });

  it('on invalid JSON', async () => {
    const dir = copyFixture();
    appendFileSync(p(dir, 'eval/eval_results.json'), '}');
    await refuses(dir, /eval\/eval_results\.json/, /not valid JSON/);
  });

  it('on a missing file', async () => {
    const dir = copyFixture();
    rmSync(p(dir, 'embeddings/embeddings.f32'));
    await refuses(dir, /embeddings\/embeddings\.f32/, /missing/);
  });

  it('on a wrong embeddings.f32 size', async () => {
    const dir = copyFixture();
    truncateSync(p(dir, 'embeddings/embeddings.f32'), 12 * 8 * 4 - 4);
    await refuses(dir, /embeddings\/embeddings\.f32/, /is 380 bytes, expected 384 bytes \(N x D x 4 = 12 x 8 x 4 = 384/);
  });

  it('on N disagreeing between files', async () => {
    const dir = copyFixture();
    editJson(dir, 'embeddings/embeddings_meta.json', (o) => (o.count = 11));
    await refuses(dir, /embeddings_meta\.json/, /count is 11 but embeddings\/track_ids\.json says 12/);
    const dir2 = copyFixture();
    editJson(dir2, 'embeddings/track_ids.json', (o) => (o.count = 13));
    await refuses(dir2, /track_ids\.json/, /count is 13 but the file lists 12/);
  });

  it('on dim disagreeing between files', async () => {
    const dir = copyFixture();
    editJson(dir, 'index/index_meta.json', (o) => (o.dim = 16));
    await refuses(dir, /index\/index_meta\.json/, /dim is 16 but embeddings\/embeddings_meta\.json says 8/);
  });

  it('on an index built with another dim (the addon would load it silently)', async () => {
    const dir = copyFixture();
    const rows = Array.from({ length: 12 }, (_, i) => Float32Array.from({ length: 4 }, (_, d) => (d === i % 4 ? 1 : 0)));
    replaceIndex(dir, 4, rows);
    await refuses(dir, /index\/hnsw\.index/, /stores 16 bytes per vector \(dim 4\), expected dim 8 \(.*dim from embeddings\/embeddings_meta\.json\); not handed to hnswlib/);
  });

  it('on repeated track ids', async () => {
    const dir = copyFixture();
    editJson(dir, 'embeddings/track_ids.json', (o) => (o.track_ids[5] = o.track_ids[2]));
    await refuses(dir, /embeddings\/track_ids\.json/, /track id "t002" repeats/);
  });

  it('on a track id without a metadata row', async () => {
    const dir = copyFixture();
    const csv = readFileSync(p(dir, 'metadata/tracks_metadata.csv'), 'utf8').split('\n');
    writeFileSync(p(dir, 'metadata/tracks_metadata.csv'), csv.filter((l) => !l.startsWith('t004,')).join('\n'));
    await refuses(dir, /metadata\/tracks_metadata\.csv/, /track id 't004' .* has no metadata row/);
  });

  it('on a CSV row failing the row schema', async () => {
    const dir = copyFixture();
    const csv = readFileSync(p(dir, 'metadata/tracks_metadata.csv'), 'utf8');
    writeFileSync(p(dir, 'metadata/tracks_metadata.csv'), csv.replace(/^t004,[^,]*,/m, 't004,a/b,'));
    await refuses(dir, /tracks_metadata\.csv/, /track_id "t004".*\/album_id must match pattern/);
    const dir2 = copyFixture();
    writeFileSync(p(dir2, 'metadata/tracks_metadata.csv'), csv.replace(/,false\r?\n/, ',maybe\r\n'));
    await refuses(dir2, /tracks_metadata\.csv/, /composer_missing 'maybe' is not a boolean/);
  });

  it('on an index whose element count differs', async () => {
    const dir = copyFixture();
    editJson(dir, 'index/index_meta.json', (o) => (o.count = 13));
    await refuses(dir, /index\/index_meta\.json/, /count is 13 but embeddings\/track_ids\.json says 12/);
    const dir2 = copyFixture();
    const emb = readEmbeddings(dir2);
    replaceIndex(dir2, 8, Array.from({ length: 11 }, (_, i) => emb.subarray(i * 8, i * 8 + 8)));
    await refuses(dir2, /index\/hnsw\.index/, /holds 11 elements, expected 12 \(N from embeddings\/track_ids\.json/);
  });

  it('on an index whose vectors are not the embeddings rows', async () => {
    const dir = copyFixture();
    const emb = readEmbeddings(dir);
    const rows = Array.from({ length: 12 }, (_, i) => emb.subarray(((i + 1) % 12) * 8, ((i + 1) % 12) * 8 + 8));
    replaceIndex(dir, 8, rows);
    await refuses(dir, /index\/hnsw\.index/, /vector of label \d+ differs from row \d+/);
  });

  it('on a sha256 mismatch', async () => {
    const dir = copyFixture();
    const f = p(dir, 'embeddings/embeddings.f32');
    const b = readFileSync(f);
    b[0] = b[0]! ^ 1; // lowest mantissa bit of row 0, component 0
    writeFileSync(f, b);
    await refuses(dir, /embeddings\/embeddings\.f32/, /sha256 is [0-9a-f]{64} but embeddings\/embeddings_meta\.json records/);
    const dir2 = copyFixture();
    editJson(dir2, 'index/index_meta.json', (o) => (o.embeddings_sha256 = 'b'.repeat(64)));
    await refuses(dir2, /index_meta\.json/, /embeddings_sha256 is b{64} but embeddings\/embeddings\.f32 hashes to/);
    const dir3 = copyFixture();
    const idx = readFileSync(p(dir3, 'index/hnsw.index'));
    idx[idx.length - 1] = idx[idx.length - 1]! ^ 1;
    writeFileSync(p(dir3, 'index/hnsw.index'), idx);
    await refuses(dir3, /index\/hnsw\.index/, /sha256 is .* but index\/index_meta\.json records/);
    // a size other than index_meta's is refused before the file is read
    const dir4 = copyFixture();
    appendFileSync(p(dir4, 'index/hnsw.index'), Buffer.from([0]));
    await refuses(dir4, /index\/hnsw\.index/, /is 1585 bytes, expected 1584 bytes \(size_bytes in index\/index_meta\.json\); not read/);
  });

  it('on rows that are not unit length', async () => {
    const dir = copyFixture();
    const emb = readEmbeddings(dir);
    emb[3] = emb[3]! + 0.5;
    const f = p(dir, 'embeddings/embeddings.f32');
    writeFileSync(f, Buffer.from(emb.buffer));
    editJson(dir, 'embeddings/embeddings_meta.json', (o) => (o.files.embeddings_sha256 = sha256File(f)));
    await refuses(dir, /embeddings\.f32/, /row 0 .* has L2 norm/);
  });

  it('on an eval file for other embeddings', async () => {
    const dir = copyFixture();
    editJson(dir, 'eval/eval_results.json', (o) => (o.n_tracks = 99));
    await refuses(dir, /eval\/eval_results\.json/, /n_tracks is 99 but embeddings\/track_ids\.json says 12/);
  });

  it('on a subset evaluation claiming more tracks than the embeddings', async () => {
    const dir = copyFixture();
    editJson(dir, 'eval/eval_results.json', (o) => Object.assign(o, { tracks: 'multi_label_albums', n_tracks: 13 }));
    await refuses(dir, /eval\/eval_results\.json/, /n_tracks is 13 but embeddings\/track_ids\.json says 12/);
  });

  it('buildApp rejects with the same message', async () => {
    const dir = copyFixture();
    editJson(dir, 'embeddings/embeddings_meta.json', (o) => (o.dim = 4));
    await assert.rejects(appFor(dir), /embeddings\/embeddings\.f32: is 384 bytes, expected 192 bytes \(N x D x 4 = 12 x 4 x 4 = 192/);
  });
});
