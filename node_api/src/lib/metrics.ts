/**
 * Composer-retrieval metrics of one query, exactly as the Python evaluation defines them
 * (`artifact_schema/eval_results.schema.json`): relevant iff the hit has the query's standardised composer;
 * binary gains; Precision@k = relevant hits / k; HitRate@k = 1 if any relevant hit; NDCG@k = DCG / IDCG with
 * DCG = sum_i rel_i / log2(i + 1) over ranks i = 1..k and IDCG from min(number of other candidate tracks by
 * the same composer, k) ideal hits; MRR term = 1 / rank of the first relevant candidate in the FULL ranking
 * (self and excluded rows aside), so it is defined past the top k, as in Python.
 */

export interface QueryMetrics {
  precision_at_k: number;
  hit_rate_at_k: number;
  ndcg_at_k: number;
  mrr: number;
}

/**
 * Metrics of one ranked list.
 * @param relevant relevance flags of the returned hits, best first (at most k are used)
 * @param nRelevant number of candidate tracks (self and excluded rows aside) sharing the query's composer; > 0
 * @param firstRelevantRank 1-based rank of the best-ranked relevant candidate in the full ranking
 */
export function queryMetrics(relevant: readonly boolean[], nRelevant: number, k: number, firstRelevantRank: number): QueryMetrics {
  if (nRelevant <= 0) throw new RangeError(`nRelevant must be > 0 (got ${nRelevant})`);
  let dcg = 0;
  let nHit = 0;
  const top = Math.min(k, relevant.length);
  for (let i = 0; i < top; i++) {
    if (relevant[i]) {
      dcg += 1 / Math.log2(i + 2);
      nHit++;
    }
  }
  let idcg = 0;
  for (let i = 0; i < Math.min(nRelevant, k); i++) idcg += 1 / Math.log2(i + 2);
  return {
    precision_at_k: nHit / k,
    hit_rate_at_k: nHit > 0 ? 1 : 0,
    ndcg_at_k: dcg / idcg,
    mrr: 1 / firstRelevantRank,
  };
}
