/**
 * GET /models: what is loaded — model, dim, N, artifact version, created_at, the vector backend with its
 * parameters (ef in use), the recall@5/@10 of the HNSW path against exact search measured at start-up, and
 * whether the precomputed neighbour table answers /nearest (its k, its ranking and re-ranking, requests served
 * from it and passed on), which of the page's optional features the version has (report, clusters, previews:
 * counts, or why each is off), and the recommenders of recs/ (listeners, factors, the hybrid's parameters, how
 * /recommend/user scores content and hybrid on this catalogue, whether a feedback store is configured).
 * Unauthenticated: it names the served version, never a path on the server's disk.
 */

import type { FastifyPluginAsync } from 'fastify';

import { COSINE_ORDER } from '../../lib/neighbors.js';
import type { Feature, OptionalFeatures } from '../../lib/optional.js';
import { contentScoring } from '../../lib/recs/serve.js';
import type { LoadedState } from '../../lib/state.js';
import { rerankSchema } from '../schemas.js';

const nullableNumber = { type: ['number', 'null'] } as const;

const modelsResponse = {
  type: 'object',
  additionalProperties: false,
  properties: {
    artifact_version: { type: 'string' },
    source: {
      type: 'string',
      description: 'where the served version came from, by name (never a path): "local <artifact_version>" or "s3 <artifact_version>/<release>"',
    },
    release: { type: ['string', 'null'], description: 'S3 release served (null for a local folder)' },
    content_sha256: { type: ['string', 'null'], description: "the release manifest's content digest" },
    loaded_at: { type: 'string' },
    load_sec: { type: 'number' },
    model: {
      type: 'object',
      additionalProperties: false,
      properties: {
        name: { type: 'string' },
        version: { type: 'string' },
        weights_sha256: { type: ['string', 'null'] },
        pooling: { type: 'string' },
        layer: { type: ['string', 'null'] },
      },
      required: ['name', 'version', 'weights_sha256', 'pooling', 'layer'],
    },
    dim: { type: 'integer' },
    count: { type: 'integer' },
    normalization: { type: 'string' },
    postprocess: { type: 'string', description: 'transform a POST /search vector must already have had' },
    created_at: { type: 'string' },
    embeddings_sha256: { type: 'string' },
    backend: { type: 'string', enum: ['exact', 'hnsw', 'pgvector'] },
    pgvector: {
      type: ['object', 'null'],
      additionalProperties: false,
      properties: {
        type: { type: 'string' },
        version: { type: 'string' },
        table: { type: 'string' },
        ef_search: { type: 'integer' },
        exact_reruns: { type: 'integer', description: 'queries rerun as exact scans since load (filters left < k ANN rows)' },
        m: { type: 'integer' },
        ef_construction: { type: 'integer' },
        content_sha256: { type: 'string' },
      },
    },
    exact_kernel: { type: 'string', enum: ['wasm-simd', 'js'], description: 'kernel of full exact scans' },
    index: {
      type: ['object', 'null'],
      additionalProperties: false,
      properties: {
        name: { type: 'string' },
        type: { type: 'string' },
        space: { type: 'string' },
        library_version: { type: 'string' },
        file: { type: 'string' },
        M: { type: 'integer' },
        ef_construction: { type: 'integer' },
        ef_search_recorded: { type: ['integer', 'null'] },
        ef: { type: 'integer', description: 'ef in use' },
        recorded_recall_at_5: nullableNumber,
        recorded_recall_at_10: nullableNumber,
        created_at: { type: 'string' },
      },
    },
    recall: {
      type: ['object', 'null'],
      additionalProperties: false,
      description: 'recall of the served ANN path (HNSW or pgvector) against exact search, measured at load (self excluded)',
      properties: {
        sample_size: { type: 'integer' },
        seed: { type: 'integer' },
        target_recall_at_5: { type: 'number' },
        ef: { type: 'integer' },
        ef_tried: { type: 'array', items: { type: 'integer' } },
        ladder: {
          type: 'array',
          description: 'every ef tried, in order, with its recall (the smallest reaching the target is kept)',
          items: {
            type: 'object',
            additionalProperties: false,
            properties: { ef: { type: 'integer' }, recall_at_5: { type: 'number' }, recall_at_10: { type: 'number' } },
            required: ['ef', 'recall_at_5', 'recall_at_10'],
          },
        },
        truth: { type: 'string', enum: ['neighbors table', 'exact scan'], description: 'source of the exact top-10 of the sample' },
        truth_sec: { type: 'number' },
        recall_at_5: { type: 'number' },
        recall_at_10: { type: 'number' },
        measure_sec: { type: 'number' },
      },
    },
    neighbors: {
      type: 'object',
      additionalProperties: false,
      description:
        'index/neighbors.i32, the precomputed exact top-k table: /nearest with k <= its k is answered from it (method "precomputed", in the order of its ranking) when enough tracks pass the filters',
      properties: {
        loaded: { type: 'boolean' },
        k: { type: ['integer', 'null'], description: 'columns of the table (null when not loaded)' },
        ranking: {
          type: ['string', 'null'],
          description: 'index_meta.json neighbors.ranking: "score_desc_float64_then_row_asc" (plain cosine) or "rerank_score_desc_then_row_asc" (see rerank); null when not loaded',
        },
        rerank: { ...rerankSchema, description: 'the re-ranking that ordered the table (index_meta.json neighbors.rerank: method and params); null for a plain table or when not loaded' },
        served: { type: 'integer', description: '/nearest requests answered from the table since load' },
        fallbacks: { type: 'integer', description: '/nearest requests passed on to the backend (k > table k, or fewer than k tracks left by the filters)' },
      },
      required: ['loaded', 'k', 'ranking', 'rerank', 'served', 'fallbacks'],
    },
    eval_created_at: { type: ['string', 'null'] },
    recs: {
      type: 'object',
      additionalProperties: false,
      description: 'the recommenders of recs/ (research-job train-recs) behind /recommend/user, /daily-mix and a listener radio, or why they are off',
      properties: {
        loaded: { type: 'boolean' },
        reason: { type: ['string', 'null'], description: 'why they are off: the 503 of the listener endpoints (null when loaded)' },
        users: { type: ['integer', 'null'], description: 'listeners of recs/user_ids.json' },
        factors: { type: ['integer', 'null'], description: 'ALS factors' },
        cf_weight: nullableNumber,
        light_user_events: nullableNumber,
        scoring: {
          type: ['string', 'null'],
          enum: ['exact', 'candidates', null],
          description: "how /recommend/user scores content and hybrid here: exact scans, or the backend's candidates (an approximate backend and more tracks than candidates)",
        },
        candidates: { type: 'integer', description: 'RECS_CANDIDATES: candidates per model of the candidates scoring (0: always exact)' },
        feedback_store: { type: 'boolean', description: 'whether FEEDBACK_DATABASE_URL is set (POST /feedback stores; the listener endpoints read it)' },
      },
      required: ['loaded', 'reason', 'users', 'factors', 'cf_weight', 'light_user_events', 'scoring', 'candidates', 'feedback_store'],
    },
    features: {
      type: 'object',
      additionalProperties: false,
      description: "the page's optional features of the loaded version: each loaded, with its count, or off with the reason its routes answer 404 with",
      properties: {
        report: featureSchema('GET /report (eval/report.html)', null),
        figures: featureSchema('GET /report/figures/{name} (the figures eval/report.json names)', 'figures listed'),
        clusters: featureSchema('GET /tracks/{trackId}/cluster (eval/clusters.json)', 'tracks with a cluster'),
        previews: featureSchema('GET /tracks/{trackId}/preview (previews/previews.json)', 'tracks with a preview'),
      },
      required: ['report', 'figures', 'clusters', 'previews'],
    },
  },
} as const;

