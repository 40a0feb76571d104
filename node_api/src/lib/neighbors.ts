/**
 * The precomputed neighbour table `index/neighbors.i32` (index_meta.json's `neighbors`): for every row of
 * embeddings.f32, the rows of its K nearest other tracks by exact search (float64 score descending, ties by
 * ascending row, the track itself never listed), best first; little-endian int32, row-major [count, K]; -1 pads a
 * row only when count - 1 < K. Catalogue-track queries with k <= K are answered by walking the row's list (filters
 * applied) instead of searching; this file reads and checks the table and does that walk.
 */

import { endianness } from 'node:os';

import { ArtifactError } from './errors.js';
import { type RowExclusion } from './exact.js';
import { ARTIFACT_FILES as F } from './layout.js';
import type { NeighborsEntry } from './types.js';

/** A loaded, checked table. `stats` counts the /nearest requests it answered and those it passed on. */
export interface NeighborTable {
  readonly k: number;
  /** row-major [count, k]; row i's list is rows[i * k .. i * k + k) */
  readonly rows: Int32Array;
  readonly sha256: string;
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

/**
 * Check `bytes` against its index_meta entry and the row count, and view them as the table.
 * Checks: size = count x k x 4 = size_bytes, sha256 (computed by the caller, `sha`), and every row: exactly
 * min(k, count - 1) distinct rows of [0, count) other than itself, then only -1.
 * @throws ArtifactError naming index/neighbors.i32 and the first bad row / value
 */
export function parseNeighborTable(bytes: Buffer, entry: NeighborsEntry, count: number, sha: string): NeighborTable {
  const k = entry.k;
  const want = count * k * 4;
  if (bytes.length !== want) {
    throw new ArtifactError(F.neighbors, `size is ${bytes.length} bytes but count x k x 4 = ${count} x ${k} x 4 = ${want} (count from ${F.trackIds}, k from ${F.indexMeta})`);
  }
  if (bytes.length !== entry.size_bytes) {
    throw new ArtifactError(F.neighbors, `size is ${bytes.length} bytes but ${F.indexMeta} records size_bytes ${entry.size_bytes}`);
  }
  if (sha !== entry.sha256) throw new ArtifactError(F.neighbors, `sha256 is ${sha} but ${F.indexMeta} records ${entry.sha256}`);
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
        if (v !== -1) throw new ArtifactError(F.neighbors, `${where} holds ${v} but only ${listed} other tracks exist: padding must be -1`);
        continue;
      }
      if (v === -1) throw new ArtifactError(F.neighbors, `${where} holds -1 padding before the row's ${listed} neighbours are listed (padding only when count - 1 < k)`);
      if (v < 0 || v >= count) throw new ArtifactError(F.neighbors, `${where} holds ${v}, outside [0, ${count})`);
      if (v === row) throw new ArtifactError(F.neighbors, `${where} lists the track itself (self_excluded is true)`);
      if (seenBy[v] === row + 1) throw new ArtifactError(F.neighbors, `${where} lists row ${v} a second time`);
      seenBy[v] = row + 1;
    }
  }
  return { k, rows, sha256: sha, stats: { served: 0, fallbacks: 0 } };
}

/**
 * The first `k` rows of `row`'s list that are not excluded and pass `keep`, best first; null when fewer than `k`
 * survive (or k > K), so the caller falls back to a search.
 */
export function tableNeighbours(table: NeighborTable, row: number, k: number, exclude: RowExclusion, keep: ((r: number) => boolean) | null): number[] | null {
  if (k > table.k) return null;
  const out: number[] = [];
  const base = row * table.k;
  for (let j = 0; j < table.k; j++) {
    const r = table.rows[base + j]!;
    if (r < 0) break;
    if (exclude.has(r) || (keep !== null && !keep(r))) continue;
    out.push(r);
    if (out.length === k) return out;
  }
  return null;
}
