/** The exact backend: a scan of the whole Float32Array (`lib/exact.ts`), the reference for every other one. */

import { exactTopK, type Hit, type RowExclusion } from '../exact.js';
import type { VectorBackend } from './types.js';

export class ExactBackend implements VectorBackend {
  readonly kind = 'exact' as const;

  constructor(
    private readonly emb: Float32Array,
    private readonly dim: number,
    private readonly count: number,
  ) {}

  async search(query: Float64Array, k: number, exclude: RowExclusion): Promise<Hit[]> {
    return exactTopK(this.emb, this.dim, this.count, query, k, exclude);
  }

  /** Synchronous variant, used by start-up recall measurement and the exact-only paths. */
  searchSync(query: Float64Array, k: number, exclude: RowExclusion, rows?: ArrayLike<number>): Hit[] {
    return exactTopK(this.emb, this.dim, this.count, query, k, exclude, rows);
  }

  describe(): Record<string, unknown> {
    return { type: 'exact', method: 'float64 inner product over embeddings.f32' };
  }
}
