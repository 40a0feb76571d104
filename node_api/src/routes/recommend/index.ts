/**
 * POST /recommend/similar: tracks like a set of seeds (cosine to the seeds' normalised mean, the /nearest ranking;
 * optionally MMR-diversified); needs only the embeddings. POST /recommend/user: a listener's top-k under the hybrid
 * (default), ALS, content or popularity model of recs/ (503 without it); a listener train-recs did not see is a
 * cold start (content from their feedback, else trending), not a 404.
 */

import type { FastifyPluginAsync } from 'fastify';

import { REC_MODELS, type RecModel } from '../../lib/recs/scoring.js';
import { recommendUser, similar } from '../../lib/recs/serve.js';
import { errorResponses } from '../schemas.js';
import { diversitySchema, kRecs, trackIdList, trackItem, userIdSchema } from './schemas.js';

interface SimilarBody {
  track_ids: string[];
  k: number;
  exclude: string[];
  diversity: number;
}

interface UserBody {
  user_id: string;
  k: number;
  model: RecModel;
  exclude: string[];
}

const exclude = trackIdList('tracks never returned (unknown ids are a 404)', 0, 10000);

const recommend: FastifyPluginAsync = async (app) => {
  app.post<{ Body: SimilarBody }>(
    '/recommend/similar',
    {
      schema: {
        summary: 'Tracks similar to a set of seed tracks',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            track_ids: trackIdList('seed tracks (never returned)', 1, 50),
            k: kRecs,
            exclude: { ...exclude, default: [] },
            diversity: diversitySchema(0),
          },
          required: ['track_ids'],
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            properties: { items: { type: 'array', items: trackItem("cosine to the normalised mean of the seeds' embeddings") } },
            required: ['items'],
          },
          ...errorResponses,
        },
      },
    },
    async (req) => similar(app.store.require(), req.body),
  );

  app.post<{ Body: UserBody }>(
    '/recommend/user',
    {
      schema: {
        summary: "A listener's recommendations (hybrid, cf, content or popularity)",
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            user_id: userIdSchema(app, 'a listener id (one train-recs did not see is a cold start)'),
            k: kRecs,
            model: { type: 'string', enum: [...REC_MODELS], default: 'hybrid', description: 'hybrid (default): ALS and content blended by history size; cf: ALS; content: profile cosine; popularity: most played' },
            exclude: { ...exclude, default: [] },
          },
          required: ['user_id'],
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            properties: {
              user_id: { type: 'string' },
              known_user: { type: 'boolean', description: 'whether recs/user_ids.json lists the listener' },
              model: { type: 'string', enum: [...REC_MODELS], description: 'the model asked for (each item says which one picked it)' },
              method: {
                type: 'string',
                enum: ['exact', 'candidates'],
                description: 'exact: content and hybrid scored every track (as Python does); candidates: an approximate backend (HNSW, pgvector) on a catalogue larger than RECS_CANDIDATES gave content its top k and hybrid the union of the CF and content top RECS_CANDIDATES, scored exactly',
              },
              items: {
                type: 'array',
                items: trackItem('the score of the model that picked the track (popularity: its count or trending score)', {
                  enum: ['cf', 'content', 'hybrid', 'popularity'],
                  description: 'the model that picked it: the one asked for, or content / popularity for a cold start or a listener without positives',
                }),
              },
            },
            required: ['user_id', 'known_user', 'model', 'method', 'items'],
          },
          ...errorResponses,
        },
      },
    },
    async (req) => recommendUser(app.store.require(), app.feedback.reader, req.body, app.config.recsCandidates),
  );
};

export default recommend;
