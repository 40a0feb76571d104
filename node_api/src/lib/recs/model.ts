/**
 * The loaded recommenders of one version folder (recs/, written by research-job train-recs): the ALS factors,
 * each listener's training pairs as CSR rows, the popularity lists and the hybrid's parameters, all by catalogue
 * row (row i is track_ids.json[i], as the embeddings). Built and checked by `readRecs` (load.ts); immutable.
 */

/** The listening events, and the confidence weight train-recs gave each (recs_meta.json's event_weights). */
export const EVENTS = ['play', 'like', 'skip', 'dislike'] as const;
export type ListeningEvent = (typeof EVENTS)[number];
export type EventWeights = Readonly<Record<ListeningEvent, number>>;

export interface RecsModel {
  /** recs/recs_meta.json's path (for messages) */
  readonly metaFile: string;
  readonly userIds: readonly string[];
  /** row of each listener in the user files */
  readonly userRow: ReadonlyMap<string, number>;
  readonly users: number;
  readonly factors: number;
  /** users x factors, row-major */
  readonly userFactors: Float32Array;
  /** tracks x factors, row-major (row i is track row i; all zero for a track without a training positive) */
  readonly itemFactors: Float32Array;
  /** cf scores of every track for a float64 user vector (one reused buffer: read it before the next call) */
  readonly itemScores: (userVector: Float64Array) => Float64Array;
  /** CSR of each listener's training pairs: entries offsets[u] .. offsets[u + 1] of items / weights */
  readonly offsets: Int32Array;
  /** track rows, ascending within a listener */
  readonly items: Int32Array;
  /** confidence of each pair: > 0 positive, < 0 negative */
  readonly weights: Float32Array;
  /** the trending score of every track row (recs/popularity.json's trending list; 0 for a track off the list) */
  readonly trending: Float64Array;
  readonly cfWeight: number;
  readonly lightUserEvents: number;
  readonly eventWeights: EventWeights;
}
