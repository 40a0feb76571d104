/**
 * Files an attacker (or a careless operator) can put in a version folder: a crafted hnsw.index whose sha256 and
 * size are re-recorded (links, entry point, link counts, levels, labels, max_elements out of range), links out
 * of the folder (/dev/zero, a secret file), a FIFO, a directory, a missing index that index_meta lists, and an
 * embeddings file past 2 GiB. The loader refuses each with an ArtifactError naming the file and never quoting
 * its content; the real server process refuses to start on them (exit 1, not a signal) and, serving a good
 * version, survives a reload to them (422) and keeps serving the old one.
 */

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

import { ArtifactError } from '../src/lib/errors.js';
import { HNSW_HEADER_BYTES } from '../src/lib/hnswFile.js';
import { loadArtifacts } from '../src/lib/loader.js';
import type { ArtifactFile } from '../src/lib/layout.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource } from '../src/lib/source.js';
import { appFor, cleanupTmp, copyFixture, NODE_API_ROOT, readJson, SCHEMA_DIR, sha256File, tmp, writeJson } from './helpers.js';

/** The server entry point compiled beside this test (dist/ or another outDir). */
const SERVER = fileURLToPath(new URL('../src/server.js', import.meta.url));
const registry = new SchemaRegistry(SCHEMA_DIR);
const SECRET = 'SECRET-7f3a-do-not-leak';
const TOKEN = '0123456789abcdef0123';

after(cleanupTmp);

const p = (dir: string, rel: string): string => path.join(dir, rel);

/** The structure of an hnswlib file, read independently of src/lib/hnswFile.ts (offsets from hnswlib's saveIndex). */
interface Layout {
  n: number;
  sizePerElement: number;
  maxM0: number;
  maxM: number;
  maxLevel: number;
  labelOffset: number;
  levels: number[];
  /** byte offset of each element's upper-level lists (after its uint32 size) */
  upperAt: number[];
}

function layoutOf(b: Buffer): Layout {
  const n = Number(b.readBigUInt64LE(16));
  const sizePerElement = Number(b.readBigUInt64LE(24));
  const labelOffset = Number(b.readBigUInt64LE(32));
  const maxLevel = b.readInt32LE(48);
  const maxM = Number(b.readBigUInt64LE(56));
  const maxM0 = Number(b.readBigUInt64LE(64));
  const levels: number[] = [];
  const upperAt: number[] = [];
  let o = HNSW_HEADER_BYTES + n * sizePerElement;
  for (let i = 0; i < n; i++) {
    const size = b.readUInt32LE(o);
    upperAt.push(o + 4);
    levels.push(size / (4 + 4 * maxM));
    o += 4 + size;
  }
  assert.equal(o, b.length, 'the test reads the hnswlib layout right');
  return { n, sizePerElement, maxM0, maxM, maxLevel, labelOffset, levels, upperAt };
}

const level0 = (l: Layout, i: number): number => HNSW_HEADER_BYTES + i * l.sizePerElement;

/** Rewrite index/hnsw.index with `mutate` and record its new sha256 and size in index_meta.json, as an attacker would. */
function craftIndex(dir: string, mutate: (b: Buffer, l: Layout) => Buffer | void): void {
  const f = p(dir, 'index/hnsw.index');
  const before = readFileSync(f);
  const out = mutate(before, layoutOf(before)) ?? before;
  writeFileSync(f, out);
  const meta = readJson(p(dir, 'index/index_meta.json'));
  const entry = (meta.indexes as Array<Record<string, unknown>>).find((e) => e.name === 'hnswlib')!;
  entry.sha256 = sha256File(f);
  entry.size_bytes = out.length;
  writeJson(p(dir, 'index/index_meta.json'), meta);
}

