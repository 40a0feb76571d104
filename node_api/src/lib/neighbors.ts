/**
 * The precomputed neighbour table `index/neighbors.i32` (index_meta.json's `neighbors`): for every row of
 * embeddings.f32, the rows of its K nearest other tracks by exact search (float64 score descending, ties by
 * ascending row, the track itself never listed), best first; little-endian int32, row-major [count, K]; -1 pads a
 * row only when count - 1 < K. A re-ranked table (`ranking` "rerank_score_desc_then_row_asc", `rerank` naming the
 * method: hubness reduction or query expansion, research_job.rerank) lists the exact top K of the re-scored
 * similarity instead, so its lists are not in descending cosine order; it is served in its own order, each hit
 * still scored by the cosine. Catalogue-track queries with k <= K are answered by walking the row's list (filters
 * applied) instead of searching; this file reads and checks the table, scores it once (the exact float64 inner
 * product of each listed pair, kept beside the rows already rendered as JSON text, so that a request reads one
 * contiguous run of bytes instead of K scattered embedding rows and converts no number) and does that walk.
 */

import { endianness } from 'node:os';

import { ArtifactError } from './errors.js';
import { dotRows, type RowExclusion } from './exact.js';
import type { ArtifactPaths } from './layout.js';
import { NumberTextBuilder, type RenderedNumbers } from './nearestBody.js';
import type { NeighborsEntry, Ranking } from './types.js';

/** index_meta's `ranking` of a plain table: float64 cosine descending, ties by ascending row. */
export const COSINE_ORDER = 'score_desc_float64_then_row_asc';

/** The ranking of a plain-cosine answer (a plain table's, and every backend search's). */
export const COSINE_RANKING: Ranking = Object.freeze({ method: 'cosine', params: Object.freeze({}) });

/** A loaded, checked table. `stats` counts the /nearest requests it answered and those it passed on. */
export interface NeighborTable {
  readonly k: number;
  /** row-major [count, k]; row i's list is rows[i * k .. i * k + k) */
  readonly rows: Int32Array;
  /**
   * row-major [count, k] entries: entry i * k + j is the float64 inner product of row i and rows[i * k + j],
   * pre-rendered as JSON text ("0" for padding); numberAt gives the number back exactly
   */
  readonly scores: RenderedNumbers;
  readonly sha256: string;
  /** index_meta's `ranking` of the table */
  readonly order: NeighborsEntry['ranking'];
  /** what ordered the lists: COSINE_RANKING, or the table's `rerank` (frozen; a /nearest answer from it reports it) */
  readonly ranking: Ranking;
  readonly stats: { served: number; fallbacks: number };
}

/** A zero-copy Int32Array view of little-endian bytes when possible (aligned, LE host), else a copy. */
function toInt32(buf: Buffer): Int32Array {
  if (endianness() === 'LE') {
    if (buf.byteOffset % 4 === 0) return new Int32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    return new Int32Array(new Uint8Array(buf).buffer);
  }
  const out = new Int32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readInt32LE(i * 4);
  return out;
}

/** Largest rise allowed between consecutive listed scores: float64 sums in a different order differ by ~1e-16. */
export const ORDER_TOLERANCE = 1e-12;

/**
 * What ordered the table's lists: COSINE_RANKING for a plain table, else its `rerank` entry (method, params) frozen.
 * @throws ArtifactError naming index_meta.json when a re-ranked table does not say which re-ranking (the schema requires it)
 */
function tableRanking(entry: NeighborsEntry, F: Pick<ArtifactPaths, 'index_meta'>): Ranking {
  if (entry.ranking === COSINE_ORDER) return COSINE_RANKING;
  if (!entry.rerank) throw new ArtifactError(F.index_meta, `neighbors.ranking is '${entry.ranking}' but no neighbors.rerank names the method`);
  return Object.freeze({ method: entry.rerank.method, params: Object.freeze({ ...entry.rerank.params }) });
}

/**
 * Check `bytes` against its index_meta entry, the row count and the embeddings, and view them as the table.
 * Checks: size = count x k x 4 = size_bytes, sha256 (computed by the caller, `sha`), every row: exactly
 * min(k, count - 1) distinct rows of [0, count) other than itself, then only -1; and, scoring every listed pair
 * against `emb` (row-major [count, dim]), for a plain-cosine table every list best first (no score above the
 * previous one by more than ORDER_TOLERANCE), which a table built from other embeddings fails. A re-ranked table
 * is not in cosine order by design: it gets every check but that one (its pairs are scored all the same).
 * `F` names the files in errors.
 * @throws ArtifactError naming index/neighbors.i32 and the first bad row / value
 */
