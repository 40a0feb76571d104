/**
 * The page plugin (src/routes/page): GET /, /static/page.js and /static/page.css answer the built web
 * folder's three files byte for byte with their content types, the page's Content-Security-Policy and nosniff
 * (HEAD too); the files are read once, when the plugin registers; a missing or incomplete folder is a 503
 * naming what is missing and `make node-build`; /favicon.ico is an empty 204; the routes are in the OpenAPI
 * document with their media types.
 * Also the shipped page itself: index.html loads only its own script and style sheet (no inline script, style
 * or event handler), page.ts never writes markup, and `npm run build` puts the page in the default folder.
 */

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';

import page, { DEFAULT_WEB_DIR, PAGE_CSP } from '../src/routes/page/index.js';
import { errorBody } from '../src/routes/schemas.js';
import { cleanupTmp, NODE_API_ROOT, tmp } from './helpers.js';

const FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8', body: '<!doctype html><title>fixture page é</title>\n' },
  '/static/page.js': { file: 'page.js', type: 'text/javascript; charset=utf-8', body: "console.log('fixture script');\n" },
  '/static/page.css': { file: 'page.css', type: 'text/css; charset=utf-8', body: 'body { color: #123456; }\n' },
} as const;

/** A web folder holding the fixture files, without those named in `skip`. */
function webDir(skip: string[] = []): string {
  const dir = path.join(tmp('node-api-web-'), 'web');
  mkdirSync(dir);
  for (const f of Object.values(FILES)) if (!skip.includes(f.file)) writeFileSync(path.join(dir, f.file), f.body);
  return dir;
}

/** The plugin on a bare Fastify with the shared ErrorBody schema and the OpenAPI generator. */
async function appWith(dir: string): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.addSchema(errorBody);
  await app.register(swagger, { openapi: { openapi: '3.1.0', info: { title: 't', version: '0' } } });
  await app.register(page, { webDir: dir });
  await app.ready();
  return app;
}

const apps: FastifyInstance[] = [];
async function tracked(dir: string): Promise<FastifyInstance> {
  const app = await appWith(dir);
  apps.push(app);
  return app;
}

after(async () => {
  await Promise.all(apps.map((a) => a.close()));
  cleanupTmp();
});

describe('page routes over a built web folder', () => {
  it('serve the three files byte for byte with their content types, the CSP and nosniff', async () => {
    const app = await tracked(webDir());
    for (const [url, f] of Object.entries(FILES)) {
      const r = await app.inject(url);
      assert.equal(r.statusCode, 200, url);
      assert.equal(r.headers['content-type'], f.type, url);
      assert.equal(r.body, f.body, url);
      assert.equal(r.headers['content-security-policy'], PAGE_CSP, url);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', url);
      const head = await app.inject({ method: 'HEAD', url });
      assert.equal(head.statusCode, 200, `HEAD ${url}`);
      assert.equal(head.headers['content-type'], f.type, `HEAD ${url}`);
    }
  });

  it("the CSP is the page's: its own script and style only, previews and data: images", () => {
    assert.equal(PAGE_CSP, "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'");
  });

  it('read the files once, when the plugin registers (a later change on disk is not served)', async () => {
    const dir = webDir();
    const app = await tracked(dir);
    writeFileSync(path.join(dir, 'index.html'), 'changed');
    rmSync(path.join(dir, 'page.css'));
    assert.equal((await app.inject('/')).body, FILES['/'].body);
    assert.equal((await app.inject('/static/page.css')).statusCode, 200);
  });

  it('answer /favicon.ico with an empty 204 (browsers ask every origin for it)', async () => {
    const app = await tracked(path.join(tmp('node-api-web-'), 'no-such-web'));
    const r = await app.inject('/favicon.ico');
    assert.equal(r.statusCode, 204);
    assert.equal(r.body, '');
  });

  it('serve nothing else from the folder', async () => {
    const dir = webDir();
    writeFileSync(path.join(dir, 'secret.txt'), 'not served');
    const app = await tracked(dir);
    for (const url of ['/static/secret.txt', '/static/../secret.txt', '/secret.txt', '/static/index.html', '/index.html']) {
      assert.equal((await app.inject(url)).statusCode, 404, url);
    }
  });

  it('are in the OpenAPI document with their media types and the 503 error body', async () => {
    const app = await tracked(webDir());
    const doc = app.swagger() as { paths: Record<string, any> };
    for (const [url, f] of Object.entries(FILES)) {
      const op = doc.paths[url]?.get;
      assert.ok(op, `${url} is missing from the document`);
      assert.deepEqual(Object.keys(op.responses['200'].content), [f.type.split(';')[0]], url);
      assert.ok(op.responses['503'], `${url} documents no 503`);
    }
  });
});

