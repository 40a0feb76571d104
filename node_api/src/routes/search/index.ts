/**
 * POST /search: nearest tracks of a caller-supplied vector (embedded elsewhere, same model and postprocess).
 * The vector is L2-normalised here; a zero vector, a wrong length, a non-number or a component beyond +-1e150
 * is a 400.
 */

import type { FastifyPluginAsync } from 'fastify';

import { searchVector } from '../../lib/search.js';
import { hitSchema, kSchema, TRACK_ID_REF } from '../schemas.js';

/** Largest magnitude of a vector component. */
const MAX_COMPONENT = 1e150;

interface Body {
  vector: number[];
  k: number;
  exclude_track_ids: string[];
}

const search: FastifyPluginAsync = async (app) => {
  app.post<{ Body: Body }>(
    '/search',
    {
      schema: {
        summary: 'Nearest tracks of a query vector',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            vector: {
              type: 'array',
              // bounded so that the squared norm of up to 65536 components stays finite (1e300 * 65536 < 1.8e308)
              items: { type: 'number', minimum: -MAX_COMPONENT, maximum: MAX_COMPONENT },
              minItems: 1,
              maxItems: 65536,
              description: 'length = dim (GET /models), not all zeros',
            },
            k: kSchema,
            exclude_track_ids: { type: 'array', items: TRACK_ID_REF, maxItems: 10000, default: [] },
          },
          required: ['vector'],
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            properties: { k: { type: 'integer' }, method: { type: 'string' }, hits: { type: 'array', items: hitSchema } },
            required: ['k', 'method', 'hits'],
          },
          400: { $ref: 'ErrorBody#' },
          503: { $ref: 'ErrorBody#' },
        },
      },
    },
    async (req) => {
      const state = app.store.require();
      const res = await searchVector(state, req.body.vector, req.body.k, req.body.exclude_track_ids);
      return { k: req.body.k, method: res.method, hits: res.hits };
    },
  );
};

export default search;
