/**
 * Contract: every path the Node API reads comes from artifact_schema/artifacts.json. The list matches its
 * schema; each key Node reads is listed with the format and schema Node reads it with; a full load (HNSW
 * index, neighbour table, eval) asks its source only for listed paths, and for every key Node declares; no
 * source file spells a listed path itself; and a list that lacks a key Node reads (or is missing, invalid, or
 * disagrees on a format) refuses the start with a ConfigError naming the key and the file.
 */

import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import {
  ARTIFACT_LIST_FILE,
  NODE_ARTIFACT_KEYS,
  NODE_ARTIFACTS,
  NODE_OPTIONAL_ARTIFACT_KEYS,
  NODE_OPTIONAL_ARTIFACTS,
  type ArtifactFile,
  type ArtifactList,
} from '../src/lib/layout.js';
import { loadArtifacts } from '../src/lib/loader.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { LocalDirSource, type ArtifactSource } from '../src/lib/source.js';
import { cleanupTmp, generatedFixture, NODE_API_ROOT, readJson, SCHEMA_DIR, tmp, writeJson } from './helpers.js';

const registry = new SchemaRegistry(SCHEMA_DIR);
const list = readJson(path.join(SCHEMA_DIR, ARTIFACT_LIST_FILE)) as unknown as ArtifactList;
const listedPaths = new Set(list.artifacts.map((a) => a.path));

after(cleanupTmp);

/** A copy of the schema folder whose artifacts.json went through `edit` (or is deleted when `edit` returns null). */
function schemaDirWith(edit: (l: ArtifactList) => ArtifactList | null): string {
  const dir = path.join(tmp('node-api-schema-'), 'artifact_schema');
  cpSync(SCHEMA_DIR, dir, { recursive: true });
  const out = edit(structuredClone(list));
  if (out === null) rmSync(path.join(dir, ARTIFACT_LIST_FILE));
  else writeJson(path.join(dir, ARTIFACT_LIST_FILE), out);
  return dir;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

describe('artifacts.json, the one list of artifact paths', () => {
  it('matches artifact_list.schema.json', () => {
    assert.equal(registry.check('artifact_list', list), null);
  });

  it('lists every key Node reads once, with the path, format and schema Node uses', () => {
    for (const key of NODE_ARTIFACT_KEYS) {
      const entries = list.artifacts.filter((a) => a.key === key);
      assert.equal(entries.length, 1, `${key} is listed ${entries.length} times`);
      const entry = entries[0]!;
      assert.equal(registry.paths[key], entry.path, key);
      assert.equal(entry.format, NODE_ARTIFACTS[key].format, key);
      assert.equal(entry.schema ?? null, NODE_ARTIFACTS[key].schema, key);
    }
    assert.deepEqual(Object.keys(registry.paths).sort(), [...NODE_ARTIFACT_KEYS].sort());
  });

  it('lists each optional key Node reads (the page features) at most once, with the format and schema Node uses', () => {
    for (const key of NODE_OPTIONAL_ARTIFACT_KEYS) {
      const entries = list.artifacts.filter((a) => a.key === key);
      assert.ok(entries.length <= 1, `${key} is listed ${entries.length} times`);
      const entry = entries[0];
      if (!entry) continue;
      assert.equal(registry.optionalPaths[key].path, entry.path, key);
      assert.equal(entry.format, NODE_OPTIONAL_ARTIFACTS[key].format, key);
      assert.equal(entry.schema ?? null, NODE_OPTIONAL_ARTIFACTS[key].schema, key);
    }
  });

  it('a full load asks its source only for listed paths, and for the path of every key Node reads', async () => {
    const dir = generatedFixture();
    const local = new LocalDirSource(dir);
    const asked = new Set<string>();
    const recording: ArtifactSource = {
      description: local.description,
      read: (f: ArtifactFile) => (asked.add(f), local.read(f)),
      exists: (f: ArtifactFile) => (asked.add(f), local.exists(f)),
      localPath: (f: ArtifactFile) => (asked.add(f), local.localPath(f)),
    };
    const state = await loadArtifacts(recording, registry, { recallSample: 10, neighborsTable: 'require' });
    assert.equal(state.backend.kind, 'hnsw');
    assert.ok(state.neighbors && state.evalResults, 'the fixture exercises the index, the table and the eval file');
    for (const f of asked) assert.ok(listedPaths.has(f), `Node read '${f}', which artifacts.json does not list`);
    // the optional files the list names are probed (a folder is never read itself: its files are named by a sidecar)
    const optionalFiles = NODE_OPTIONAL_ARTIFACT_KEYS.filter((k) => NODE_OPTIONAL_ARTIFACTS[k].format !== 'folder').flatMap((k) => registry.optionalPaths[k].path ?? []);
    assert.deepEqual([...asked].sort(), [...NODE_ARTIFACT_KEYS.map((k) => registry.paths[k] as string), ...optionalFiles].sort());
  });

  it('no file of src/ spells a listed path itself (they come from the list)', () => {
    const hits: string[] = [];
    for (const file of sourceFiles(path.join(NODE_API_ROOT, 'src'))) {
      const code = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '');
      for (const p of listedPaths) {
        for (const q of [`'${p}'`, `"${p}"`, `\`${p}\``]) if (code.includes(q)) hits.push(`${path.relative(NODE_API_ROOT, file)}: ${q}`);
      }
    }
    assert.deepEqual(hits, []);
  });
});

