/**
 * Structure rules of node_api/src, read from the source files: no import cycle between modules (type-only
 * imports count: a cycle of types is how two modules end up owning one concept); lib/ never imports
 * plugins/ or routes/ (the library sits below the Fastify layer); loadArtifacts and buildApp stay short (their
 * phases are named functions, the plugins do the work); app.ts leaves the artifacts' lifecycle to the plugin;
 * routes/tracks uses the shared error responses; the query-row exclusion has one builder.
 */

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { NODE_API_ROOT } from './helpers.js';

const SRC = path.join(NODE_API_ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

/** Module (path relative to src/, without extension) -> the src modules it imports, type-only ones included. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const name = (file: string) => path.relative(SRC, file).replace(/\.(ts|js)$/, '').split(path.sep).join('/');
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    const deps = new Set<string>();
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)'(\.{1,2}\/[^']+)'/g)) deps.add(name(path.resolve(path.dirname(file), m[1]!)));
    graph.set(name(file), [...deps].sort());
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as `a -> b -> a`. */
function cycles(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (m: string): void => {
    state.set(m, 'open');
    stack.push(m);
    for (const d of graph.get(m) ?? []) {
      if (state.get(d) === 'open') found.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(m, 'done');
  };
  for (const m of [...graph.keys()].sort()) if (!state.has(m)) visit(m);
  return found;
}

describe('node_api/src structure', () => {
  const graph = importGraph();

  it('reads the modules it checks', () => {
    for (const m of ['app', 'server', 'lib/loader', 'plugins/env', 'plugins/artifactStore']) assert.ok(graph.has(m), m);
  });

  it('has no import cycle (type-only imports included)', () => {
    assert.deepEqual(cycles(graph), []);
  });

  it('lib/ imports nothing from plugins/ or routes/', () => {
    const bad = [...graph].filter(([m]) => m.startsWith('lib/')).flatMap(([m, deps]) => deps.filter((d) => /^(plugins|routes)\//.test(d)).map((d) => `${m} -> ${d}`));
    assert.deepEqual(bad, []);
  });
});

/** Lines of the top-level function `name` of `file` (from its `function` line to the first `}` at column 0). */
function functionLines(file: string, name: string): number {
  const lines = readFileSync(path.join(SRC, file), 'utf8').split('\n');
  const start = lines.findIndex((l) => new RegExp(`^(export )?(async )?function ${name}\\b`).test(l));
  assert.ok(start >= 0, `${file} has no top-level function ${name}`);
  const end = lines.findIndex((l, i) => i > start && l === '}');
  return end - start + 1;
}

describe('functions follow their phases; plugins own their lifecycle', () => {
  it('loadArtifacts and buildApp stay short (each phase is a named function; the plugins do the work)', () => {
    for (const [file, name] of [['lib/loader.ts', 'loadArtifacts'], ['app.ts', 'buildApp']] as const) {
      const n = functionLines(file, name);
      assert.ok(n <= 60, `${name} in src/${file} is ${n} lines`);
    }
  });

  it('app.ts only registers: the provider, the pgvector pool and the reload poll live in the artifact store plugin', () => {
    const app = readFileSync(path.join(SRC, 'app.ts'), 'utf8');
    for (const word of ['providerFor', 'makePool', 'setInterval', 'loadFrom', 'new ArtifactStore']) assert.ok(!app.includes(word), `app.ts uses ${word}`);
    const plugin = readFileSync(path.join(SRC, 'plugins', 'artifactStore.ts'), 'utf8');
    for (const word of ['providerFor', 'makePool', 'setInterval', 'clearInterval', 'pool.end', "addHook('onClose'"]) assert.ok(plugin.includes(word), `artifactStore.ts lacks ${word}`);
  });
});

describe('one way to do a cross-cutting thing', () => {
  it('routes/tracks takes its error responses from the shared errorResponses', () => {
    const text = readFileSync(path.join(SRC, 'routes', 'tracks', 'index.ts'), 'utf8');
    assert.ok(!text.includes("$ref: 'ErrorBody#'"), 'routes/tracks spells its own ErrorBody refs');
    assert.equal(text.match(/\.\.\.errorResponses\b/g)?.length, 2, 'both tracks routes spread errorResponses');
  });

  it('the query-row exclusion is built only by queryExclusion (lib/exact.ts)', () => {
    const bad: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const rel = path.relative(SRC, file).split(path.sep).join('/');
      const text = readFileSync(file, 'utf8');
      // an exclusion object built by hand: `has: (r) => r === row` (with or without a type on r)
      const count = (text.match(/has:\s*\(\s*r(?:\s*:\s*number)?\s*\)\s*=>\s*r\s*===\s*row\b/g) ?? []).length;
      if (count > (rel === 'lib/exact.ts' ? 2 : 0)) bad.push(`${rel}: ${count}`);
    }
    assert.deepEqual(bad, []);
  });
});