/** Schema of one feature's entry in /models: loaded, count, and why it is off. */
function featureSchema(what: string, counted: string | null) {
  return {
    type: 'object',
    additionalProperties: false,
    description: what,
    properties: {
      loaded: { type: 'boolean' },
      count: { type: ['integer', 'null'], description: counted ? `${counted} (null when not loaded)` : 'null (nothing to count)' },
      reason: { type: ['string', 'null'], description: 'why it is off (null when loaded)' },
    },
    required: ['loaded', 'count', 'reason'],
  } as const;
}

/** One feature's entry of /models. */
function featureView<T>(f: Feature<T>, count: (value: T) => number | null): { loaded: boolean; count: number | null; reason: string | null } {
  return f.on ? { loaded: true, count: count(f.value), reason: null } : { loaded: false, count: null, reason: f.reason };
}

function featuresView(f: OptionalFeatures) {
  return {
    report: featureView(f.reportHtml, () => null),
    figures: featureView(f.figures, (m) => m.size),
    clusters: featureView(f.clusters, (c) => c.count),
    previews: featureView(f.previews, (p) => p.count),
  };
}

/** The recs entry of /models. */
function recsView(s: LoadedState, candidates: number, feedbackStore: boolean) {
  const base = { candidates, feedback_store: feedbackStore };
  if (!s.recs.on) return { loaded: false, reason: s.recs.reason, users: null, factors: null, cf_weight: null, light_user_events: null, scoring: null, ...base };
  const r = s.recs.value;
  return { loaded: true, reason: null, users: r.users, factors: r.factors, cf_weight: r.cfWeight, light_user_events: r.lightUserEvents, scoring: contentScoring(s, candidates), ...base };
}