async function refused(dir: string, file: RegExp, detail: RegExp, env: Record<string, unknown> = {}): Promise<ArtifactError> {
  const err = await loadArtifacts(new LocalDirSource(dir), registry, { recallSample: 10, ...env }).then(
    () => assert.fail('the load should have been refused'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ArtifactError, `an ArtifactError, got ${String(err)}`);
  assert.match(err.message, file);
  assert.match(err.message, detail);
  return err;
}

/** Crafted graphs: each passes the sha256 and size checks and would walk hnswlib outside its buffers. */
const CRAFTED: Array<{ name: string; detail: RegExp; mutate: (b: Buffer, l: Layout) => Buffer | void }> = [
  {
    name: 'a level-0 link far out of range',
    detail: /element 0 links to 4294967040 at level 0, outside \[0, 12\)/,
    mutate: (b, l) => {
      b.writeUInt16LE(Math.max(1, b.readUInt16LE(level0(l, 0))), level0(l, 0));
      b.writeUInt32LE(0xffffff00, level0(l, 0) + 4);
    },
  },
  {
    name: 'a level-0 link count above maxM0',
    detail: /element 2 lists 17 links at level 0, more than maxM0 16/,
    mutate: (b, l) => void b.writeUInt16LE(l.maxM0 + 1, level0(l, 2)),
  },
  {
    name: 'an entry point out of range',
    detail: /entry point 4000000000, outside \[0, 12\)/,
    mutate: (b) => void b.writeUInt32LE(4_000_000_000, 52),
  },
  {
    name: 'an entry point below the top level',
    detail: /entry point 0 has level 0, but the search starts at maxlevel 1/,
    mutate: (b) => void b.writeUInt32LE(0, 52),
  },
  {
    name: 'an upper-level link out of range',
    detail: /element \d+ links to 99 at level 1, outside \[0, 12\)/,
    mutate: (b, l) => {
      const i = l.levels.findIndex((lv) => lv >= 1);
      b.writeUInt16LE(1, l.upperAt[i]!);
      b.writeUInt32LE(99, l.upperAt[i]! + 4);
    },
  },
  {
    name: 'an upper-level link to an element without that level',
    detail: /element \d+ links to 0 at level 1, but element 0 has level 0/,
    mutate: (b, l) => {
      const i = l.levels.findIndex((lv) => lv >= 1);
      b.writeUInt16LE(1, l.upperAt[i]!);
      b.writeUInt32LE(0, l.upperAt[i]! + 4);
    },
  },
  {
    name: 'a level above maxlevel',
    detail: /has level 2, above the index's maxlevel 1/,
    mutate: (b, l) => {
      // element 0 gets two levels of empty lists
      const at = l.upperAt[0]! - 4;
      const extra = Buffer.alloc(2 * (4 + 4 * l.maxM));
      const out = Buffer.concat([b.subarray(0, at), Buffer.from(Uint32Array.of(extra.length).buffer), extra, b.subarray(at + 4)]);
      return out;
    },
  },
  {
    name: 'vector and label offsets moved by 2^40 (their difference, the vector size, still right)',
    detail: /has offset_data 1099511627844 and label_offset 1099511627876, expected 68 and 100/,
    mutate: (b) => {
      b.writeBigUInt64LE(b.readBigUInt64LE(32) + 2n ** 40n, 32);
      b.writeBigUInt64LE(b.readBigUInt64LE(40) + 2n ** 40n, 40);
    },
  },
  {
    name: 'a huge max_elements (an allocation of that many elements)',
    detail: /max_elements 1099511627776, expected its element count 12/,
    mutate: (b) => void b.writeBigUInt64LE(2n ** 40n, 8),
  },
  {
    name: 'a maxlevel of a million',
    detail: /maxlevel 1000000, outside \[0, 64\]/,
    mutate: (b) => void b.writeInt32LE(1_000_000, 48),
  },
  {
    name: 'an element marked deleted',
    detail: /element 4 is marked deleted/,
    mutate: (b, l) => void (b[level0(l, 4) + 2] = 1),
  },
  {
    name: 'a repeated label',
    detail: /label 3 appears twice/,
    mutate: (b, l) => {
      b.writeBigUInt64LE(3n, level0(l, 2) + l.labelOffset);
      b.writeBigUInt64LE(3n, level0(l, 3) + l.labelOffset);
    },
  },
  {
    name: 'a label beyond the rows',
    detail: /element 5 has label 12, outside the row indices \[0, 12\)/,
    mutate: (b, l) => void b.writeBigUInt64LE(12n, level0(l, 5) + l.labelOffset),
  },
  {
    name: 'bytes after the last list',
    detail: /has 7 bytes after the last element's lists/,
    mutate: (b) => Buffer.concat([b, Buffer.alloc(7)]),
  },
  {
    name: 'a truncated file (which hnswlib calls "corrupted" without naming it)',
    detail: /ends inside the upper-level/,
    mutate: (b) => b.subarray(0, b.length - 10),
  },
];

describe('a crafted hnsw.index with its checksum re-recorded', () => {
  it('does crash the native addon when searched unchecked (the threat is real)', () => {
    const dir = copyFixture();
    craftIndex(dir, CRAFTED[0]!.mutate);
    const script = `
      const hnswlib = require('hnswlib-node');
      const idx = new hnswlib.HierarchicalNSW('ip', 8);
      idx.readIndexSync(${JSON.stringify(p(dir, 'index/hnsw.index'))});
      idx.setEf(16);
      for (let i = 0; i < 50; i++) idx.searchKnn(Array.from({ length: 8 }, (_, d) => (d === i % 8 ? 1 : 0)), 5);
      console.log('survived');`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: NODE_API_ROOT, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.signal, 'SIGSEGV', `the unchecked addon should segfault; got status ${r.status}, signal ${r.signal}, ${r.stdout}${r.stderr}`);
  });

  for (const c of CRAFTED) {
    it(`is refused before hnswlib sees it: ${c.name}`, async () => {
      const dir = copyFixture();
      craftIndex(dir, c.mutate);
      const err = await refused(dir, /^index\/hnsw\.index: /, c.detail);
      assert.match(err.message, /not handed to hnswlib|not read/);
    });
  }

  it('the untouched fixture passes the same checks (the crafted cases are the only difference)', async () => {
    const dir = copyFixture();
    craftIndex(dir, () => undefined);
    const state = await loadArtifacts(new LocalDirSource(dir), registry, { recallSample: 10 });
    assert.equal(state.backend.kind, 'hnsw');
  });
});

