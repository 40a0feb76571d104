/**
 * The HNSW backend: hnswlib-node (bundling hnswlib 0.8.0, the version Python writes with) over
 * `index/hnsw.index`, labels = row indices. hnswlib proposes candidates; every candidate is re-scored exactly
 * from the Float32Array and re-sorted by the ranking rule, so scores equal the exact backend's. The request
 * over-fetches by the number of excluded rows plus a margin (boundary ties), and falls back to the exact scan
 * when hnswlib returns too few usable candidates. The addon takes the query only as a JS Array: one array of
 * length dim is kept per backend and refilled per search (searchKnn copies it synchronously), instead of a new
 * `Array.from(query)` per request.
 */

import hnswlib from 'hnswlib-node';

import { dotRow, exactTopK, sortHits, type Hit, type RowExclusion } from '../exact.js';
import type { VectorBackend } from './types.js';

export class HnswBackend implements VectorBackend {
  readonly kind = 'hnsw' as const;
  private efInUse: number;
  /** Searches that had to fall back to the exact scan (for diagnostics). */
  fallbacks = 0;
  /** the query as the JS Array searchKnn wants, reused by every search (single-threaded, synchronous call) */
  private readonly queryArray: number[];

  constructor(
    private readonly index: hnswlib.HierarchicalNSW,
    private readonly emb: Float32Array,
    private readonly dim: number,
    private readonly count: number,
    ef: number,
    private readonly params: Record<string, unknown>,
  ) {
    this.efInUse = ef;
    index.setEf(ef);
    this.queryArray = new Array<number>(dim).fill(0);
  }

  /** Read `path` as an 'ip' index of dimension `dim`. */
  static readIndex(path: string, dim: number): hnswlib.HierarchicalNSW {
    const index = new hnswlib.HierarchicalNSW('ip', dim);
    index.readIndexSync(path);
    return index;
  }

  get ef(): number {
    return this.efInUse;
  }

  /** Change ef (only while loading, before the state is published). */
  setEf(ef: number): void {
    this.efInUse = ef;
    this.index.setEf(ef);
  }

  searchSync(query: Float64Array, k: number, exclude: RowExclusion): Hit[] {
    const available = this.count - exclude.size;
    const want = Math.min(k, Math.max(0, available));
    if (want <= 0) return [];
    const fetch = this.fetchSize(k, exclude.size);
    const qa = this.queryArray;
    for (let d = 0; d < this.dim; d++) qa[d] = query[d]!;
    const found = this.index.searchKnn(qa, fetch).neighbors;
    const hits: Hit[] = [];
    for (let i = 0; i < found.length; i++) {
      const row = found[i]!;
      if (exclude.has(row)) continue;
      hits.push({ row, score: dotRow(this.emb, this.dim, row, query) });
    }
    if (hits.length < want) {
      this.fallbacks++;
      return exactTopK(this.emb, this.dim, this.count, query, k, exclude);
    }
    sortHits(hits);
    if (hits.length > k) hits.length = k;
    return hits;
  }

  /** Candidates asked of hnswlib for a top-k with `excluded` rows skipped: k + excluded + a margin for ties. */
  fetchSize(k: number, excluded: number): number {
    return Math.min(this.count, k + excluded + Math.max(8, k));
  }

  async search(query: Float64Array, k: number, exclude: RowExclusion): Promise<Hit[]> {
    return this.searchSync(query, k, exclude);
  }

  describe(): Record<string, unknown> {
    return { type: 'hnsw', library: 'hnswlib-node 3.0.0 (hnswlib 0.8.0)', ef: this.efInUse, ...this.params };
  }
}
