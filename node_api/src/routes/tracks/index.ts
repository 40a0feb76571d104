/**
 * GET /tracks/:trackId/nearest and GET /tracks/:trackId/composer-eval: nearest neighbours of a catalogue
 * track (never itself), and the composer-retrieval metrics of that one query. /nearest says which path answered
 * (`method`) and which similarity ordered the hits (`ranking`: a re-ranked neighbour table's method, or cosine).
 */

import type { FastifyPluginAsync } from 'fastify';

import { composerEval, nearestRanked, rowOf, type RankedRows } from '../../lib/search.js';
import { writeNearestBody } from '../../lib/nearestBody.js';
import { publicTrack } from '../../lib/trackView.js';
import { errorResponses, hitSchema, kSchema, rankingSchema, trackParams, trackSummary as trackSummarySchema } from '../schemas.js';

interface Params {
  trackId: string;
}
interface NearestQuery {
  k: number;
  exclude_same_album: boolean;
  composer?: string;
}
interface EvalQuery {
  k: number;
  exclude_same_album: boolean;
}

const JSON_UTF8 = 'application/json; charset=utf-8';

const excludeSameAlbum = { type: 'boolean', default: false, description: "skip tracks from the query's album" } as const;

/** 200 body of /nearest: the shape writeNearestBody writes (exported for the tests that validate it). */
export const nearestResponse200 = {
  type: 'object',
  additionalProperties: false,
  properties: {
    query: trackSummarySchema,
    k: { type: 'integer' },
    method: {
      type: 'string',
      description: 'the path that answered: "precomputed" (the neighbour table), or the backend search ("hnsw", "exact", "pgvector", "exact (composer subset)") when the filters left fewer than k tracks of the table or k exceeds its k',
    },
    ranking: rankingSchema,
    filters: {
      type: 'object',
      additionalProperties: false,
      properties: { exclude_same_album: { type: 'boolean' }, composer: { type: ['string', 'null'], description: 'the composer filter as given' } },
      required: ['exclude_same_album', 'composer'],
    },
    hits: { type: 'array', items: hitSchema },
  },
  required: ['query', 'k', 'method', 'ranking', 'filters', 'hits'],
} as const;

const nearestSchema = {
  summary: 'Nearest neighbours of a track (self excluded)',
  params: trackParams,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      k: kSchema,
      exclude_same_album: excludeSameAlbum,
      composer: {
        type: 'string',
        minLength: 1,
        maxLength: 256,
        description: "only tracks by this composer: its display name or its standardised key (composer_key), ignoring case and surrounding spaces (e.g. 'Debussy, Claude' or 'claude debussy')",
      },
    },
  },
  response: {
    200: nearestResponse200,
    ...errorResponses,
  },
} as const;

const metricsSchema = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    precision_at_k: { type: 'number' },
    hit_rate_at_k: { type: 'number' },
    ndcg_at_k: { type: 'number' },
    mrr: { type: 'number', description: '1 / rank of the first relevant track in the full ranking (the MRR term, as in eval_results.json)' },
  },
} as const;

const evalSchema = {
  summary: "Composer-retrieval metrics of one query track (exact search, as the research job's evaluation)",
  params: trackParams,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { k: kSchema, exclude_same_album: excludeSameAlbum },
  },
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      properties: {
        query: trackSummarySchema,
        k: { type: 'integer' },
        exclude_same_album: { type: 'boolean' },
        search: { const: 'exact' },
        relevance: { const: 'same_standardized_composer' },
        n_relevant_candidates: { type: 'integer' },
        metrics: metricsSchema,
        reason: { type: ['string', 'null'], enum: ['missing_composer', 'no_other_track_by_composer', null] },
        hits: {
          type: 'array',
          items: { ...hitSchema, properties: { ...hitSchema.properties, relevant: { type: 'boolean' } }, required: [...hitSchema.required, 'relevant'] },
        },
      },
      required: ['query', 'k', 'exclude_same_album', 'search', 'relevance', 'n_relevant_candidates', 'metrics', 'reason', 'hits'],
    },
    ...errorResponses,
  },
} as const;

const tracks: FastifyPluginAsync = async (app) => {
  // Not an async handler: a table answer is written and returned synchronously (no promise per request); the
  // body is bytes from writeNearestBody (the shape nearestSchema's 200 documents), so Fastify sends it as is.
  app.get<{ Params: Params; Querystring: NearestQuery }>('/tracks/:trackId/nearest', { schema: nearestSchema }, (req, reply) => {
    const state = app.store.require();
    const row = rowOf(state, req.params.trackId);
    const k = req.query.k;
    const sameAlbum = req.query.exclude_same_album;
    const composer = req.query.composer ?? null;
    const body = (res: RankedRows): Buffer =>
      writeNearestBody(state.trackJson, { queryRow: row, k, method: res.method, ranking: res.ranking, excludeSameAlbum: sameAlbum, composer, rows: res.rows, scores: res.scores });
    void reply.type(JSON_UTF8);
    const res = nearestRanked(state, row, k, { excludeSameAlbum: sameAlbum, composer });
    return res instanceof Promise ? res.then(body) : body(res);
  });

  app.get<{ Params: Params; Querystring: EvalQuery }>('/tracks/:trackId/composer-eval', { schema: evalSchema }, async (req) => {
    const state = app.store.require();
    const row = rowOf(state, req.params.trackId);
    const res = composerEval(state, row, req.query.k, req.query.exclude_same_album);
    return {
      query: publicTrack(state.tracks[row]!),
      k: req.query.k,
      exclude_same_album: req.query.exclude_same_album,
      search: 'exact' as const,
      relevance: 'same_standardized_composer' as const,
      ...res,
    };
  });
};

export default tracks;
