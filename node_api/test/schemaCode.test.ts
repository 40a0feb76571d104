/**
 * Contract: the validators `npm run build` precompiles (schemaCode.ts) are used only for schema files of the
 * bytes they were built from, and judge exactly as ajv compiling the file at start-up does: the same verdict and
 * the same error objects on real artifacts and on broken copies of them. A schema edited after the build, an
 * index written by another ajv, or a missing or broken module falls back to compiling the file on disk.
 */

import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { after, describe, it } from 'node:test';

import { loadArtifacts } from '../src/lib/loader.js';
import { AJV_VERSION, INDEX_FILE, SCHEMA_SUFFIX, exceptUniqueSchema, newAjv, schemaKey, writePrecompiled } from '../src/lib/schemaCode.js';
import { PRECOMPILED_DIR, SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource } from '../src/lib/source.js';
import { cleanupTmp, generatedFixture, NODE_API_ROOT, readJson, SCHEMA_DIR, TINY, tmp } from './helpers.js';

const require = createRequire(import.meta.url);

const copies: string[] = [];

after(() => {
  cleanupTmp();
  for (const d of copies) rmSync(d, { recursive: true, force: true });
});

type Json = Record<string, unknown>;

/** Every JSON artifact of `dir` that artifacts.json gives a schema: [schema name, parsed file]. */
function listedJson(dir: string): [string, unknown][] {
  const list = readJson(path.join(SCHEMA_DIR, 'artifacts.json')) as { artifacts: { path: string; format: string; schema?: string }[] };
  return list.artifacts
    .filter((a) => a.format === 'json' && a.schema && existsSync(path.join(dir, a.path)))
    .map((a) => [a.schema!, JSON.parse(readFileSync(path.join(dir, a.path), 'utf8'))]);
}

/** Broken copies of `obj`: each top-level key dropped, an unknown key added, each value replaced by a wrong type. */
function mutations(obj: unknown): unknown[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return [null, 'x', 1, []];
  const o = obj as Json;
  const out: unknown[] = [{ ...o, zz_unknown_key: 1 }, null, [], 'x'];
  for (const k of Object.keys(o)) {
    const { [k]: _, ...rest } = o;
    out.push(rest);
    out.push({ ...o, [k]: typeof o[k] === 'string' ? 12 : 'not-the-type' });
    out.push({ ...o, [k]: null });
  }
  return out;
}

/** The precompiled module for schema file `name` (as the index keys it), or fails. */
function precompiledOf(name: string): ((x: unknown) => boolean) & { errors?: unknown } {
  const index = readJson(path.join(PRECOMPILED_DIR, INDEX_FILE)) as { modules: Record<string, string> };
  const key = schemaKey(readFileSync(path.join(SCHEMA_DIR, name + SCHEMA_SUFFIX)));
  const file = index.modules[key];
  assert.ok(file, `no precompiled module for ${name}${SCHEMA_SUFFIX} (npm run build writes them)`);
  return require(path.join(PRECOMPILED_DIR, file)) as ((x: unknown) => boolean) & { errors?: unknown };
}

