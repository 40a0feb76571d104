/**
 * The columnar metadata sidecar index/tracks_columns.{json,bin} (src/lib/columns.ts; written by
 * research_job.metadata_columns, run here with $PYTHON): a version loaded from it equals the same version loaded
 * from the CSV (rows, lookups, and the bytes of /tracks/:id/nearest, /composer-eval and /tracks?q= for every
 * track), and a corrupt, stale or half sidecar is refused at start-up with an ArtifactError naming the file.
 */

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { loadArtifacts } from '../src/lib/loader.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource } from '../src/lib/source.js';
import type { LoadedState } from '../src/lib/state.js';
import type { TrackRow } from '../src/lib/types.js';
import { appFor, cleanupTmp, copyFixture, generatedFixture, NODE_API_ROOT, readJson, sha256File, writeJson } from './helpers.js';

const schemas = new SchemaRegistry(path.resolve(NODE_API_ROOT, '..', 'artifact_schema'));
const HEADER = schemas.optionalPaths.tracks_columns.path!;
const BIN = schemas.optionalPaths.tracks_columns_bin.path!;
/** The server entry point compiled beside this test. */
const SERVER = fileURLToPath(new URL('../src/server.js', import.meta.url));
const load = (dir: string): Promise<LoadedState> => loadArtifacts(new LocalDirSource(dir), schemas, { recallSample: 10 });

after(cleanupTmp);

/** Write the sidecar into `dir` with the research job's writer. */
function writeColumns(dir: string): void {
  const python = process.env.PYTHON || 'python3';
  const code = [
    'import json, sys',
    'from research_job import metadata_columns',
    'from pathlib import Path',
    'from research_job.layout import ArtifactLayout',
    'lay = ArtifactLayout(Path(sys.argv[1]))',
    'ids = json.loads(lay.track_ids_json.read_text())["track_ids"]',
    'meta = json.loads(lay.embeddings_meta.read_text())',
    'metadata_columns.write(lay, ids, meta["files"]["track_ids_sha256"], meta["artifact_version"])',
  ].join('\n');
  execFileSync(python, ['-c', code, dir], { cwd: path.resolve(NODE_API_ROOT, '..'), env: { ...process.env, PYTHONPATH: path.resolve(NODE_API_ROOT, '..') }, stdio: 'pipe' });
}

async function refuses(dir: string, file: string, detail: RegExp): Promise<void> {
  await assert.rejects(load(dir), (err: Error) => {
    assert.equal(err.name, 'ArtifactError', err.message);
    assert.ok(err.message.startsWith(`${file}: `), `names ${file}: ${err.message}`);
    assert.match(err.message, detail);
    return true;
  });
}

let csvDir: string;
let colDir: string;

before(() => {
  csvDir = generatedFixture();
  colDir = copyFixture(csvDir);
  writeColumns(colDir);
});

/** The sidecar of a fresh copy, edited by `edit`, with its recorded size and sha256 kept up to date when `reseal`. */
function withBin(edit: (bin: Buffer, header: Record<string, any>) => Buffer | void, reseal: boolean): string {
  const dir = copyFixture(colDir);
  const binFile = path.join(dir, BIN);
  const headerFile = path.join(dir, HEADER);
  const header = readJson(headerFile);
  const bin = readFileSync(binFile);
  writeFileSync(binFile, edit(bin, header) ?? bin);
  if (reseal) Object.assign(header, { size_bytes: readFileSync(binFile).length, sha256: sha256File(binFile) });
  writeJson(headerFile, header);
  return dir;
}

describe('loading from the columnar sidecar', () => {
  it('gives the rows and lookups the CSV gives', async () => {
    const a = await load(csvDir);
    const b = await load(colDir);
    assert.ok(b.tracks.length > 0);
    assert.deepEqual(b.tracks, a.tracks);
    assert.deepEqual([...b.rowById], [...a.rowById]);
    assert.deepEqual(b.albumOfRow, a.albumOfRow);
    assert.deepEqual(b.albumSize, a.albumSize);
    assert.deepEqual([...b.composerRows], [...a.composerRows]);
    assert.deepEqual([...b.composerFilterRows], [...a.composerFilterRows]);
    assert.ok(b.tracks.every((t) => Object.isFrozen(t)));
  });

  it('makes each row when first read, once, and refuses writes (an array of frozen rows to its readers)', async () => {
    const a = await load(csvDir);
    const b = await load(colDir);
    const n = a.tracks.length;
    assert.equal(b.tracks.length, n);
    assert.ok(Array.isArray(b.tracks));
    assert.deepEqual(b.tracks[n - 1], a.tracks[n - 1]);
    assert.equal(b.tracks[n - 1], b.tracks[n - 1], 'the same object on every read');
    assert.equal(b.tracks[n], undefined);
    assert.equal(b.tracks[-1 as number], undefined);
    assert.ok(n - 1 in b.tracks && !(n in b.tracks));
    assert.deepEqual(b.tracks.map((t) => t.track_id), a.tracks.map((t) => t.track_id));
    assert.deepEqual([...b.tracks], [...a.tracks]);
    assert.deepEqual(b.tracks.slice(1, 3), a.tracks.slice(1, 3));
    const rows = b.tracks as TrackRow[];
    assert.throws(() => {
      rows[0] = a.tracks[1]!;
    }, TypeError);
    assert.throws(() => rows.push(a.tracks[0]!), TypeError);
    assert.throws(() => Object.defineProperty(rows, 'length', { value: 0 }), TypeError);
    assert.deepEqual(b.tracks[0], a.tracks[0]);
    assert.equal(b.tracks.length, n);
  });

  it('answers /tracks/:id/nearest, /composer-eval and /tracks?q= with the same bytes for every track', async () => {
    const ids = readJson(path.join(csvDir, 'embeddings', 'track_ids.json')).track_ids as string[];
    const apps = [await appFor(csvDir), await appFor(colDir)];
    try {
      const urls = ids.flatMap((id) => [`/tracks/${encodeURIComponent(id)}/nearest?k=7`, `/tracks/${encodeURIComponent(id)}/composer-eval?k=5`]);
      urls.push('/tracks?q=a', '/tracks?q=1');
      for (const url of urls) {
        const [x, y] = await Promise.all(apps.map((app) => app.inject(url)));
        assert.equal(y!.statusCode, x!.statusCode, url);
        assert.equal(y!.body, x!.body, url);
      }
      assert.equal((await apps[1]!.inject(urls[0]!)).statusCode, 200);
    } finally {
      await Promise.all(apps.map((app) => app.close()));
    }
  });

  it('without the sidecar loads the CSV (both files absent)', async () => {
    const dir = copyFixture(colDir);
    rmSync(path.join(dir, HEADER));
    rmSync(path.join(dir, BIN));
    assert.deepEqual((await load(dir)).tracks, (await load(csvDir)).tracks);
  });
});

