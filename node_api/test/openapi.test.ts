/**
 * The served OpenAPI document: version 3.1.0 (its schemas are JSON Schema 2020-12, as the route schemas and
 * eval_results.schema.json are), every schema in it compiles under draft 2020-12 and accepts the real responses
 * of its operation; POST /search's vector declares the loaded dim, also after a reload to a version of another
 * dim; it lists the composer filter values and track ids the server accepts and excludes an all-zero vector;
 * every {trackId} parameter has a catalogue id as its example; and a method no route declares on a known path
 * is a 405 with an Allow header (TRACE /search, QUERY before any body parsing), an unknown path a 404.
 */

import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance, InjectOptions } from 'fastify';

import { appFor, cleanupTmp, copyFixture, generatedFixture, makeFixture, readJson } from './helpers.js';

const TOKEN = 'openapi-test-token-0123456789';
let app: FastifyInstance;
let dir: string;
let ids: string[];

type Json = Record<string, any>;

async function doc(): Promise<Json> {
  const r = await app.inject('/openapi.json');
  assert.equal(r.statusCode, 200);
  return r.json();
}

before(async () => {
  dir = copyFixture(generatedFixture());
  ids = readJson(path.join(dir, 'embeddings/track_ids.json')).track_ids;
  app = await appFor(dir, { RELOAD_TOKEN: TOKEN });
});

after(async () => {
  await app?.close();
  cleanupTmp();
});

/** An ajv (draft 2020-12) holding the document's components, and a compiler of the document's schemas with it. */
function compilerFor(d: Json): (schema: Json) => ReturnType<Ajv2020['compile']> {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema({ $id: 'doc', components: d.components ?? {} });
  return (schema) => ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"doc#/components/')));
}

const vectorOf = (d: Json): Json => d.paths['/search'].post.requestBody.content['application/json'].schema.properties.vector;

