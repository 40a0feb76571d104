/**
 * File names inside one artifact version folder `<root>/v1_model_<MODEL>/`, as written by the research job
 * (`research_job/layout.py`). Only these fixed relative paths are ever read: nothing user-supplied reaches the
 * file system.
 */

export const ARTIFACT_FILES = {
  tracksCsv: 'metadata/tracks_metadata.csv',
  embeddingsF32: 'embeddings/embeddings.f32',
  trackIds: 'embeddings/track_ids.json',
  embeddingsMeta: 'embeddings/embeddings_meta.json',
  hnswIndex: 'index/hnsw.index',
  indexMeta: 'index/index_meta.json',
  neighbors: 'index/neighbors.i32',
  evalResults: 'eval/eval_results.json',
} as const;

/** One of the fixed artifact paths (relative to the version folder). */
export type ArtifactFile = (typeof ARTIFACT_FILES)[keyof typeof ARTIFACT_FILES];

/** Pattern of a version folder name and of `artifact_version` (same as the schemas). */
export const VERSION_PATTERN = /^v[0-9]+_model_[A-Za-z0-9._-]+$/;
