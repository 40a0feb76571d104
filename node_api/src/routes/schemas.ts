/** JSON Schemas shared by the routes (request parts and response bodies); they also feed the OpenAPI document. */

export const errorBody = {
  $id: 'ErrorBody',
  type: 'object',
  additionalProperties: false,
  properties: {
    error: { type: 'string', description: 'HTTP reason phrase' },
    message: { type: 'string', description: 'what was wrong, naming the bad value' },
    statusCode: { type: 'integer' },
  },
  required: ['error', 'message', 'statusCode'],
} as const;

export const errorResponses = {
  400: { $ref: 'ErrorBody#' },
  404: { $ref: 'ErrorBody#' },
  503: { $ref: 'ErrorBody#' },
} as const;

/** $id of the shared track id schema (`trackIdShared`), for `{ $ref: 'TrackId#' }` in route schemas. */
export const TRACK_ID_REF = { $ref: 'TrackId#' } as const;

/**
 * The track id schema the routes share, built from the contract's own (SchemaRegistry.trackIdSchema, read from
 * track_ids.schema.json) so the server accepts exactly the ids an artifact may hold.
 */
export function trackIdShared(contract: Record<string, unknown>): Record<string, unknown> {
  const { $id: _i, $schema: _s, ...rest } = contract;
  return { $id: 'TrackId', ...rest, description: 'a track id of the loaded catalogue (track_ids.json), percent-encoded in a path' };
}

/**
 * Characters a path segment may take to carry a track id of `maxLength` code points in its longest form:
 * every code point 4 bytes of UTF-8, each byte percent-encoded as 3 characters (`%F0%9D%84%9E`). The router
 * (find-my-way) measures a decoded segment when it holds a `%` and the raw one otherwise, both at most this.
 */
export function maxEncodedIdLength(maxLength: number): number {
  return maxLength * 4 * 3;
}

export const kSchema = { type: 'integer', minimum: 1, maximum: 100, default: 5, description: 'number of neighbours (1..100)' } as const;

/** A track's composer fields (lib/trackView.ts): the display name, and the standardised key relevance uses. */
const composerFields = {
  composer: {
    type: ['string', 'null'],
    description: "display name: the catalogue's string as exported (composer_raw), or the standardised key when the catalogue has none; null when the composer is missing",
  },
  composer_key: {
    type: ['string', 'null'],
    description: 'standardised composer (what composer-eval counts as relevant); null when the composer is missing',
  },
} as const;

export const trackSummary = {
  type: 'object',
  additionalProperties: false,
  properties: {
    track_id: { type: 'string' },
    title: { type: 'string' },
    ...composerFields,
    album_id: { type: 'string' },
  },
  required: ['track_id', 'title', 'composer', 'composer_key', 'album_id'],
} as const;

export const hitSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    rank: { type: 'integer', minimum: 1 },
    track_id: { type: 'string' },
    score: {
      type: 'number',
      description: 'cosine similarity (float64 inner product of L2-normalised rows), also when a re-ranking ordered the hits (see the response\'s ranking)',
    },
    title: { type: 'string' },
    ...composerFields,
    album_id: { type: 'string' },
  },
  required: ['rank', 'track_id', 'score', 'title', 'composer', 'composer_key', 'album_id'],
} as const;

export const trackParams = {
  type: 'object',
  additionalProperties: false,
  properties: { trackId: TRACK_ID_REF },
  required: ['trackId'],
} as const;

/** A re-ranking's parameters as index_meta.json records them (k: neighbourhood; n, alpha: query expansion). */
const rerankParams = {
  type: 'object',
  additionalProperties: { type: 'number' },
  description: "the method's parameters as index_meta.json's neighbors.rerank.params records them (k: neighbourhood of csls and local_scaling; n, alpha: query expansion); {} for cosine",
} as const;

/** What ordered a /nearest answer: plain cosine, or the re-ranking a neighbour table was built with. */
export const rankingSchema = {
  type: 'object',
  additionalProperties: false,
  description:
    'the similarity that ordered the hits. "cosine": plain cosine (eval_results\' rerank method "none"): every backend answer, and a plain table\'s. ' +
    'A re-ranking method (csls, mutual_proximity, local_scaling, qe_avg, qe_alpha; index_meta.schema.json): the hits are the table\'s list in its order, ' +
    "the ranking the research job evaluated (method \"precomputed\" only; a fallback to the backend is plain cosine). Scores are the cosine either way, so a re-ranked answer's scores need not descend",
  properties: {
    method: { type: 'string', description: '"cosine", or the re-ranking method of index_meta.json neighbors.rerank' },
    params: rerankParams,
  },
  required: ['method', 'params'],
} as const;

/** index_meta.json's neighbors.rerank (null for a plain table), as GET /models reports it. */
export const rerankSchema = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { method: { type: 'string' }, params: rerankParams },
  required: ['method', 'params'],
} as const;