const models: FastifyPluginAsync = async (app) => {
  app.get(
    '/models',
    { schema: { summary: 'The loaded model, index and measured recall', response: { 200: modelsResponse, 503: { $ref: 'ErrorBody#' } } } },
    async () => {
      const s = app.store.require();
      const m = s.embeddingsMeta;
      const d = s.backend.describe();
      return {
        artifact_version: s.artifactVersion,
        source: s.release === null ? `local ${s.artifactVersion}` : `s3 ${s.artifactVersion}/${s.release}`,
        release: s.release,
        content_sha256: s.contentSha256,
        loaded_at: s.loadedAt,
        load_sec: s.loadSec,
        model: { name: m.model.name, version: m.model.version, weights_sha256: m.model.weights_sha256, pooling: m.pooling, layer: m.model.layer },
        dim: s.dim,
        count: s.count,
        normalization: m.normalization,
        postprocess: m.postprocess.type,
        created_at: m.created_at,
        embeddings_sha256: s.embeddingsSha256,
        backend: s.backend.kind,
        exact_kernel: s.exact.kernel,
        pgvector: s.backend.kind === 'pgvector' ? d : null,
        index:
          s.backend.kind === 'hnsw' && s.hnswEntry
            ? {
                name: s.hnswEntry.name,
                type: s.hnswEntry.type,
                space: s.hnswEntry.space,
                library_version: s.hnswEntry.library_version,
                file: s.hnswEntry.file,
                M: d.M as number,
                ef_construction: d.ef_construction as number,
                ef_search_recorded: (d.ef_search_recorded as number | null) ?? null,
                ef: d.ef as number,
                recorded_recall_at_5: s.hnswEntry.recall_at_5,
                recorded_recall_at_10: s.hnswEntry.recall_at_10 ?? null,
                created_at: s.indexMeta!.created_at,
              }
            : null,
        recall: s.recall,
        neighbors: s.neighbors
          ? {
              loaded: true,
              k: s.neighbors.k,
              ranking: s.neighbors.order,
              rerank: s.neighbors.order === COSINE_ORDER ? null : s.neighbors.ranking,
              served: s.neighbors.stats.served,
              fallbacks: s.neighbors.stats.fallbacks,
            }
          : { loaded: false, k: null, ranking: null, rerank: null, served: 0, fallbacks: 0 },
        eval_created_at: s.evalResults?.created_at ?? null,
        recs: recsView(s, app.config.recsCandidates, app.feedback.configured),
        features: featuresView(s.features),
      };
    },
  );
};

export default models;
