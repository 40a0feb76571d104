/**
 * The start-up's fast paths agree with what they replace: the one-scan parse of track_ids.json with
 * JSON.parse (every shape it does not take falls back, so values and errors are JSON.parse's), the open-
 * addressing id -> row index with a Map (lookups, misses, repeats, iteration); and the check the server skips
 * at start-up: every schema of the folder is valid JSON Schema 2020-12 (its meta-schema).
 */

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';

import { Ajv2020 } from 'ajv/dist/2020.js';

import { ArtifactError } from '../src/lib/errors.js';
import { parseJson } from '../src/lib/json.js';
import { mulberry32 } from '../src/lib/random.js';
import { RowIndex } from '../src/lib/rowIndex.js';
import { parseTrackIdsJson } from '../src/lib/trackIdsJson.js';
import { SCHEMA_DIR } from './helpers.js';

const addFormats = createRequire(import.meta.url)('ajv-formats') as (ajv: Ajv2020) => Ajv2020;

describe('the schema folder', () => {
  it('holds only valid JSON Schema 2020-12 (the server compiles them without this check)', () => {
    const ajv = addFormats(new Ajv2020({ strict: false }));
    const files = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.schema.json'));
    assert.ok(files.length > 0);
    for (const f of files) {
      const schema = JSON.parse(readFileSync(path.join(SCHEMA_DIR, f), 'utf8')) as object;
      assert.ok(ajv.validateSchema(schema), `${f}: ${ajv.errorsText(ajv.errors)}`);
    }
  });
});

/** The outcome of a parser: its value, or its error's message. */
function outcome(parse: (file: string, bytes: Buffer) => unknown, bytes: Buffer): unknown {
  try {
    return { value: parse('embeddings/track_ids.json', bytes) };
  } catch (err) {
    assert.ok(err instanceof ArtifactError, String(err));
    return { error: err.message };
  }
}

describe('parseTrackIdsJson', () => {
  const texts: Array<string | Buffer> = [
    JSON.stringify({ count: 2, schema_version: '1.0', track_ids: ['a', 'b'] }, null, 2),
    JSON.stringify({ track_ids: [], count: 0, schema_version: '1.0' }),
    '{"track_ids":[ "a" , "b"\t,\r\n"c" ],"x":-0.5e+3,"y":true,"z":false,"w":null}',
    '{}',
    ' { } ',
    '{"track_ids":["é", "日本", "\u{1F3B5}"]}',
    // invalid UTF-8 inside a string: U+FFFD as the decode of the whole file gives
    Buffer.concat([Buffer.from('{"track_ids":["a'), Buffer.from([0xc3]), Buffer.from('", "b'), Buffer.from([0xff, 0xfe]), Buffer.from('"]}')]),
    // the shapes it leaves to JSON.parse
    '{"track_ids":["a\\"b", "c\\u0041"]}',
    '{"track_ids":["a", ["b"]]}',
    '{"track_ids":{"a": 1}}',
    '{"track_ids":"a", "n": {"deep": [1, 2]}}',
    '{"track_ids":["a"], "track_ids":["b"]}',
    '{"__proto__": {"x": 1}, "track_ids": []}',
    '\ufeff{"track_ids":[]}',
    // not JSON: the error JSON.parse gives
    '',
    '{',
    '{"track_ids":["a",]}',
    '{"track_ids":["a"]} x',
    '{"track_ids":["a\tb"]}',
    '{"n": 01}',
    '{"n": 1.}',
    '{"n": -}',
    '{"n": nul}',
    '{"n": truex}',
    '["a", "b"]',
    '"a"',
    '{"track_ids":["a" "b"]}',
    '{"track_ids":["a"}',
    "{'track_ids':['a']}",
  ];
  for (const text of texts) {
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    it(`gives what parseJson gives for ${JSON.stringify(bytes.toString('utf8').slice(0, 50))}`, () => {
      assert.deepStrictEqual(outcome(parseTrackIdsJson, bytes), outcome(parseJson, bytes));
    });
  }

  it('gives what parseJson gives for every prefix of a file (truncated files)', () => {
    const full = Buffer.from(JSON.stringify({ count: 3, schema_version: '1.0', track_ids: ['t1', 'é2', 't3'] }, null, 2), 'utf8');
    for (let n = 0; n <= full.length; n++) {
      const bytes = full.subarray(0, n);
      assert.deepStrictEqual(outcome(parseTrackIdsJson, bytes), outcome(parseJson, bytes), `first ${n} bytes`);
    }
  });
});