export function parseNeighborTable(
  bytes: Buffer,
  entry: NeighborsEntry,
  count: number,
  sha: string,
  emb: Float32Array,
  dim: number,
  F: Pick<ArtifactPaths, 'neighbors_table' | 'track_ids_json' | 'index_meta' | 'embeddings_f32'>,
): NeighborTable {
  const k = entry.k;
  const want = count * k * 4;
  if (bytes.length !== want) {
    throw new ArtifactError(F.neighbors_table, `size is ${bytes.length} bytes but count x k x 4 = ${count} x ${k} x 4 = ${want} (count from ${F.track_ids_json}, k from ${F.index_meta})`);
  }
  if (bytes.length !== entry.size_bytes) {
    throw new ArtifactError(F.neighbors_table, `size is ${bytes.length} bytes but ${F.index_meta} records size_bytes ${entry.size_bytes}`);
  }
  if (sha !== entry.sha256) throw new ArtifactError(F.neighbors_table, `sha256 is ${sha} but ${F.index_meta} records ${entry.sha256}`);
  const ranking = tableRanking(entry, F);
  const bestFirst = ranking === COSINE_RANKING;
  const rows = toInt32(bytes);
  const listed = Math.min(k, count - 1);
  // seenBy[r] = 1 + the row whose list last named r: finds a repeat within one list without clearing per row
  const seenBy = new Int32Array(count);
  for (let row = 0; row < count; row++) {
    const base = row * k;
    for (let j = 0; j < k; j++) {
      const v = rows[base + j]!;
      const where = `row ${row} column ${j}`;
      if (j >= listed) {
        if (v !== -1) throw new ArtifactError(F.neighbors_table, `${where} holds ${v} but only ${listed} other tracks exist: padding must be -1`);
        continue;
      }
      if (v === -1) throw new ArtifactError(F.neighbors_table, `${where} holds -1 padding before the row's ${listed} neighbours are listed (padding only when count - 1 < k)`);
      if (v < 0 || v >= count) throw new ArtifactError(F.neighbors_table, `${where} holds ${v}, outside [0, ${count})`);
      if (v === row) throw new ArtifactError(F.neighbors_table, `${where} lists the track itself (self_excluded is true)`);
      if (seenBy[v] === row + 1) throw new ArtifactError(F.neighbors_table, `${where} lists row ${v} a second time`);
      seenBy[v] = row + 1;
    }
  }
  const scores = new NumberTextBuilder(count * k);
  for (let row = 0; row < count; row++) {
    const base = row * k;
    let prev = Infinity;
    for (let j = 0; j < k; j++) {
      if (j >= listed) {
        scores.push(0);
        continue;
      }
      const s = dotRows(emb, dim, row, rows[base + j]!);
      if (bestFirst && s > prev + ORDER_TOLERANCE) {
        throw new ArtifactError(
          F.neighbors_table,
          `row ${row} column ${j} lists row ${rows[base + j]} with score ${s}, above column ${j - 1}'s ${prev}: lists must be best first (the table does not match ${F.embeddings_f32})`,
        );
      }
      scores.push(s);
      prev = s;
    }
  }
  return { k, rows, scores: scores.finish(), sha256: sha, order: entry.ranking, ranking, stats: { served: 0, fallbacks: 0 } };
}

/** Hits read from the table: rows and their scores, in the table's order (best first by its ranking). */
export interface TableHits {
  rows: number[];
  /** entries (i * k + j) of the hits, for the table's pre-rendered scores */
  entries: number[];
}

/**
 * The first `k` entries of `row`'s list whose rows are not excluded and pass `keep`, in the list's order, with their
 * entry numbers (for the scores); null when fewer than `k` survive (or k > K), so the caller falls back to a search.
 */
export function tableNeighbours(table: NeighborTable, row: number, k: number, exclude: RowExclusion, keep: ((r: number) => boolean) | null): TableHits | null {
  if (k > table.k) return null;
  const rows: number[] = [];
  const entries: number[] = [];
  const base = row * table.k;
  for (let j = 0; j < table.k; j++) {
    const r = table.rows[base + j]!;
    if (r < 0) break;
    if (exclude.has(r) || (keep !== null && !keep(r))) continue;
    rows.push(r);
    entries.push(base + j);
    if (rows.length === k) return { rows, entries };
  }
  return null;
}
