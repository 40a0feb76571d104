/**
 * The vector backend interface. A backend returns the top-k rows for a query vector under the ranking rule
 * (exact float64 score descending, ties by ascending row), skipping excluded rows. `exact` scans the
 * Float32Array; `hnsw` asks hnswlib for candidates and re-scores them exactly. `pgvector` asks PostgreSQL (and
 * answers track queries with the shared SQL); routes never see which one runs.
 */

import type { Hit, RowExclusion } from '../exact.js';

export type BackendKind = 'exact' | 'hnsw' | 'pgvector';

export interface VectorBackend {
  readonly kind: BackendKind;
  /**
   * Top-k rows by exact score for `query` (float64, same space as the stored rows), excluded rows skipped.
   * Returns fewer than k hits only when fewer rows remain.
   */
  search(query: Float64Array, k: number, exclude: RowExclusion): Promise<Hit[]>;
  /**
   * Optional: top-k of the catalogue track `trackId` with the backend's own self-exclusion by track_id (and of
   * its album when `excludeSameAlbum`); pgvector implements it with the shared SQL. Routes prefer it.
   */
  searchTrack?(trackId: string, k: number, excludeSameAlbum: boolean): Promise<Hit[]>;
  /** Parameters in use, for GET /models. */
  describe(): Record<string, unknown>;
}
