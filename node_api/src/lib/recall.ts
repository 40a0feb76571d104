/**
 * Measure, at start-up, the recall of the HNSW search path against exact search on a seeded sample of tracks
 * (self excluded, k = 5 and 10), and choose ef: the ground truth of the sample is computed once (from the
 * precomputed neighbour table when it is loaded with k >= 10 and ranks by plain cosine, else by exact scans), then a ladder of ef values
 * is evaluated, 16, 32, 64, ... (powers of two from the smallest >= the candidates a k = 5 request fetches) up
 * to the cap, and the smallest ef whose recall@5 reaches the target is kept (the cap when none does). Every
 * rung is reported. A fixed ef (HNSW_EF) is measured but not tuned; with an empty sample nothing is tuned.
 */

import type { ExactBackend } from './backends/exact.js';
import type { HnswBackend } from './backends/hnsw.js';
import { queryExclusion } from './exact.js';
import { COSINE_ORDER, type NeighborTable } from './neighbors.js';
import type { RecallReport, RecallRung } from './state.js';
import { sampleRows } from './random.js';

export interface RecallOptions {
  sampleSize: number;
  seed: number;
  target: number;
  /** fixed ef (no tuning) when set */
  fixedEf: number | null;
  /** ef kept when there is nothing to measure (empty sample) */
  startEf: number;
  maxEf: number;
  /** the loaded neighbour table: its first 10 columns are the ground truth when k >= 10 and it ranks by cosine (not a re-ranked one) */
  table?: NeighborTable | null;
}

function rowQuery(emb: Float32Array, dim: number, row: number): Float64Array {
  const q = new Float64Array(dim);
  for (let d = 0; d < dim; d++) q[d] = emb[row * dim + d]!;
  return q;
}

/** ef values to try: powers of two from the smallest >= `from`, below `max`, then `max` (always the last). */
export function efLadder(from: number, max: number): number[] {
  const out: number[] = [];
  let ef = 1;
  while (ef < from) ef *= 2;
  for (; ef < max; ef *= 2) out.push(ef);
  out.push(max);
  return out;
}

/**
 * Tune and measure. Leaves `hnsw` set to the chosen ef.
 * @returns the report exposed by GET /models
 */
export function tuneRecall(
  hnsw: HnswBackend,
  exact: ExactBackend,
  emb: Float32Array,
  dim: number,
  count: number,
  opts: RecallOptions,
): RecallReport {
  const t0 = performance.now();
  const rows = sampleRows(count, opts.sampleSize, opts.seed);
  const kMax = Math.min(10, count - 1);
  const k5 = Math.min(5, kMax);
  const table = opts.table && opts.table.k >= kMax && opts.table.order === COSINE_ORDER ? opts.table : null;
  const truth = rows.map((row) => {
    if (table) return Array.from(table.rows.subarray(row * table.k, row * table.k + kMax));
    const ex = queryExclusion(row);
    return exact.searchSync(rowQuery(emb, dim, row), kMax, ex).map((h) => h.row);
  });
  const truthSec = (performance.now() - t0) / 1000;
  const queries = rows.map((row) => rowQuery(emb, dim, row));
  const overlap = (got: number[], want: number[], k: number): number => {
    const t = new Set(want.slice(0, k));
    return got.filter((r) => t.has(r)).length;
  };
  // recall@5 from k = 5 searches and recall@10 from k = 10 searches: what requests of that k fetch at this ef
  const measure = (ef: number): RecallRung => {
    hnsw.setEf(ef);
    let hit5 = 0;
    let hit10 = 0;
    rows.forEach((row, i) => {
      const ex = queryExclusion(row);
      hit5 += overlap(hnsw.searchSync(queries[i]!, k5, ex).map((h) => h.row), truth[i]!, k5);
      hit10 += overlap(hnsw.searchSync(queries[i]!, kMax, ex).map((h) => h.row), truth[i]!, kMax);
    });
    const n = rows.length;
    return { ef, recall_at_5: n && k5 ? hit5 / (n * k5) : 1, recall_at_10: n && kMax ? hit10 / (n * kMax) : 1 };
  };
  let ladder: number[];
  if (opts.fixedEf !== null) ladder = [opts.fixedEf];
  else if (rows.length === 0) ladder = [opts.startEf];
  else ladder = efLadder(hnsw.fetchSize(5, 1), opts.maxEf);
  const tried: RecallRung[] = [];
  for (const ef of ladder) {
    tried.push(measure(ef));
    if (tried[tried.length - 1]!.recall_at_5 >= opts.target) break;
  }
  const chosen = tried[tried.length - 1]!;
  hnsw.setEf(chosen.ef);
  return {
    sample_size: rows.length,
    seed: opts.seed,
    target_recall_at_5: opts.target,
    ef: chosen.ef,
    ef_tried: tried.map((r) => r.ef),
    ladder: tried,
    truth: table ? 'neighbors table' : 'exact scan',
    truth_sec: truthSec,
    recall_at_5: chosen.recall_at_5,
    recall_at_10: chosen.recall_at_10,
    measure_sec: (performance.now() - t0) / 1000,
  };
}