describe('GET /openapi.json', () => {
  it('is OpenAPI 3.1.0, and every schema in it compiles as JSON Schema 2020-12', async () => {
    const d = await doc();
    assert.equal(d.openapi, '3.1.0');
    const compile = compilerFor(d);
    let n = 0;
    for (const item of Object.values(d.paths as Record<string, Json>)) {
      for (const op of Object.values(item)) {
        for (const p of op.parameters ?? []) (compile(p.schema), n++);
        for (const r of Object.values((op.responses ?? {}) as Record<string, Json>)) {
          const s = r.content?.['application/json']?.schema;
          if (s) (compile(s), n++);
        }
      }
    }
    assert.ok(n > 20, `${n} schemas`);
  });

  it('real responses match the schema the document gives their operation and status', async () => {
    const d = await doc();
    const compile = compilerFor(d);
    const id = encodeURIComponent(ids[1]!);
    const calls: Array<[string, string, InjectOptions]> = [
      ['/health', 'get', { url: '/health' }],
      ['/models', 'get', { url: '/models' }],
      ['/eval/summary', 'get', { url: '/eval/summary' }],
      ['/tracks/{trackId}/nearest', 'get', { url: `/tracks/${id}/nearest?k=3&exclude_same_album=true` }],
      ['/tracks/{trackId}/nearest', 'get', { url: '/tracks/nope/nearest' }],
      ['/tracks/{trackId}/composer-eval', 'get', { url: `/tracks/${id}/composer-eval` }],
      ['/search', 'post', { method: 'POST', url: '/search', payload: { vector: new Array(16).fill(0.25), k: 2 } }],
      ['/search', 'post', { method: 'POST', url: '/search', payload: { vector: [1] } }],
      ['/models/reload', 'post', { method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}` } }],
      ['/models/reload', 'post', { method: 'POST', url: '/models/reload' }],
      ['/tracks', 'get', { url: '/tracks?q=a&limit=3' }],
      ['/tracks', 'get', { url: '/tracks?q=' }],
      // this version has no report, clusters or previews: their 404s (page_api.test.ts checks their 200s)
      ['/tracks/{trackId}/cluster', 'get', { url: `/tracks/${id}/cluster` }],
      ['/tracks/{trackId}/preview', 'get', { url: `/tracks/${id}/preview` }],
      ['/report', 'get', { url: '/report' }],
      ['/report/figures/{name}', 'get', { url: '/report/figures/map.png' }],
    ];
    for (const [p, method, req] of calls) {
      const r = await app.inject(req);
      const schema = d.paths[p][method].responses[String(r.statusCode)]?.content?.['application/json']?.schema;
      assert.ok(schema, `${method} ${p}: status ${r.statusCode} is not in the document`);
      const validate = compile(schema);
      assert.ok(validate(r.json()), `${method} ${req.url} ${r.statusCode}: ${JSON.stringify(validate.errors)}`);
    }
  });

  it("POST /search's vector declares the loaded dim, and follows a reload to another dim", async () => {
    assert.deepEqual([vectorOf(await doc()).minItems, vectorOf(await doc()).maxItems], [16, 16]);
    cpSync(makeFixture(['--n', '12', '--dim', '8']), dir, { recursive: true, force: true });
    const r = await app.inject({ method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.json().status, 'reloaded', r.body);
    const v = vectorOf(await doc());
    assert.deepEqual([v.minItems, v.maxItems], [8, 8]);
    const ok = await app.inject({ method: 'POST', url: '/search', payload: { vector: new Array(8).fill(0.5), k: 1 } });
    assert.equal(ok.statusCode, 200, ok.body);
    // the cached document of the routes is not changed by the patch
    assert.equal(vectorOf(app.swagger() as Json).minItems, 1);
    // put the 60-track version back for the tests below
    cpSync(generatedFixture(), dir, { recursive: true, force: true });
    assert.equal((await app.inject({ method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}` } })).json().status, 'reloaded');
  });

  it('lists what the server accepts: a vector not all zeros, the known composers and track ids', async () => {
    const d = await doc();
    assert.deepEqual(vectorOf(d).not, { items: { const: 0 } });
    const composer = d.paths['/tracks/{trackId}/nearest'].get.parameters.find((x: Json) => x.name === 'composer');
    assert.ok(composer.schema.enum.includes('claude debussy') && composer.schema.enum.includes('debussy, claude'), JSON.stringify(composer.schema));
    for (const value of composer.schema.enum) {
      const r = await app.inject(`/tracks/${encodeURIComponent(ids[1]!)}/nearest?composer=${encodeURIComponent(value)}`);
      assert.equal(r.statusCode, 200, `${value}: ${r.body}`);
    }
    const excluded = d.paths['/search'].post.requestBody.content['application/json'].schema.properties.exclude_track_ids.items;
    assert.deepEqual(excluded.enum, ids);
  });

  it('every {trackId} path parameter has a catalogue id as its example, and it answers 200', async () => {
    const d = await doc();
    for (const p of ['/tracks/{trackId}/nearest', '/tracks/{trackId}/composer-eval']) {
      const param = d.paths[p].get.parameters.find((x: Json) => x.in === 'path' && x.name === 'trackId');
      assert.ok(ids.includes(param.example), `${p}: example ${JSON.stringify(param.example)}`);
      const r = await app.inject(p.replace('{trackId}', encodeURIComponent(param.example)));
      assert.equal(r.statusCode, 200, r.body);
    }
  });
});

describe('methods', () => {
  it('a method no route declares on a known path is a 405 listing the allowed ones in Allow', async () => {
    for (const [method, url, allow] of [
      ['TRACE', '/search', 'POST'],
      ['QUERY', '/eval/summary', 'GET, HEAD'],
      ['GET', '/search', 'POST'],
      ['DELETE', `/tracks/${encodeURIComponent(ids[1]!)}/nearest`, 'GET, HEAD'],
      ['PUT', '/models', 'GET, HEAD'],
      ['GET', '/models/reload', 'POST'],
    ] as const) {
      const r = await app.inject({ method, url });
      assert.equal(r.statusCode, 405, `${method} ${url}: ${r.body}`);
      assert.equal(r.headers.allow, allow, `${method} ${url}`);
      assert.deepEqual(Object.keys(r.json()).sort(), ['error', 'message', 'statusCode']);
      assert.equal(r.json().error, 'Method Not Allowed');
    }
  });

  it('an unknown path is a 404 without Allow', async () => {
    const r = await app.inject({ method: 'TRACE', url: '/no/such/path' });
    assert.equal(r.statusCode, 404);
    assert.equal(r.headers.allow, undefined);
  });
});