describe('artifacts.json at start-up', () => {
  const refuses = (dir: string, message: RegExp) =>
    assert.throws(
      () => new SchemaRegistry(dir),
      (err: Error) => {
        assert.equal(err.name, 'ConfigError', err.message);
        assert.match(err.message, message);
        return true;
      },
    );

  it('refuses a list that lacks a key Node reads, naming the key and the file', () => {
    const dir = schemaDirWith((l) => ({ ...l, artifacts: l.artifacts.filter((a) => a.key !== 'neighbors_table') }));
    refuses(dir, /artifact_schema\/artifacts\.json lacks key 'neighbors_table', which the Node API reads \(it reads: tracks_csv, /);
  });

  it('refuses a missing list, one that fails its schema, a repeated key and a format Node does not read', () => {
    refuses(schemaDirWith(() => null), /artifact_schema\/artifacts\.json is missing: ARTIFACT_SCHEMA_DIR must hold the artifact list/);
    refuses(
      schemaDirWith((l) => ({ ...l, artifacts: [...l.artifacts, { ...l.artifacts[0]!, path: '../escape.csv' }] })),
      /artifacts\.json does not match artifact_list\.schema\.json: \/artifacts\/\d+\/path must match pattern/,
    );
    refuses(schemaDirWith((l) => ({ ...l, artifacts: [...l.artifacts, l.artifacts[0]!] })), /artifacts\.json lists key 'tracks_csv' twice/);
    refuses(
      schemaDirWith((l) => ({ ...l, artifacts: l.artifacts.map((a) => (a.key === 'embeddings_f32' ? { ...a, format: 'f16' } : a)) })),
      /artifacts\.json: key 'embeddings_f32' \(embeddings\/embeddings\.f32\) has format 'f16', but the Node API reads it as 'f32'/,
    );
  });

  it('follows a path the list moves (nothing else in Node names it)', async () => {
    const moved = 'embeddings/ids_moved.json';
    const schemaDir = schemaDirWith((l) => ({ ...l, artifacts: l.artifacts.map((a) => (a.key === 'track_ids_json' ? { ...a, path: moved } : a)) }));
    const schemas = new SchemaRegistry(schemaDir);
    assert.equal(schemas.paths.track_ids_json, moved);
    const dir = path.join(tmp(), 'v1_model_fixture-enc');
    cpSync(generatedFixture(), dir, { recursive: true });
    await assert.rejects(loadArtifacts(new LocalDirSource(dir), schemas, { recallSample: 0 }), /^ArtifactError: embeddings\/ids_moved\.json: missing/);
    cpSync(path.join(dir, 'embeddings', 'track_ids.json'), path.join(dir, moved));
    rmSync(path.join(dir, 'embeddings', 'track_ids.json'));
    const state = await loadArtifacts(new LocalDirSource(dir), schemas, { recallSample: 0 });
    assert.equal(state.count, 60);
  });
});
