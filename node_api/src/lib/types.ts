/**
 * TypeScript views of the artifact files (the fields the API uses). The JSON Schemas in `artifact_schema/`
 * are the authority; every object is validated against them before it is cast to one of these types.
 */

export interface TrackRow {
  track_id: string;
  album_id: string;
  track_no: number | null;
  title: string;
  composer: string | null;
  audio_s3_key: string;
  duration_sec: number | null;
  composer_raw: string | null;
  composer_missing: boolean;
}

export interface TrackIdsFile {
  schema_version: string;
  count: number;
  track_ids: string[];
}

export interface EmbeddingsMeta {
  schema_version: string;
  artifact_version: string;
  model: {
    name: string;
    version: string;
    weights_sha256: string | null;
    pooling: string;
    layer: string | null;
    params: Record<string, unknown>;
  };
  dim: number;
  count: number;
  normalization: string;
  pooling: string;
  sample_rate: number;
  postprocess: { type: string; file: string | null; sha256: string | null; fitted_on: number };
  files: { embeddings: string; embeddings_sha256: string; track_ids: string; track_ids_sha256: string };
  created_at: string;
  code_version: string;
}

export interface IndexEntry {
  name: string;
  library: string;
  library_version: string;
  type: string;
  file: string;
  space: string;
  exact: boolean;
  params: { M?: number; ef_construction?: number; ef_search?: number };
  size_bytes: number;
  sha256: string;
  recall_at_5: number | null;
  recall_at_10?: number | null;
}

/**
 * A re-ranking of the similarity (research_job.rerank): index_meta.json's `neighbors.rerank`, and what a /nearest
 * answer reports as its `ranking` ('cosine' with no params: the plain inner product, eval_results' method "none").
 * The method names are the artifact schema's (the authority: every entry is validated against it).
 */
export interface Ranking {
  method: string;
  params: Record<string, number>;
}

/** index_meta.json's `neighbors`: the precomputed exact top-k table index/neighbors.i32. */
export interface NeighborsEntry {
  file: 'neighbors.i32';
  k: number;
  dtype: 'int32';
  byte_order: 'little';
  exact: true;
  /** plain cosine, or the exact ranking of the re-scored similarity named in `rerank` */
  ranking: 'score_desc_float64_then_row_asc' | 'rerank_score_desc_then_row_asc';
  /** present exactly when ranking is 'rerank_score_desc_then_row_asc' (the schema's if/then/else) */
  rerank?: Ranking;
  self_excluded: true;
  build_sec: number;
  size_bytes: number;
  sha256: string;
}

export interface IndexMeta {
  schema_version: string;
  artifact_version: string;
  metric: string;
  count: number;
  dim: number;
  embeddings_sha256: string;
  recall_queries: number;
  indexes: IndexEntry[];
  neighbors?: NeighborsEntry;
  created_at: string;
  code_version: string;
}

export interface MetricBlock {
  precision_at_k: number;
  hit_rate_at_k: number;
  ndcg_at_k: number;
  mrr: number;
}

export interface EvalResults {
  schema_version: string;
  artifact_version: string;
  model: string;
  k: number;
  embeddings_sha256: string;
  n_tracks: number;
  /** queries and candidates: every track, or a subset (evaluate --tracks) */
  tracks?: 'all' | 'multi_label_albums';
  query_policy: {
    n_excluded_no_other_track: number;
    n_excluded_missing_composer: number;
  };
  overall: { n_queries: number; metrics: MetricBlock | null };
  exclude_same_album: { n_queries: number; metrics: MetricBlock | null };
  per_composer: Array<{ composer: string; n_tracks: number; n_queries: number } & MetricBlock>;
  created_at: string;
  [key: string]: unknown;
}

/** eval/report.json (the fields the API uses): which figures of eval/figures/ the report drew. */
export interface ReportJson {
  schema_version: string;
  artifact_version: string;
  embeddings_sha256: string;
  figures: Array<{ name: string; sha256: string }>;
  headline: { k: number; sentence: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** One cluster of eval/clusters.json. */
export interface ClusterEntry {
  cluster: number;
  name: string;
  dominant_share: number;
  n_tracks: number;
  /** the tags the cluster's tracks score highest (when the version has tag scores) */
  top_tags?: Array<{ tag: string; score: number }>;
}

/** eval/clusters.json: a seeded KMeans cluster and a confidence for every track. */
export interface ClustersFile {
  schema_version: string;
  artifact_version: string;
  model: string;
  embeddings_sha256: string;
  label: string;
  method: string;
  k: number;
  seed: number;
  confidence: string;
  clusters: ClusterEntry[];
  tracks: Array<{ track_id: string; cluster: number; confidence: number }>;
}

/** One preview of previews/previews.json. */
export interface PreviewTrack {
  track_id: string;
  /** `previews/<file name>` (relative to the version folder) */
  file: string;
  start_sec: number;
  duration_sec: number;
  size_bytes: number;
  sha256: string;
}

/** previews/previews.json: the Ogg/Opus excerpts of the catalogue, one file each. */
export interface PreviewsFile {
  schema_version: string;
  artifact_version: string;
  mime_type: string;
  container: string;
  codec: string;
  tracks: PreviewTrack[];
  failed: Array<{ track_id: string; reason: string }>;
  [key: string]: unknown;
}
