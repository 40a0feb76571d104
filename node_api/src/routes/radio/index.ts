/**
 * POST /radio/generate: a page of a station started from a track or a listener (lib/recs/radio.ts: a
 * deterministic walk with composer / album spacing, MMR diversity and no repeats within the continuation's
 * window), and the continuation token of the next page. Needs only the embeddings (a listener's station reads
 * recs/ and the feedback store when there).
 */

import type { FastifyPluginAsync } from 'fastify';

import { MAX_TOKEN_CHARS, WINDOW } from '../../lib/recs/radio.js';
import { radio, type RadioBody } from '../../lib/recs/serve.js';
import { errorResponses, TRACK_ID_REF } from '../schemas.js';
import { diversitySchema, trackItem, userIdSchema } from '../recommend/schemas.js';

const radioRoute: FastifyPluginAsync = async (app) => {
  app.post<{ Body: RadioBody }>(
    '/radio/generate',
    {
      schema: {
        summary: 'A page of a radio station and the token of the next one',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            seed_track_id: { ...TRACK_ID_REF, description: 'start from this track (one of seed_track_id, user_id)' },
            user_id: userIdSchema(app, "start from this listener's taste; their skipped and disliked tracks are left out"),
            n: { type: 'integer', minimum: 1, maximum: 100, default: 25, description: 'tracks of this page (1..100)' },
            continuation: { type: 'string', minLength: 1, maxLength: MAX_TOKEN_CHARS, description: `the previous page's token (base64url JSON; no track repeats within its last ${WINDOW})` },
            composer_gap: { type: 'integer', minimum: 0, maximum: 50, default: 3, description: 'no two tracks of one composer within this many positions' },
            album_gap: { type: 'integer', minimum: 0, maximum: 50, default: 5, description: 'no two tracks of one album within this many positions' },
            diversity: diversitySchema(0.3),
          },
          // a seed or a listener, never both (a continuation alone goes on from its own seed)
          not: { required: ['seed_track_id', 'user_id'] },
          anyOf: [{ required: ['seed_track_id'] }, { required: ['user_id'] }, { required: ['continuation'] }],
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            properties: {
              tracks: { type: 'array', items: trackItem("cosine to the step's query (the seed blended with the previous track)") },
              continuation: { type: 'string', description: 'pass it back for the next page' },
            },
            required: ['tracks', 'continuation'],
          },
          ...errorResponses,
        },
      },
    },
    async (req) => radio(app.store.require(), app.feedback.reader, req.body),
  );
};

export default radioRoute;