describe('page routes without a built web folder', () => {
  it('answer 503 saying to run `make node-build` when the folder is missing', async () => {
    const app = await tracked(path.join(tmp('node-api-web-'), 'no-such-web'));
    for (const url of Object.keys(FILES)) {
      const r = await app.inject(url);
      assert.equal(r.statusCode, 503, url);
      const body = r.json();
      assert.equal(body.statusCode, 503);
      assert.match(body.message, /run `make node-build`/);
      assert.match(body.message, /index\.html, page\.js, page\.css/);
    }
  });

  it('answer 503 naming the one file missing from an incomplete folder', async () => {
    const app = await tracked(webDir(['page.js']));
    const r = await app.inject('/');
    assert.equal(r.statusCode, 503);
    assert.match(r.json().message, /lacks page\.js\); run `make node-build`/);
  });
});

describe('the shipped page', () => {
  const html = readFileSync(path.join(NODE_API_ROOT, 'web', 'index.html'), 'utf8');
  const script = readFileSync(path.join(NODE_API_ROOT, 'web', 'page.ts'), 'utf8');

  it('index.html loads only /static/page.js and /static/page.css: no inline script, style or handler', () => {
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    assert.deepEqual(
      scripts.map((m) => [m[1]!.trim(), m[2]!.trim()]),
      [['type="module" src="/static/page.js"', '']],
    );
    assert.deepEqual([...html.matchAll(/<link\b[^>]*rel="stylesheet"[^>]*>/gi)].map((m) => m[0].match(/href="([^"]+)"/)?.[1]), ['/static/page.css']);
    assert.doesNotMatch(html, /<style\b/i);
    assert.doesNotMatch(html, /\sstyle\s*=/i);
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i);
    assert.doesNotMatch(html, /javascript:/i);
  });

  it('index.html has the elements the script and the browser test use', () => {
    for (const id of ['q', 'results', 'track', 'neighbours', 'cluster', 'exclude-album', 'eval-summary', 'model', 'error', 'report-link']) {
      assert.match(html, new RegExp(`id="${id}"`), id);
    }
    assert.match(html, /<label for="q">/);
    assert.match(html, /<label for="exclude-album">/);
    assert.equal(html.match(/aria-live="polite"/g)?.length, 2, 'the search and neighbour status lines are live regions');
  });

  it('page.ts builds the DOM with textContent: no markup from strings', () => {
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function']) {
      assert.ok(!script.includes(sink), `page.ts uses ${sink}`);
    }
  });

  it('`npm run build` puts the page in the default folder (<outDir>/web beside <outDir>/src)', () => {
    assert.equal(path.basename(DEFAULT_WEB_DIR), 'web');
    assert.equal(readFileSync(path.join(DEFAULT_WEB_DIR, 'index.html'), 'utf8'), html);
    assert.equal(readFileSync(path.join(DEFAULT_WEB_DIR, 'page.css'), 'utf8'), readFileSync(path.join(NODE_API_ROOT, 'web', 'page.css'), 'utf8'));
    assert.match(readFileSync(path.join(DEFAULT_WEB_DIR, 'page.js'), 'utf8'), /getElementById/);
  });
});
