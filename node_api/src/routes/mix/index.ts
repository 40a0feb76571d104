/**
 * POST /daily-mix: a listener's mixes, one per taste cluster of their positive history (lib/recs/mix.ts); 404 for
 * a listener without one, 503 without recs/.
 */

import type { FastifyPluginAsync } from 'fastify';

import { dailyMix } from '../../lib/recs/serve.js';
import { errorResponses } from '../schemas.js';
import { trackItem, userIdSchema } from '../recommend/schemas.js';

interface Body {
  user_id: string;
  k: number;
  size: number;
}

const mix: FastifyPluginAsync = async (app) => {
  app.post<{ Body: Body }>(
    '/daily-mix',
    {
      schema: {
        summary: "A listener's daily mixes, one per taste cluster",
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            user_id: userIdSchema(app, 'a listener with a positive history (recs/ or the feedback store)'),
            k: { type: 'integer', minimum: 1, maximum: 10, default: 3, description: 'mixes at most (fewer when the history has fewer tracks)' },
            size: { type: 'integer', minimum: 1, maximum: 100, default: 20, description: 'tracks per mix' },
          },
          required: ['user_id'],
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            properties: {
              user_id: { type: 'string' },
              mixes: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    mix_id: { type: 'string', description: 'mix-1, mix-2, ... (heaviest cluster first)' },
                    centroid_track_id: { type: 'string', description: "the cluster's history track closest to its centre" },
                    tracks: {
                      type: 'array',
                      items: trackItem("cosine to the cluster's centre", {
                        enum: ['nearest', 'history'],
                        description: "nearest: a new track near the centre; history: one of the cluster's own tracks",
                      }),
                    },
                  },
                  required: ['mix_id', 'centroid_track_id', 'tracks'],
                },
              },
            },
            required: ['user_id', 'mixes'],
          },
          ...errorResponses,
        },
      },
    },
    async (req) => dailyMix(app.store.require(), app.feedback.reader, req.body),
  );
};

export default mix;
