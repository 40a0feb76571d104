/** Contract: ajv over the shared schemas accepts every example in examples/valid and rejects every one in examples/invalid. */

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { SCHEMA_NAMES, SchemaRegistry } from '../src/lib/schemas.js';
import { SCHEMA_DIR } from './helpers.js';

const registry = new SchemaRegistry(SCHEMA_DIR);

function examples(kind: 'valid' | 'invalid'): Array<[string, string, unknown]> {
  const dir = path.join(SCHEMA_DIR, 'examples', kind);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f, f.split('.')[0] ?? f, JSON.parse(readFileSync(path.join(dir, f), 'utf8'))]);
}

describe('artifact_schema examples', () => {
  it('every example names a known schema, and both folders are non-empty', () => {
    for (const kind of ['valid', 'invalid'] as const) {
      const ex = examples(kind);
      assert.ok(ex.length > 0, `examples/${kind} is empty`);
      for (const [file, name] of ex) assert.ok(registry.names().includes(name), `${file}: unknown schema ${name}`);
    }
  });

  for (const [file, name, obj] of examples('valid')) {
    it(`accepts valid/${file}`, () => {
      assert.equal(registry.check(name, obj), null);
    });
  }
  for (const [file, name, obj] of examples('invalid')) {
    it(`rejects invalid/${file}`, () => {
      assert.notEqual(registry.check(name, obj), null);
    });
  }

  it('every schema has a valid and an invalid example', () => {
    for (const kind of ['valid', 'invalid'] as const) {
      const covered = new Set(examples(kind).map(([, n]) => n));
      for (const n of registry.names()) assert.ok(covered.has(n), `no ${kind} example for ${n}`);
    }
  });

  it('both files that declare a track id declare the same one, the one the server validates ids with', () => {
    const row = (registry.schema('tracks_metadata_row').properties as Record<string, unknown>).track_id;
    assert.deepEqual(registry.trackIdSchema(), row);
    assert.ok(Number.isInteger(registry.trackIdSchema().maxLength));
  });

  it("compiles every schema of the folder, the server's own included", () => {
    for (const n of SCHEMA_NAMES) assert.ok(registry.names().includes(n), n);
  });
});