describe('RowIndex', () => {
  const rnd = mulberry32(16);
  const ids = Array.from({ length: 5000 }, (_, i) => `t${i}-${Math.floor(rnd() * 1e9).toString(36)}`);

  it('finds the row of every id and nothing else, as a Map does', () => {
    const built = RowIndex.build(ids);
    assert.ok('index' in built);
    const map = new Map(ids.map((id, row) => [id, row]));
    const index = built.index;
    assert.equal(index.size, map.size);
    for (const id of ids) assert.equal(index.get(id), map.get(id));
    for (const probe of ['', 'x', 't1', `${ids[0]}x`, ids[0]!.slice(0, -1), 'constructor']) {
      assert.equal(index.get(probe), map.get(probe), probe);
      assert.equal(index.has(probe), map.has(probe), probe);
    }
    assert.equal(index.get(5 as unknown as string), undefined);
    assert.deepEqual([...index], [...map]);
    assert.deepEqual([...index.keys()], [...map.keys()]);
    assert.deepEqual([...index.values()], [...map.values()]);
    const seen: Array<[string, number]> = [];
    index.forEach((row, id) => seen.push([id, row]));
    assert.deepEqual(seen, [...map]);
  });

  it('names the first row that repeats an id', () => {
    assert.deepEqual(RowIndex.build(['a', 'b', 'c', 'b', 'a']), { repeatRow: 3 });
    assert.deepEqual(RowIndex.build([...ids, ids[4321]!]), { repeatRow: ids.length });
    assert.ok('index' in RowIndex.build([]));
  });

  it('gives way to a Map when ids are crafted to collide (never a quadratic build)', () => {
    // 4000 ids whose FNV-1a hashes share their low 13 bits, the slot of each in a table of 8192: each id
    // ends with a character chosen to steer the hash there (the multiply by the odd FNV prime is a bijection
    // on the low bits)
    const fnv = (s: string): number => {
      let h = 0x811c9dc5;
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
      return h;
    };
    const mask = 0x1fff;
    let inv = 1;
    while ((Math.imul(inv, 0x01000193) & mask) !== 1) inv += 2;
    const target = 0x0abc;
    const want = Math.imul(target, inv) & mask;
    const crafted = Array.from({ length: 4000 }, (_, i) => {
      const prefix = `t${i}`;
      return prefix + String.fromCharCode(0x4000 | ((want ^ fnv(prefix)) & mask));
    });
    assert.ok(crafted.every((id) => (fnv(id) & mask) === target), 'the crafted ids collide');
    const t0 = performance.now();
    const built = RowIndex.build(crafted);
    assert.ok(performance.now() - t0 < 2000, 'built in linear time');
    assert.ok('index' in built);
    crafted.forEach((id, row) => assert.equal(built.index.get(id), row));
    assert.equal(built.index.get('t0'), undefined);
    assert.deepEqual([...built.index].slice(0, 2), [[crafted[0], 0], [crafted[1], 1]]);
    assert.deepEqual(RowIndex.build([...crafted, crafted[17]!]), { repeatRow: crafted.length });
  });

  it('tells apart ids whose hashes collide', () => {
    // every id in a table of 16 slots: collisions are certain, lookups still exact
    const few = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const built = RowIndex.build(few);
    assert.ok('index' in built);
    few.forEach((id, row) => assert.equal(built.index.get(id), row));
    assert.equal(built.index.get('h'), undefined);
  });
});
