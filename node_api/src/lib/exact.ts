/**
 * Exact inner-product search over a row-major Float32Array: the reference ranking and the fallback backend.
 *
 * Ranking rule (the Python evaluation's): score(a, b) = sum_d a[d] * b[d] in float64 from the float32
 * components; rank by score descending, ties by ascending row index. One tight loop over the typed array, a
 * typed-array min-heap of size k for the partial top-k, no allocation per row; the exclusion predicate is only
 * asked about rows that would enter the top-k.
 */

/** One search result: row index into embeddings.f32 and its exact float64 score. */
export interface Hit {
  readonly row: number;
  readonly score: number;
}

/** Rows a search must skip (self, same album, caller's list). `Set<number>` satisfies it. */
export interface RowExclusion {
  has(row: number): boolean;
  readonly size: number;
}

export const NO_EXCLUSION: RowExclusion = { has: () => false, size: 0 };

/** Album of each row and the row count of each album (a LoadedState has both). */
export interface AlbumIndex {
  readonly albumOfRow: Int32Array;
  readonly albumSize: Int32Array;
}

/**
 * What every search for catalogue row `row` skips: the row itself, plus its whole album when `albums` is given
 * (exclude_same_album). The one way the routes, the loader's checks and the recall measurement exclude the
 * query; allocation-free per tested row.
 */
export function queryExclusion(row: number, albums: AlbumIndex | null = null): RowExclusion {
  if (albums === null) return { has: (r) => r === row, size: 1 };
  const album = albums.albumOfRow[row]!;
  const ofRow = albums.albumOfRow;
  return { has: (r) => r === row || ofRow[r] === album, size: albums.albumSize[album]! };
}

/**
 * Exact float64 dot product of row `row` of `emb` with `q` (length `dim`).
 * Four accumulators for speed; deterministic, so identical rows always give identical scores.
 */
export function dotRow(emb: Float32Array, dim: number, row: number, q: Float64Array): number {
  const base = row * dim;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let d = 0;
  const end4 = dim - (dim % 4);
  for (; d < end4; d += 4) {
    s0 += emb[base + d]! * q[d]!;
    s1 += emb[base + d + 1]! * q[d + 1]!;
    s2 += emb[base + d + 2]! * q[d + 2]!;
    s3 += emb[base + d + 3]! * q[d + 3]!;
  }
  for (; d < dim; d++) s0 += emb[base + d]! * q[d]!;
  return s0 + s1 + (s2 + s3);
}

/**
 * `dotRow` of two stored rows, `a` against `b`: the same products in the same order as
 * `dotRow(emb, dim, b, <row a as float64>)`, so bit-identical to it, without copying row `a`.
 */
export function dotRows(emb: Float32Array, dim: number, a: number, b: number): number {
  const qa = a * dim;
  const base = b * dim;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let d = 0;
  const end4 = dim - (dim % 4);
  for (; d < end4; d += 4) {
    s0 += emb[base + d]! * emb[qa + d]!;
    s1 += emb[base + d + 1]! * emb[qa + d + 1]!;
    s2 += emb[base + d + 2]! * emb[qa + d + 2]!;
    s3 += emb[base + d + 3]! * emb[qa + d + 3]!;
  }
  for (; d < dim; d++) s0 += emb[base + d]! * emb[qa + d]!;
  return s0 + s1 + (s2 + s3);
}

/** Fixed-capacity heap whose root is the worst kept hit (lowest score; among equals, highest row). */
class TopK {
  readonly scores: Float64Array;
  readonly rows: Int32Array;
  size = 0;

  constructor(readonly k: number) {
    this.scores = new Float64Array(k);
    this.rows = new Int32Array(k);
  }

  private worse(i: number, j: number): boolean {
    const si = this.scores[i]!;
    const sj = this.scores[j]!;
    return si < sj || (si === sj && this.rows[i]! > this.rows[j]!);
  }

  /** Whether (score, row) would enter the heap. */
  accepts(score: number, row: number): boolean {
    if (this.size < this.k) return true;
    const s0 = this.scores[0]!;
    return score > s0 || (score === s0 && row < this.rows[0]!);
  }

  push(score: number, row: number): void {
    let i: number;
    if (this.size < this.k) {
      i = this.size++;
      this.scores[i] = score;
      this.rows[i] = row;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!this.worse(i, p)) break;
        this.swap(i, p);
        i = p;
      }
      return;
    }
    this.scores[0] = score;
    this.rows[0] = row;
    i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.size && this.worse(l, m)) m = l;
      if (r < this.size && this.worse(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(i: number, j: number): void {
    const s = this.scores[i]!;
    this.scores[i] = this.scores[j]!;
    this.scores[j] = s;
    const r = this.rows[i]!;
    this.rows[i] = this.rows[j]!;
    this.rows[j] = r;
  }

  /** Kept hits, best first (score descending, ties by ascending row). */
  sorted(): Hit[] {
    const out: Hit[] = [];
    for (let i = 0; i < this.size; i++) out.push({ row: this.rows[i]!, score: this.scores[i]! });
    return sortHits(out);
  }
}

/** Sort hits in place by the ranking rule: score descending, ties by ascending row. */
export function sortHits(hits: Hit[]): Hit[] {
  return hits.sort((a, b) => (b.score - a.score) || (a.row - b.row));
}

/**
 * Exact top-k over all `n` rows (or only `rows`, when given), skipping excluded rows.
 * @param emb row-major float32 embeddings, n x dim
 * @param q query as float64 (already normalised where needed)
 */
export function exactTopK(
  emb: Float32Array,
  dim: number,
  n: number,
  q: Float64Array,
  k: number,
  exclude: RowExclusion = NO_EXCLUSION,
  rows?: ArrayLike<number>,
): Hit[] {
  if (k <= 0) return [];
  const heap = new TopK(k);
  const check = exclude.size > 0;
  if (rows === undefined) {
    for (let row = 0; row < n; row++) {
      const base = row * dim;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let d = 0;
      const end4 = dim - (dim % 4);
      for (; d < end4; d += 4) {
        s0 += emb[base + d]! * q[d]!;
        s1 += emb[base + d + 1]! * q[d + 1]!;
        s2 += emb[base + d + 2]! * q[d + 2]!;
        s3 += emb[base + d + 3]! * q[d + 3]!;
      }
      for (; d < dim; d++) s0 += emb[base + d]! * q[d]!;
      const s = s0 + s1 + (s2 + s3);
      if (heap.accepts(s, row) && !(check && exclude.has(row))) heap.push(s, row);
    }
  } else {
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      const s = dotRow(emb, dim, row, q);
      if (heap.accepts(s, row) && !(check && exclude.has(row))) heap.push(s, row);
    }
  }
  return heap.sorted();
}

/** Top-k of precomputed scores (one per row), skipping excluded rows; same rule and heap as `exactTopK`. */
export function topKFromScores(scores: Float64Array, k: number, exclude: RowExclusion = NO_EXCLUSION): Hit[] {
  if (k <= 0) return [];
  const heap = new TopK(k);
  const check = exclude.size > 0;
  for (let row = 0; row < scores.length; row++) {
    const s = scores[row]!;
    if (heap.accepts(s, row) && !(check && exclude.has(row))) heap.push(s, row);
  }
  return heap.sorted();
}
