/**
 * Measure, at start-up, the recall of the HNSW search path against exact search on a seeded sample of tracks
 * (self excluded, k = 5 and 10), and raise ef until recall@5 reaches the target or the cap.
 */

import type { ExactBackend } from './backends/exact.js';
import type { HnswBackend } from './backends/hnsw.js';
import type { RecallReport } from './state.js';
import { sampleRows } from './random.js';

export interface RecallOptions {
  sampleSize: number;
  seed: number;
  target: number;
  /** fixed ef (no tuning) when set */
  fixedEf: number | null;
  startEf: number;
  maxEf: number;
}

function rowQuery(emb: Float32Array, dim: number, row: number): Float64Array {
  const q = new Float64Array(dim);
  for (let d = 0; d < dim; d++) q[d] = emb[row * dim + d]!;
  return q;
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
  const truth = rows.map((row) => {
    const ex = { has: (r: number) => r === row, size: 1 };
    return exact.searchSync(rowQuery(emb, dim, row), kMax, ex).map((h) => h.row);
  });
  const overlap = (got: number[], want: number[], k: number): number => {
    const t = new Set(want.slice(0, k));
    return got.slice(0, k).filter((r) => t.has(r)).length;
  };
  const measure = (): [number, number] => {
    const k5 = Math.min(5, kMax);
    let hit5 = 0;
    let hit10 = 0;
    rows.forEach((row, i) => {
      const ex = { has: (r: number) => r === row, size: 1 };
      const got = hnsw.searchSync(rowQuery(emb, dim, row), kMax, ex).map((h) => h.row);
      hit5 += overlap(got, truth[i]!, k5);
      hit10 += overlap(got, truth[i]!, kMax);
    });
    const n = rows.length;
    return [n && k5 ? hit5 / (n * k5) : 1, n && kMax ? hit10 / (n * kMax) : 1];
  };
  const tried: number[] = [];
  let ef = opts.fixedEf ?? opts.startEf;
  let r5: number;
  let r10: number;
  for (;;) {
    hnsw.setEf(ef);
    tried.push(ef);
    [r5, r10] = measure();
    if (opts.fixedEf !== null || r5 >= opts.target || ef >= opts.maxEf) break;
    ef = Math.min(opts.maxEf, ef * 2);
  }
  return {
    sample_size: rows.length,
    seed: opts.seed,
    target_recall_at_5: opts.target,
    ef,
    ef_tried: tried,
    recall_at_5: r5,
    recall_at_10: r10,
    measure_sec: (performance.now() - t0) / 1000,
  };
}