describe('precompiled validators', () => {
  it('exist for every schema file of the folder, written by this ajv', () => {
    const index = readJson(path.join(PRECOMPILED_DIR, INDEX_FILE)) as { ajv: string; modules: Record<string, string> };
    assert.equal(index.ajv, AJV_VERSION);
    const files = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith(SCHEMA_SUFFIX));
    assert.ok(files.length >= 12);
    for (const f of files) {
      assert.ok(index.modules[schemaKey(readFileSync(path.join(SCHEMA_DIR, f)))], `no module for ${f}`);
    }
  });

  it('judge real artifacts and broken copies exactly as ajv compiling the schema file does', () => {
    const cases = [...listedJson(TINY), ...listedJson(generatedFixture())];
    assert.ok(cases.length >= 4, `expected the fixtures' JSON artifacts, got ${cases.length}`);
    const ajv = newAjv();
    const compiled = new Map<string, ReturnType<typeof ajv.compile>>();
    let valid = 0;
    let invalid = 0;
    for (const [name, obj] of cases) {
      const pre = precompiledOf(name);
      let ref = compiled.get(name);
      if (!ref) compiled.set(name, (ref = ajv.compile(readJson(path.join(SCHEMA_DIR, name + SCHEMA_SUFFIX)))));
      for (const x of [obj, ...mutations(obj)]) {
        const a = pre(x);
        const b = ref(x) as boolean;
        assert.equal(a, b, `${name}: precompiled says ${a}, compiled says ${b}`);
        assert.deepEqual(pre.errors ?? null, ref.errors ?? null, `${name}: different errors`);
        if (a) valid++;
        else invalid++;
      }
    }
    // the real artifacts pass and the broken copies mostly fail: the comparison saw both verdicts
    assert.ok(valid >= cases.length, `valid ${valid}`);
    assert.ok(invalid > cases.length * 3, `invalid ${invalid}`);
  });

  it('are what a load of a version folder uses: nothing is compiled at start-up', async () => {
    const schemas = new SchemaRegistry(SCHEMA_DIR);
    await loadArtifacts(new LocalDirSource(generatedFixture()), schemas);
    assert.ok(schemas.made.precompiled >= 4, JSON.stringify(schemas.made));
    assert.equal(schemas.made.compiled, 0);
  });

  it('are not used for a schema edited after the build: its file on disk is compiled and applies', () => {
    const dir = path.join(tmp('node-api-schema-'), 'artifact_schema');
    cpSync(SCHEMA_DIR, dir, { recursive: true });
    const file = path.join(dir, 'track_ids' + SCHEMA_SUFFIX);
    const schema = JSON.parse(readFileSync(file, 'utf8')) as { properties: { count: Json } };
    schema.properties.count.maximum = 2;
    writeFileSync(file, JSON.stringify(schema, null, 2));
    const edited = new SchemaRegistry(dir);
    const ids = { schema_version: '1.0', count: 3, track_ids: ['a', 'b', 'c'] };
    const problem = edited.check('track_ids', ids);
    assert.match(String(problem), /\/count must be <= 2/);
    // (artifact_list's validator, unedited, was made by the constructor's check of artifacts.json)
    assert.deepEqual(edited.made, { precompiled: 1, compiled: 1 });
    // the same object passes the shipped schema, through its precompiled module
    const shipped = new SchemaRegistry(SCHEMA_DIR);
    assert.equal(shipped.check('track_ids', ids), null);
    assert.deepEqual(shipped.made, { precompiled: 2, compiled: 0 });
    // and checkExceptUnique follows the edited file too
    assert.match(String(edited.checkExceptUnique('track_ids', 'track_ids', ids)), /\/count must be <= 2/);
    assert.equal(edited.made.compiled, 2);
  });

  it('are ignored when another ajv wrote them, when a module is missing, or when none are asked for', () => {
    // each case its own copy (a module, once required, stays cached), inside node_api/ so the modules resolve
    // the ajv runtime they require
    let n = 0;
    const copy = (edit: (dir: string) => void): string => {
      const dir = path.join(NODE_API_ROOT, 'dist', `.test-validators-${process.pid}-${n++}`);
      cpSync(PRECOMPILED_DIR, dir, { recursive: true });
      copies.push(dir);
      edit(dir);
      return dir;
    };
    const ids = { schema_version: '1.0', count: 1, track_ids: ['a'] };
    const check = (dir: string | null) => {
      const r = new SchemaRegistry(SCHEMA_DIR, dir);
      assert.equal(r.check('track_ids', ids), null);
      assert.notEqual(r.check('track_ids', { ...ids, count: -1 }), null);
      return r.made;
    };
    // two validators each time: artifact_list (the constructor's check of artifacts.json) and track_ids
    assert.deepEqual(check(copy(() => {})), { precompiled: 2, compiled: 0 });
    assert.deepEqual(check(copy((d) => writeFileSync(path.join(d, 'track_ids.cjs'), 'module.exports = 42;'))), { precompiled: 1, compiled: 1 });
    assert.deepEqual(check(copy((d) => rmSync(path.join(d, 'track_ids.cjs')))), { precompiled: 1, compiled: 1 });
    const otherAjv = (d: string) => {
      const index = readJson(path.join(d, INDEX_FILE));
      writeFileSync(path.join(d, INDEX_FILE), JSON.stringify({ ...index, ajv: '0.0.1' }));
    };
    assert.deepEqual(check(copy(otherAjv)), { precompiled: 0, compiled: 2 });
    assert.deepEqual(check(copy((d) => writeFileSync(path.join(d, INDEX_FILE), '{not json'))), { precompiled: 0, compiled: 2 });
    assert.deepEqual(check(null), { precompiled: 0, compiled: 2 });
  });

  it('cover the uniqueItems variant, and the build names a schema that does not compile', () => {
    const ids = readJson(path.join(SCHEMA_DIR, 'track_ids' + SCHEMA_SUFFIX));
    assert.ok(exceptUniqueSchema(ids, 'track_ids'));
    assert.equal(exceptUniqueSchema(ids, 'count'), null);
    const r = new SchemaRegistry(SCHEMA_DIR);
    assert.equal(r.checkExceptUnique('track_ids', 'track_ids', { schema_version: '1.0', count: 2, track_ids: ['a', 'a'] }), null);
    assert.notEqual(r.check('track_ids', { schema_version: '1.0', count: 2, track_ids: ['a', 'a'] }), null);
    assert.deepEqual(r.made, { precompiled: 3, compiled: 0 });

    const dir = tmp('node-api-schema-');
    writeFileSync(path.join(dir, 'ok' + SCHEMA_SUFFIX), JSON.stringify({ type: 'object', properties: { xs: { type: 'array', uniqueItems: true } } }));
    writeFileSync(path.join(dir, 'bad' + SCHEMA_SUFFIX), JSON.stringify({ type: 'object', properties: { a: { $ref: '#/nowhere' } } }));
    assert.throws(() => writePrecompiled(dir, path.join(dir, 'out')), /bad\.schema\.json does not compile/);
    writeFileSync(path.join(dir, 'bad' + SCHEMA_SUFFIX), JSON.stringify({ type: 'string' }));
    assert.equal(writePrecompiled(dir, path.join(dir, 'out')), 3);
    assert.deepEqual(readdirSync(path.join(dir, 'out')).sort(), ['bad.cjs', 'index.json', 'ok.cjs', 'ok.except-unique.xs.cjs']);
  });
});
