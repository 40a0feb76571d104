/**
 * The loaded state: one immutable object holding everything a request needs (embeddings, ids, metadata,
 * backends, sidecars, measured recall). The store keeps exactly one reference to it; routes read that
 * reference once per request, so a later hot reload swaps a fully loaded state atomically.
 */

import type { ExactBackend } from './backends/exact.js';
import type { VectorBackend } from './backends/types.js';
import type { CatalogIndex } from './catalogSearch.js';
import type { NeighborTable } from './neighbors.js';
import type { Feature, OptionalFeatures } from './optional.js';
import type { RecsModel } from './recs/model.js';
import type { TrackJson } from './nearestBody.js';
import type { EmbeddingsMeta, EvalResults, IndexEntry, IndexMeta, TrackRow } from './types.js';

/** Recall of the ANN path at one ef. */
export interface RecallRung {
  ef: number;
  recall_at_5: number;
  recall_at_10: number;
}

export interface RecallReport {
  sample_size: number;
  seed: number;
  target_recall_at_5: number;
  /** the ef chosen (the smallest of the ladder reaching the target, else the last tried) */
  ef: number;
  ef_tried: number[];
  /** every ef tried with its recall, in order */
  ladder: RecallRung[];
  /** where the exact top-10 of the sample came from */
  truth: 'neighbors table' | 'exact scan';
  truth_sec: number;
  recall_at_5: number;
  recall_at_10: number;
  measure_sec: number;
}

export interface LoadedState {
  readonly artifactVersion: string;
  readonly source: string;
  /** the S3 release loaded (null for a local folder) and its manifest content digest */
  readonly release: string | null;
  readonly contentSha256: string | null;
  readonly loadedAt: string;
  readonly loadSec: number;
  readonly dim: number;
  readonly count: number;
  readonly embeddings: Float32Array;
  readonly embeddingsSha256: string;
  readonly trackIds: readonly string[];
  readonly rowById: ReadonlyMap<string, number>;
  /** metadata of row i */
  readonly tracks: readonly TrackRow[];
  /** each row's public fields pre-rendered as JSON: the /nearest response is written from it */
  readonly trackJson: TrackJson;
  /** album index of each row, for zero-allocation same-album exclusion */
  readonly albumOfRow: Int32Array;
  readonly albumSize: Int32Array;
  /** rows (ascending) of each standardised composer (composer_key): what composer-eval's relevance uses */
  readonly composerRows: ReadonlyMap<string, Int32Array>;
  /** rows (ascending) a `composer` filter value finds, by the value normalised (normalizeComposer): every key and display name */
  readonly composerFilterRows: ReadonlyMap<string, Int32Array>;
  readonly embeddingsMeta: EmbeddingsMeta;
  readonly indexMeta: IndexMeta | null;
  readonly hnswEntry: IndexEntry | null;
  readonly evalResults: EvalResults | null;
  readonly exact: ExactBackend;
  readonly backend: VectorBackend;
  readonly recall: RecallReport | null;
  /** index/neighbors.i32 when loaded (NEIGHBORS_TABLE): /nearest answers k <= its k from it */
  readonly neighbors: NeighborTable | null;
  /** every row's searchable fields, normalised (GET /tracks?q=) */
  readonly catalog: CatalogIndex;
  /** the page's optional features: report, figures, clusters, previews (each on, or off with the reason) */
  readonly features: OptionalFeatures;
  /** the recommenders of recs/ (train-recs), or why they are off (the recommendation endpoints' 503) */
  readonly recs: Feature<RecsModel>;
  /** the cosine of every row with a float64 query, by the exact scan's kernel (one reused buffer: read it before the next call) */
  readonly scoreAll: (q: Float64Array) => Float64Array;
}

/** Row `row` of the embeddings as a float64 query vector. */
export function rowVector(state: LoadedState, row: number): Float64Array {
  const q = new Float64Array(state.dim);
  const base = row * state.dim;
  for (let d = 0; d < state.dim; d++) q[d] = state.embeddings[base + d]!;
  return q;
}
