/**
 * The exact backend: a scan of every row (`lib/exact.ts`), the reference for every other backend. Full scans
 * run on the WebAssembly SIMD kernel when one is given (bit-identical scores), else on the JS loop.
 */

import { exactTopK, topKFromScores, type Hit, type RowExclusion } from '../exact.js';
import type { SimdScorer } from '../simd.js';
import type { VectorBackend } from './types.js';

export class ExactBackend implements VectorBackend {
  readonly kind = 'exact' as const;

  constructor(
    private readonly emb: Float32Array,
    private readonly dim: number,
    private readonly count: number,
    private readonly simd: SimdScorer | null = null,
  ) {}

  async search(query: Float64Array, k: number, exclude: RowExclusion): Promise<Hit[]> {
    // the same kernel choice as searchSync: the request path used to run the JS loop even with SIMD loaded
    return this.searchSync(query, k, exclude);
  }

  /** Synchronous variant, used by start-up recall measurement and the exact-only paths. */
  searchSync(query: Float64Array, k: number, exclude: RowExclusion, rows?: ArrayLike<number>): Hit[] {
    if (rows === undefined && this.simd) return topKFromScores(this.simd.scoreAll(query), k, exclude);
    return exactTopK(this.emb, this.dim, this.count, query, k, exclude, rows);
  }

  /** Which scan kernel runs: 'wasm-simd' or 'js'. */
  get kernel(): 'wasm-simd' | 'js' {
    return this.simd ? 'wasm-simd' : 'js';
  }

  describe(): Record<string, unknown> {
    return { type: 'exact', method: 'float64 inner product over embeddings.f32', kernel: this.kernel };
  }
}