describe('special files and links in a version folder', () => {
  it('embeddings.f32 -> /dev/zero is refused at once, unread', async () => {
    const dir = copyFixture();
    rmSync(p(dir, 'embeddings/embeddings.f32'));
    symlinkSync('/dev/zero', p(dir, 'embeddings/embeddings.f32'));
    const t0 = performance.now();
    await refused(dir, /embeddings\/embeddings\.f32/, /is a link to a path outside the version folder/);
    assert.ok(performance.now() - t0 < 5000);
  });

  it('track_ids.json -> a secret file outside: refused, and no byte of the secret in the error or a reload body', async () => {
    const dir = copyFixture();
    const secretFile = path.join(tmp(), 'shadow');
    writeFileSync(secretFile, `root:${SECRET}:19000:0:99999:7:::\n`);
    const good = readFileSync(p(dir, 'embeddings/track_ids.json'));
    rmSync(p(dir, 'embeddings/track_ids.json'));
    symlinkSync(secretFile, p(dir, 'embeddings/track_ids.json'));
    const err = await refused(dir, /embeddings\/track_ids\.json/, /outside the version folder/);
    assert.ok(!err.message.includes(SECRET) && !err.message.includes('root:'));
    // a live reload to it: 422, the old version keeps serving, the body holds nothing of the file
    rmSync(p(dir, 'embeddings/track_ids.json'));
    writeFileSync(p(dir, 'embeddings/track_ids.json'), good);
    const app = await appFor(dir, { RELOAD_TOKEN: TOKEN });
    try {
      rmSync(p(dir, 'embeddings/track_ids.json'));
      symlinkSync(secretFile, p(dir, 'embeddings/track_ids.json'));
      const r = await app.inject({ method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(r.statusCode, 422);
      assert.ok(!r.body.includes(SECRET) && !r.body.includes('root:'), r.body);
      assert.equal((await app.inject('/tracks/t001/nearest')).statusCode, 200);
    } finally {
      await app.close();
    }
  });

  it('a JSON file inside the folder that is not JSON: the error never quotes its text (V8 quotes it)', async () => {
    const dir = copyFixture();
    writeFileSync(p(dir, 'eval/eval_results.json'), `{"a": ${SECRET}}`);
    const err = await refused(dir, /eval\/eval_results\.json/, /: not valid JSON$/);
    assert.ok(!err.message.includes('SECRET'), err.message);
    assert.throws(() => JSON.parse(`{"a": ${SECRET}}`), /SECRET/, 'V8 itself quotes the text (what the loader must not pass on)');
    writeFileSync(p(dir, 'eval/eval_results.json'), `{"a": 1,, "b": "${SECRET}"}`);
    const err2 = await refused(dir, /eval\/eval_results\.json/, /not valid JSON/);
    assert.ok(!err2.message.includes('SECRET'), err2.message);
  });

  it('a FIFO as the CSV is refused at once (the load never waits for a writer)', async () => {
    const dir = copyFixture();
    rmSync(p(dir, 'metadata/tracks_metadata.csv'));
    execFileSync('mkfifo', [p(dir, 'metadata/tracks_metadata.csv')]);
    const t0 = performance.now();
    await refused(dir, /metadata\/tracks_metadata\.csv/, /is not a regular file \(a FIFO\)/);
    assert.ok(performance.now() - t0 < 5000);
  });

  it('a directory in place of a file is refused', async () => {
    const dir = copyFixture();
    rmSync(p(dir, 'eval/eval_results.json'));
    mkdirSync(p(dir, 'eval/eval_results.json'));
    await refused(dir, /eval\/eval_results\.json/, /is not a regular file \(a directory\)/);
  });

  it('an index linked from outside the folder is refused; a link to a file inside the folder is read', async () => {
    const dir = copyFixture();
    const outside = path.join(tmp(), 'hnsw.index');
    writeFileSync(outside, readFileSync(p(dir, 'index/hnsw.index')));
    rmSync(p(dir, 'index/hnsw.index'));
    symlinkSync(outside, p(dir, 'index/hnsw.index'));
    await refused(dir, /index\/hnsw\.index/, /outside the version folder/);
    const dir2 = copyFixture();
    writeFileSync(p(dir2, 'index/kept.index'), readFileSync(p(dir2, 'index/hnsw.index')));
    rmSync(p(dir2, 'index/hnsw.index'));
    symlinkSync('kept.index', p(dir2, 'index/hnsw.index'));
    const state = await loadArtifacts(new LocalDirSource(dir2), registry, { recallSample: 10 });
    assert.equal(state.backend.kind, 'hnsw');
  });

  it('a file larger than the metadata says is refused before a byte is read (a sparse 64 GiB embeddings.f32)', async () => {
    const dir = copyFixture();
    truncateSync(p(dir, 'embeddings/embeddings.f32'), 64 * 2 ** 30);
    const t0 = performance.now();
    await refused(dir, /embeddings\/embeddings\.f32/, /is 68719476736 bytes, expected 384 bytes \(N x D x 4/);
    assert.ok(performance.now() - t0 < 5000);
  });
});

describe('files too large to hold', () => {
  it('an index whose recorded size_bytes matches a sparse 8 GiB file is refused unread (no crash, 422 not 500)', async () => {
    const dir = copyFixture();
    truncateSync(p(dir, 'index/hnsw.index'), 2 ** 33);
    const meta = readJson(p(dir, 'index/index_meta.json'));
    (meta.indexes as Array<Record<string, unknown>>).find((e) => e.name === 'hnswlib')!.size_bytes = 2 ** 33;
    writeJson(p(dir, 'index/index_meta.json'), meta);
    await refused(dir, /index\/hnsw\.index/, /is 8589934592 bytes, more than this process can hold in memory; not read/);
  });

  it('a CSV longer than the longest string V8 holds is refused unread', async () => {
    const dir = copyFixture();
    truncateSync(p(dir, 'metadata/tracks_metadata.csv'), 2 ** 29);
    await refused(dir, /metadata\/tracks_metadata\.csv/, /is 536870912 bytes, expected at most 536870888 bytes; not read/);
  });
});

describe('an index that index_meta.json lists but that is missing', () => {
  it('is refused under VECTOR_BACKEND=auto (no silent downgrade to exact search), at start and on reload', async () => {
    const dir = copyFixture();
    const app = await appFor(dir, { RELOAD_TOKEN: TOKEN });
    try {
      rmSync(p(dir, 'index/hnsw.index'));
      const r = await app.inject({ method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(r.statusCode, 422);
      assert.match(r.json().message, /index\/hnsw\.index: missing, but index\/index_meta\.json lists it .*VECTOR_BACKEND=exact/);
      assert.equal((await app.inject('/tracks/t001/nearest')).statusCode, 200);
    } finally {
      await app.close();
    }
    await refused(dir, /index\/hnsw\.index/, /missing, but index\/index_meta\.json lists it/);
    await refused(dir, /index\/hnsw\.index/, /missing, but/, { backend: 'auto' });
  });

  it('VECTOR_BACKEND=exact serves without it, saying so in /models', async () => {
    const dir = copyFixture();
    rmSync(p(dir, 'index/hnsw.index'));
    const app = await appFor(dir, { VECTOR_BACKEND: 'exact' });
    try {
      const models = (await app.inject('/models')).body;
      assert.match(models, /"exact"/);
      assert.equal((await app.inject('/tracks/t001/nearest')).statusCode, 200);
    } finally {
      await app.close();
    }
  });
});

describe('embeddings past 2 GiB', () => {
  it('are read in parts (a single read stops at 2 GiB: ERR_FS_FILE_TOO_LARGE)', async () => {
    const dir = tmp();
    const f = path.join(dir, 'big.f32');
    const size = 2 ** 31 + 4096;
    truncateSync((closeSync(openSync(f, 'w')), f), size);
    const fd = openSync(f, 'r+');
    writeSync(fd, Buffer.from('tail'), 0, 4, size - 4);
    writeSync(fd, Buffer.from('head'), 0, 4, 0);
    closeSync(fd);
    const buf = await new LocalDirSource(dir).read('big.f32' as ArtifactFile, { exactBytes: size });
    assert.equal(buf.length, size);
    assert.equal(buf.subarray(0, 4).toString(), 'head');
    assert.equal(buf.subarray(size - 4).toString(), 'tail');
    assert.equal(buf[2 ** 31], 0);
  });
});

/** The real server process: start on `env`, run `whileUp(port)` once it listens, then SIGTERM; resolves on exit. */
function serve(env: Record<string, string>, whileUp?: (port: number) => Promise<void>): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVER], {
      env: { PATH: process.env.PATH ?? '', ARTIFACT_SCHEMA_DIR: SCHEMA_DIR, PORT: '0', RECALL_SAMPLE: '10', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let started = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m && !started && whileUp) {
        started = true;
        whileUp(Number(m[1])).then(
          () => child.kill('SIGTERM'),
          (err: unknown) => {
            child.kill('SIGKILL');
            reject(err);
          },
        );
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

async function waitHealthy(port: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const r = await fetch(`http://127.0.0.1:${port}/health`).catch(() => null);
    if (r?.status === 200) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail('the server never became healthy');
}

describe('the server process', () => {
  it('refuses to start on a crafted index (exit 1 naming the file, not SIGSEGV)', async () => {
    const dir = copyFixture();
    craftIndex(dir, CRAFTED[0]!.mutate);
    const run = await serve({ ARTIFACTS_DIR: dir });
    assert.equal(run.signal, null, run.out);
    assert.equal(run.code, 1, run.out);
    assert.match(run.out, /index\/hnsw\.index: element 0 links to 4294967040 at level 0/);
  });

  it('refuses to start on a FIFO as the CSV, at once', async () => {
    const dir = copyFixture();
    rmSync(p(dir, 'metadata/tracks_metadata.csv'));
    execFileSync('mkfifo', [p(dir, 'metadata/tracks_metadata.csv')]);
    const run = await serve({ ARTIFACTS_DIR: dir });
    assert.equal(run.code, 1, run.out);
    assert.match(run.out, /tracks_metadata\.csv: is not a regular file \(a FIFO\)/);
  });

  it('serving a good version, survives a reload to a crafted index (422) and keeps answering from the old one', async () => {
    const dir = copyFixture();
    const run = await serve({ ARTIFACTS_DIR: dir, RELOAD_TOKEN: TOKEN }, async (port) => {
      await waitHealthy(port);
      const before = await (await fetch(`http://127.0.0.1:${port}/tracks/t001/nearest?k=3`)).json();
      for (const c of CRAFTED.slice(0, 6)) {
        const fresh = copyFixture();
        craftIndex(fresh, c.mutate);
        writeFileSync(p(dir, 'index/hnsw.index'), readFileSync(p(fresh, 'index/hnsw.index')));
        writeFileSync(p(dir, 'index/index_meta.json'), readFileSync(p(fresh, 'index/index_meta.json')));
        const r = await fetch(`http://127.0.0.1:${port}/models/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
        assert.equal(r.status, 422, c.name);
        assert.match(((await r.json()) as { message: string }).message, /index\/hnsw\.index: .*still serving/, c.name);
        const after = await fetch(`http://127.0.0.1:${port}/tracks/t001/nearest?k=3`);
        assert.equal(after.status, 200);
        assert.deepEqual(await after.json(), before);
      }
    });
    assert.equal(run.signal, null, run.out);
    assert.equal(run.code, 0, run.out);
  });
});
