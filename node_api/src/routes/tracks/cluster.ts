/**
 * GET /tracks/:trackId/cluster: the track's cluster in eval/clusters.json (research-job report's seeded
 * KMeans): its number and name (the dominant label value), the track's confidence, the cluster's size,
 * dominant share and top tags, and how the clusters were made (method, k, label).
 */

import type { FastifyPluginAsync } from 'fastify';

import { HttpError } from '../../lib/errors.js';
import { rowOf } from '../../lib/search.js';
import { errorResponses, trackParams } from '../schemas.js';

interface Params {
  trackId: string;
}

const clusterSchema = {
  summary: "The track's cluster (eval/clusters.json, written by research-job report)",
  params: trackParams,
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      properties: {
        track_id: { type: 'string' },
        cluster: { type: 'integer', minimum: 0 },
        name: { type: 'string', description: "the dominant label value of the cluster's labelled tracks ('' for none)" },
        confidence: { type: 'number', minimum: 0, maximum: 1, description: "the track's confidence in its cluster (clusters.json's `confidence` says how it is computed; 1/k: halfway between centres, 1: on its centre)" },
        n_tracks: { type: 'integer', minimum: 0, description: 'tracks in the cluster' },
        dominant_share: { type: 'number', minimum: 0, maximum: 1, description: "share of the cluster's labelled tracks that have the dominant value" },
        method: { type: 'string' },
        k: { type: 'integer' },
        label: { type: 'string', description: 'the metadata column the clusters are named by' },
        top_tags: {
          type: 'array',
          description: "the tags the cluster's tracks score highest (empty when the version has no tag scores)",
          items: {
            type: 'object',
            additionalProperties: false,
            properties: { tag: { type: 'string' }, score: { type: 'number' } },
            required: ['tag', 'score'],
          },
        },
      },
      required: ['track_id', 'cluster', 'name', 'confidence', 'n_tracks', 'dominant_share', 'method', 'k', 'label', 'top_tags'],
    },
    ...errorResponses,
  },
} as const;

const clusterRoute: FastifyPluginAsync = async (app) => {
  app.get<{ Params: Params }>('/tracks/:trackId/cluster', { schema: clusterSchema }, async (req) => {
    const state = app.store.require();
    const row = rowOf(state, req.params.trackId);
    const feature = state.features.clusters;
    if (!feature.on) throw new HttpError(404, feature.reason);
    const c = feature.value;
    const cluster = c.clusterOfRow[row]!;
    if (cluster === -1) throw new HttpError(404, `Track '${req.params.trackId}' has no cluster: ${c.file} of ${state.artifactVersion} does not list it`);
    const entry = c.clusters.get(cluster)!;
    return {
      track_id: req.params.trackId,
      cluster,
      name: entry.name,
      confidence: c.confidenceOfRow[row]!,
      n_tracks: entry.n_tracks,
      dominant_share: entry.dominant_share,
      method: c.method,
      k: c.k,
      label: c.label,
      top_tags: entry.top_tags ?? [],
    };
  });
};

export default clusterRoute;
