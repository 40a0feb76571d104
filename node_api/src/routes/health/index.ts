/** GET /health: 200 `{status: "ok"}` once the artifacts are loaded, 503 before (or after a failed load). */

import type { FastifyPluginAsync } from 'fastify';

const health: FastifyPluginAsync = async (app) => {
  app.get(
    '/health',
    {
      schema: {
        summary: 'Liveness and readiness',
        response: {
          200: { type: 'object', additionalProperties: false, properties: { status: { const: 'ok' } }, required: ['status'] },
          503: { $ref: 'ErrorBody#' },
        },
      },
    },
    async () => {
      app.store.require();
      return { status: 'ok' as const };
    },
  );
};

export default health;
