/**
 * POST /models/reload: load the version ARTIFACTS_URI names now (the latest pointer is re-read) beside the
 * one serving and swap atomically. Protected by `Authorization: Bearer <RELOAD_TOKEN>`: no token configured
 * -> 404 (reload disabled), missing header -> 401, wrong token -> 403. A version that fails verification or
 * its checks -> 422 naming the file (the previous version keeps serving); S3/database failure -> 502;
 * another reload running -> 409.
 */

import { createHash, timingSafeEqual } from 'node:crypto';

import type { FastifyPluginAsync } from 'fastify';

import { ArtifactError, HttpError, StorageError } from '../../lib/errors.js';

const ref = { type: ['object', 'null'], properties: { artifact_version: { type: 'string' }, release: { type: ['string', 'null'] } } } as const;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

const reloadRoute: FastifyPluginAsync = async (app) => {
  app.post(
    '/models/reload',
    {
      schema: {
        summary: 'Load the newest version beside the current one and swap atomically (bearer token)',
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            properties: {
              status: { type: 'string', enum: ['reloaded', 'unchanged'] },
              previous: ref,
              current: {
                type: 'object',
                properties: { artifact_version: { type: 'string' }, release: { type: ['string', 'null'] }, content_sha256: { type: ['string', 'null'] } },
              },
              reload_sec: { type: 'number' },
            },
          },
          401: { $ref: 'ErrorBody#' },
          403: { $ref: 'ErrorBody#' },
          404: { $ref: 'ErrorBody#' },
          409: { $ref: 'ErrorBody#' },
          422: { $ref: 'ErrorBody#' },
          502: { $ref: 'ErrorBody#' },
        },
      },
    },
    async (req, reply) => {
      const token = app.config.reloadToken;
      if (token === null) throw new HttpError(404, 'Reload is disabled: RELOAD_TOKEN is not set on this server');
      const auth = req.headers.authorization;
      const m = typeof auth === 'string' ? /^Bearer (\S+)$/i.exec(auth.trim()) : null;
      if (!m) {
        void reply.header('www-authenticate', 'Bearer');
        throw new HttpError(401, 'Missing bearer token: send Authorization: Bearer <RELOAD_TOKEN>');
      }
      if (!timingSafeEqual(digest(m[1]!), digest(token))) throw new HttpError(403, 'Wrong reload token');
      try {
        return await app.reloadArtifacts();
      } catch (err) {
        if (err instanceof HttpError) throw err;
        const still = app.store.current();
        const serving = still ? ` (still serving ${still.artifactVersion}${still.release ? `/${still.release}` : ''})` : '';
        if (err instanceof ArtifactError) throw new HttpError(422, `Reload refused: ${err.message}${serving}`);
        if (err instanceof StorageError) throw new HttpError(502, `Reload failed: ${err.message}${serving}`);
        // an unexpected error's message may hold a local path: it goes to the log only
        req.log.error({ err }, 'reload failed');
        throw new HttpError(500, `Reload failed: internal error, see the server log${serving}`);
      }
    },
  );
};

export default reloadRoute;
