/**
 * GET /eval/summary: the research job's composer-retrieval evaluation (eval/eval_results.json), as validated
 * at start-up; the response schema is the artifact's own schema read from ARTIFACT_SCHEMA_DIR.
 */

import type { FastifyPluginAsync } from 'fastify';

import { HttpError } from '../../lib/errors.js';

export interface EvalRouteOptions {
  /** eval_results.schema.json, minus its $schema/$id (used as the response schema) */
  evalSchema: Record<string, unknown>;
}

const evalRoutes: FastifyPluginAsync<EvalRouteOptions> = async (app, opts) => {
  app.get(
    '/eval/summary',
    {
      schema: {
        summary: 'Composer-retrieval evaluation of the loaded artifact version',
        response: { 200: opts.evalSchema, 404: { $ref: 'ErrorBody#' }, 503: { $ref: 'ErrorBody#' } },
      },
    },
    async () => {
      const state = app.store.require();
      if (!state.evalResults) throw new HttpError(404, `No eval/eval_results.json in ${state.artifactVersion}; run the research job's evaluate step`);
      return state.evalResults;
    },
  );
};

export default evalRoutes;
