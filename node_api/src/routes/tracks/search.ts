/**
 * GET /tracks?q=&limit=: catalogue search by title, composer (display name or standardised key) or album id
 * (lib/catalogSearch.ts: NFKC + case-folded terms, every one a substring of a field; titles starting with the
 * query first, then catalogue order), each track with whether it has an audio preview.
 */

import type { FastifyPluginAsync } from 'fastify';

import { MAX_TERMS, searchCatalog } from '../../lib/catalogSearch.js';
import { HttpError } from '../../lib/errors.js';
import { publicTrack } from '../../lib/trackView.js';
import { errorResponses, trackSummary } from '../schemas.js';

interface SearchQuery {
  q: string;
  limit: number;
}

/** A search hit: the track's public fields and whether GET /tracks/:trackId/preview has audio for it. */
const searchTrack = {
  ...trackSummary,
  properties: { ...trackSummary.properties, has_preview: { type: 'boolean', description: 'whether GET /tracks/{trackId}/preview serves audio for it' } },
  required: [...trackSummary.required, 'has_preview'],
} as const;

const searchSchema = {
  summary: 'Search the catalogue by title, composer or album id',
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      q: {
        type: 'string',
        minLength: 1,
        maxLength: 200,
        description: `1..200 characters: whitespace-separated terms (at most ${MAX_TERMS} distinct), each matched, ignoring case and Unicode compatibility forms (NFKC), as a substring of the title, the composer's display name, composer_key or album_id`,
      },
      limit: { type: 'integer', minimum: 1, maximum: 50, default: 20, description: 'most tracks returned (1..50)' },
    },
    required: ['q'],
  },
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      properties: {
        q: { type: 'string', description: 'the query as given' },
        total: { type: 'integer', description: 'tracks matching (all of them, not only those returned)' },
        limit: { type: 'integer' },
        tracks: { type: 'array', items: searchTrack, description: 'tracks whose title starts with the query first, then catalogue order' },
      },
      required: ['q', 'total', 'limit', 'tracks'],
    },
    ...errorResponses,
  },
} as const;

const searchRoute: FastifyPluginAsync = async (app) => {
  app.get<{ Querystring: SearchQuery }>('/tracks', { schema: searchSchema }, async (req) => {
    const state = app.store.require();
    const { q, limit } = req.query;
    let found;
    try {
      found = searchCatalog(state.catalog, q, limit);
    } catch (err) {
      if (err instanceof RangeError) throw new HttpError(400, err.message);
      throw err;
    }
    const previews = state.features.previews;
    return {
      q,
      total: found.total,
      limit,
      tracks: found.rows.map((row) => ({ ...publicTrack(state.tracks[row]!), has_preview: previews.on && previews.value.entry(row) !== undefined })),
    };
  });
};

export default searchRoute;