describe('a corrupt sidecar is refused at start-up, naming the file', () => {
  it('a flipped byte of the binary file (sha256)', async () => {
    const dir = withBin((bin) => void (bin[bin.length - 9]! ^= 0xff), false);
    await refuses(dir, BIN, /sha256 is [0-9a-f]{64} but index\/tracks_columns\.json records/);
  });

  it('a truncated binary file (size, unread)', async () => {
    const dir = withBin((bin) => bin.subarray(0, bin.length - 8), false);
    await refuses(dir, BIN, /bytes, expected \d+ bytes \(size_bytes in index\/tracks_columns\.json\); not read/);
  });

  it('a section outside the file, with size and sha256 recorded anew', async () => {
    const dir = withBin((_, h) => void (h.columns.title.data.offset = h.size_bytes + 64), true);
    await refuses(dir, BIN, /column title: section at byte \d+ .* outside/);
  });

  it('a code outside its dictionary, with size and sha256 recorded anew', async () => {
    const dir = withBin((bin, h) => void bin.writeInt32LE(1 << 20, h.columns.album_id.codes.offset), true);
    await refuses(dir, BIN, /column album_id: row 0 has code 1048576, outside 0 \.\. \d+/);
  });

  it('a composer marked missing that has a name, with size and sha256 recorded anew', async () => {
    const dir = withBin((bin, h) => {
      const tracks = readJson(path.join(colDir, 'embeddings', 'track_ids.json')).count as number;
      const codes = h.columns.composer.codes.offset as number;
      let row = 0;
      while (row < tracks && bin.readInt32LE(codes + 4 * row) === -1) row++;
      bin[(h.columns.composer_missing.values.offset as number) + row] = 1;
    }, true);
    await refuses(dir, BIN, /column composer: row \d+ names a composer but is marked missing/);
  });

  it('a header that fails its schema', async () => {
    const dir = copyFixture(colDir);
    const file = path.join(dir, HEADER);
    writeJson(file, { ...readJson(file), columns: { ...readJson(file).columns, title: undefined } });
    await refuses(dir, HEADER, /does not match tracks_columns\.schema\.json/);
  });

  it('a header that is not JSON', async () => {
    const dir = copyFixture(colDir);
    writeFileSync(path.join(dir, HEADER), '{"count": ');
    await refuses(dir, HEADER, /not valid JSON/);
  });

  it('a CSV changed after the sidecar was made (stale)', async () => {
    const dir = copyFixture(colDir);
    appendFileSync(path.join(dir, 'metadata', 'tracks_metadata.csv'), 'extra,a_x,1,Extra,,audio/a_x/extra.m4a,,,true\n');
    await refuses(dir, HEADER, /csv_sha256 is not the sha256 of metadata\/tracks_metadata\.csv .*stale: rerun build-index/);
  });

  it('a sidecar of other rows (track_ids.json reordered, its sha256 recorded anew)', async () => {
    const dir = copyFixture(colDir);
    const idsFile = path.join(dir, 'embeddings', 'track_ids.json');
    const metaFile = path.join(dir, 'embeddings', 'embeddings_meta.json');
    const ids = readJson(idsFile);
    writeJson(idsFile, { ...ids, track_ids: [...ids.track_ids].reverse() });
    const meta = readJson(metaFile);
    meta.files.track_ids_sha256 = sha256File(idsFile);
    writeJson(metaFile, meta);
    await refuses(dir, HEADER, /track_ids_sha256 is not the sha256 of embeddings\/track_ids\.json: its rows follow another order/);
  });

  it('the binary file without its header', async () => {
    const dir = copyFixture(colDir);
    rmSync(path.join(dir, HEADER));
    await refuses(dir, BIN, /present without index\/tracks_columns\.json/);
  });

  it('the real server refuses to start on a corrupt sidecar (exit 1 naming the file)', () => {
    const dir = withBin((bin) => void (bin[0]! ^= 0xff), false);
    const res = spawnSync(process.execPath, [SERVER], {
      env: { PATH: process.env.PATH ?? '', ARTIFACTS_DIR: dir, ARTIFACT_SCHEMA_DIR: schemas.dir, PORT: '0', RECALL_SAMPLE: '10', LOG_LEVEL: 'info' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(res.status, 1, res.stdout + res.stderr);
    assert.match(res.stdout + res.stderr, /index\/tracks_columns\.bin: sha256 is [0-9a-f]{64} but/);
  });
});
