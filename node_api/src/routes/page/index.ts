/**
 * GET /, GET /static/page.js, GET /static/page.css: the catalogue page (node_api/web/, compiled by `npm run
 * build` into the built web folder beside dist/src). The three files have fixed names and are read once, when
 * the plugin registers; no request ever names a file. Every answer carries the page's Content-Security-Policy
 * (its own script and style only, no inline script). When the folder is missing or incomplete (the API was
 * compiled without the web build) the three routes answer 503 with how to build it. GET /favicon.ico is an
 * empty 204, so that no page of the server (the page, the report, /docs) makes the browser log a 404.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { FastifyPluginAsync, FastifyReply } from 'fastify';

import { HttpError } from '../../lib/errors.js';

export interface PageOptions {
  /** the built web folder holding index.html, page.js and page.css (tests); default: dist/web beside dist/src */
  webDir?: string;
}

/** The page's Content-Security-Policy: its own files, preview audio from the API, data: images. */
export const PAGE_CSP = "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'";

/** The built web folder next to the compiled sources: <outDir>/src/routes/page -> <outDir>/web. */
export const DEFAULT_WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'web');

/** The served files: route, file name in the built web folder, content type. */
const FILES = [
  { url: '/', file: 'index.html', type: 'text/html; charset=utf-8', summary: 'The catalogue page (search, neighbours, previews, evaluation headline)' },
  { url: '/static/page.js', file: 'page.js', type: 'text/javascript; charset=utf-8', summary: "The page's script" },
  { url: '/static/page.css', file: 'page.css', type: 'text/css; charset=utf-8', summary: "The page's style sheet" },
] as const;

type Loaded = { ok: true; bodies: Map<string, Buffer> } | { ok: false; missing: string[] };

/** Read the three files once; the names of those that cannot be read when any is missing. */
function readWebDir(dir: string): Loaded {
  const bodies = new Map<string, Buffer>();
  const missing: string[] = [];
  for (const f of FILES) {
    try {
      bodies.set(f.file, readFileSync(path.join(dir, f.file)));
    } catch {
      missing.push(f.file);
    }
  }
  return missing.length === 0 ? { ok: true, bodies } : { ok: false, missing };
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply.header('content-security-policy', PAGE_CSP).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache');
}

const page: FastifyPluginAsync<PageOptions> = async (app, opts) => {
  const loaded = readWebDir(opts.webDir ?? DEFAULT_WEB_DIR);
  if (!loaded.ok) app.log.warn({ missing: loaded.missing }, 'the web page is not built: GET / answers 503 (run `make node-build`)');

  for (const f of FILES) {
    app.get(
      f.url,
      {
        schema: {
          summary: f.summary,
          response: {
            200: { description: f.summary, content: { [f.type.split(';')[0]!]: { schema: { type: 'string' } } } },
            503: { $ref: 'ErrorBody#' },
          },
        },
      },
      async (_req, reply) => {
        securityHeaders(reply);
        if (!loaded.ok) {
          throw new HttpError(503, `The web page is not built (the built web folder lacks ${loaded.missing.join(', ')}); run \`make node-build\``);
        }
        return reply.type(f.type).send(loaded.bodies.get(f.file));
      },
    );
  }

  // Browsers ask every origin for /favicon.ico (the report and /docs name no icon): an empty answer, not a
  // 404 that each browser logs as a console error.
  app.get(
    '/favicon.ico',
    { schema: { summary: 'No icon (an empty answer browsers cache for a day)', response: { 204: { description: 'no icon', type: 'null' } } } },
    async (_req, reply) => reply.code(204).header('cache-control', 'public, max-age=86400').send(),
  );
};

export default page;
