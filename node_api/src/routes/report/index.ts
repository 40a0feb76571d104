/**
 * GET /report: the research job's evaluation report (eval/report.html, self-contained: its figures are inline
 * data: URIs), under a strict Content-Security-Policy (no script, no request anywhere but data: and this
 * server's images). GET /report/figures/:name: one of the figures report.json names, from eval/figures/ (the
 * name is looked up among report.json's figures, read and verified at load; a request never names a path).
 * Both are 404 with the reason when the version has no report.
 */

import type { FastifyPluginAsync } from 'fastify';

import { HttpError } from '../../lib/errors.js';
import { noneMatchHits } from '../../lib/range.js';

/** The report page's policy: inline styles, images from data: URIs and this server, nothing else. */
export const REPORT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'";
/** A figure's policy (an SVG could hold script): nothing runs, nothing loads. */
const FIGURE_CSP = "default-src 'none'; style-src 'unsafe-inline'";

interface FigureParams {
  name: string;
}

const reportSchema = {
  summary: 'The evaluation report (eval/report.html, written by research-job report)',
  response: {
    200: { description: 'the report page', content: { 'text/html': { schema: { type: 'string' } } } },
    404: { $ref: 'ErrorBody#' },
    503: { $ref: 'ErrorBody#' },
  },
} as const;

const figureSchema = {
  summary: "One figure of the report (eval/figures/<name>, one of report.json's figures)",
  params: {
    type: 'object',
    additionalProperties: false,
    properties: { name: { type: 'string', minLength: 1, maxLength: 256, description: "a figure name report.json lists (e.g. 'map.png')" } },
    required: ['name'],
  },
  response: {
    200: {
      description: 'the figure (PNG, or SVG)',
      content: { 'image/png': { schema: { type: 'string', format: 'binary' } }, 'image/svg+xml': { schema: { type: 'string' } } },
    },
    304: { description: 'Not Modified: If-None-Match matches the ETag', type: 'null' },
    400: { $ref: 'ErrorBody#' },
    404: { $ref: 'ErrorBody#' },
    503: { $ref: 'ErrorBody#' },
  },
} as const;

const reportRoutes: FastifyPluginAsync = async (app) => {
  app.get('/report', { schema: reportSchema }, async (_req, reply) => {
    const html = app.store.require().features.reportHtml;
    if (!html.on) throw new HttpError(404, html.reason);
    return reply
      .header('content-security-policy', REPORT_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-cache')
      .type('text/html; charset=utf-8')
      .send(html.value);
  });

  app.get<{ Params: FigureParams }>('/report/figures/:name', { schema: figureSchema }, async (req, reply) => {
    const figures = app.store.require().features.figures;
    if (!figures.on) throw new HttpError(404, figures.reason);
    const figure = figures.value.get(req.params.name);
    if (!figure) {
      const names = [...figures.value.keys()];
      throw new HttpError(404, `No figure of that name in the report (its figures: ${names.length ? names.join(', ') : 'none'})`);
    }
    if ('missing' in figure) throw new HttpError(404, figure.missing);
    // revalidated on every use (a reload may serve another figure under the same name): 304 while unchanged
    void reply.header('etag', figure.etag).header('cache-control', 'no-cache');
    if (noneMatchHits(req.headers['if-none-match'], figure.etag)) return reply.code(304).send();
    return reply.header('content-security-policy', FIGURE_CSP).header('x-content-type-options', 'nosniff').type(figure.type).send(figure.bytes);
  });
};

export default reportRoutes;
