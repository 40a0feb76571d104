/**
 * JSON Schemas shared by the recommendation routes (recommend, radio, mix, feedback): a listener id (the track id
 * contract's pattern and length: both are safe ids), a track list item, and a pick's source.
 */

import type { FastifyInstance } from 'fastify';

import { TRACK_ID_REF } from '../schemas.js';

/** A listener id: the same safe-id rules as a track id (the contract's TrackId schema, registered by the app). */
export function userIdSchema(app: FastifyInstance, description: string): Record<string, unknown> {
  const { $id: _i, description: _d, ...rules } = app.getSchema('TrackId') as Record<string, unknown>;
  return { ...rules, description };
}

export const trackIdList = (description: string, minItems: number, maxItems: number) =>
  ({ type: 'array', items: TRACK_ID_REF, minItems, maxItems, description }) as const;

const trackFields = {
  track_id: { type: 'string' },
  title: { type: 'string' },
  composer: { type: ['string', 'null'], description: 'display name (see GET /tracks/{trackId}/nearest); null when missing' },
  composer_key: { type: ['string', 'null'], description: 'standardised composer; null when missing' },
  album_id: { type: 'string' },
} as const;
const trackRequired = ['track_id', 'title', 'composer', 'composer_key', 'album_id', 'score'] as const;

/** A track of an answer with its score. */
export function trackItem(scoreDescription: string, source?: { enum: readonly string[]; description: string }) {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...trackFields,
      score: { type: 'number', description: scoreDescription },
      ...(source ? { source: { type: 'string', enum: [...source.enum], description: source.description } } : {}),
    },
    required: source ? [...trackRequired, 'source'] : [...trackRequired],
  } as const;
}

export const kRecs = { type: 'integer', minimum: 1, maximum: 100, default: 20, description: 'number of tracks (1..100)' } as const;
export const diversitySchema = (dflt: number) =>
  ({ type: 'number', minimum: 0, maximum: 1, default: dflt, description: 'MMR diversity: lambda = 1 - diversity (0: plain similarity)' }) as const;
