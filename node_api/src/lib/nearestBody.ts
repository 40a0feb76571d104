/**
 * The /nearest response body written as bytes: every track's public fields (track_id, title, composer,
 * composer_key, album_id: see trackView.ts) are rendered to JSON once, in UTF-8 blocks of rows (lazily: a block
 * the first time a response names one of its rows, `lazyTrackJson`), and a response is then
 * assembled by copying those fragments between a few pieces (rank, score, k, method, ranking, filters). This is
 * the same JSON as the route's response schema describes (the tests parse it and validate it against that
 * schema), without building per-hit objects, serialising them and encoding the result to UTF-8 per request.
 * Strings are escaped by JSON.stringify, so any title or id (quotes, backslashes, control characters, lone
 * surrogates, non-ASCII) renders exactly as a JSON serialiser would. Numbers that are fixed per artifact version
 * (the neighbour table's scores) can be pre-rendered too (`NumberTextBuilder`): the shortest round-trip decimal,
 * as String() and JSON.stringify write it, converted once instead of per request.
 */

import { displayComposer } from './trackView.js';
import type { Ranking, TrackRow } from './types.js';

/** Rendered members of rows `first ..`: row first + j is bytes[offsets[j], offsets[j + 1]). */
export interface TrackJsonBlock {
  /** a plain Uint8Array (its subarray views are cheaper than a Buffer's) */
  readonly bytes: Uint8Array;
  /** rows + 1 byte offsets into `bytes` */
  readonly offsets: Float64Array;
  readonly first: number;
}

/** Each row's `"track_id":..,"title":..,"composer":..,"composer_key":..,"album_id":..`, by blocks of rows. */
export interface TrackJson {
  readonly count: number;
  /** the block holding `row` (rendered on first use by a lazy one) */
  block(row: number): TrackJsonBlock;
}

/** A TrackJson rendered in full: one block of every row. */
export interface RenderedTrackJson extends TrackJson, TrackJsonBlock {}

/** JSON members (no braces) of a track's public fields (publicTrack's, in its order). */
export function trackMembers(t: TrackRow): string {
  const display = displayComposer(t);
  return (
    `"track_id":${JSON.stringify(t.track_id)},"title":${JSON.stringify(t.title)},` +
    `"composer":${display === null ? 'null' : JSON.stringify(display)},` +
    `"composer_key":${t.composer === null ? 'null' : JSON.stringify(t.composer)},"album_id":${JSON.stringify(t.album_id)}`
  );
}

/** Render rows [from, to) into one block (written in chunks, so no single string grows past ~1 MiB). */
function renderBlock(tracks: readonly TrackRow[], from: number, to: number): TrackJsonBlock {
  const offsets = new Float64Array(to - from + 1);
  const chunks: Buffer[] = [];
  let pending: string[] = [];
  let pendingChars = 0;
  let at = 0;
  const flush = (): void => {
    if (pending.length === 0) return;
    chunks.push(Buffer.from(pending.join(''), 'utf8'));
    pending = [];
    pendingChars = 0;
  };
  for (let row = from; row < to; row++) {
    const s = trackMembers(tracks[row]!);
    offsets[row - from] = at;
    at += Buffer.byteLength(s, 'utf8');
    pending.push(s);
    pendingChars += s.length;
    if (pendingChars >= 1 << 20) flush();
  }
  flush();
  offsets[to - from] = at;
  const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, at);
  if (buf.length !== at) throw new Error(`track JSON rendered to ${buf.length} bytes, expected ${at}`);
  return { bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.length), offsets, first: from };
}

/** Render every track's members into one buffer, now. */
export function renderTrackJson(tracks: readonly TrackRow[]): RenderedTrackJson {
  const all = renderBlock(tracks, 0, tracks.length);
  const self: RenderedTrackJson = { ...all, count: tracks.length, block: () => self };
  return self;
}

/** Rows per block of a lazy TrackJson: a block renders in well under a millisecond. */
export const TRACK_JSON_BLOCK_ROWS = 256;

/**
 * A TrackJson that renders a block of TRACK_JSON_BLOCK_ROWS rows the first time a response names one of them
 * (start-up renders nothing: 2 s at 1M tracks); once every block has been asked for it holds the same bytes as
 * renderTrackJson. `tracks` is frozen, so a block rendered late is the block an early render would have made.
 */
export function lazyTrackJson(tracks: readonly TrackRow[], blockRows: number = TRACK_JSON_BLOCK_ROWS): TrackJson {
  const blocks = new Array<TrackJsonBlock | undefined>(Math.ceil(tracks.length / blockRows));
  return {
    count: tracks.length,
    block(row: number): TrackJsonBlock {
      const b = Math.floor(row / blockRows);
      let blk = blocks[b];
      if (blk === undefined) {
        if (!(b >= 0 && b < blocks.length)) throw new RangeError(`row ${row} is not among the ${tracks.length} rows`);
        blk = blocks[b] = renderBlock(tracks, b * blockRows, Math.min(tracks.length, (b + 1) * blockRows));
      }
      return blk;
    },
  };
}

/** Numbers pre-rendered as ASCII JSON text: entry e is text[offsets[e], offsets[e + 1]). */
export interface RenderedNumbers {
  readonly text: Uint8Array;
  /** entries + 1 byte offsets into `text` */
  readonly offsets: Uint32Array;
}

const CHUNK = 1 << 20;

/** Builds RenderedNumbers entry by entry (chunked: no single string or buffer grows with the entry count until the end). */
export class NumberTextBuilder {
  private readonly offsets: Uint32Array;
  private readonly chunks: Uint8Array[] = [];
  private chunk = new Uint8Array(CHUNK);
  private used = 0;
  private total = 0;
  private entry = 0;

  constructor(readonly entries: number) {
    this.offsets = new Uint32Array(entries + 1);
  }

  /** Append entry `this.entry`: `x` as JSON writes it (non-finite numbers are refused: JSON has none). */
  push(x: number): void {
    if (this.entry >= this.entries) throw new RangeError(`NumberTextBuilder: more than ${this.entries} entries`);
    if (!Number.isFinite(x)) throw new RangeError(`entry ${this.entry} is ${x}, not a finite number`);
    const t = String(x);
    if (this.used + t.length > this.chunk.length) {
      this.chunks.push(this.chunk.subarray(0, this.used));
      this.chunk = new Uint8Array(CHUNK);
      this.used = 0;
    }
    for (let i = 0; i < t.length; i++) this.chunk[this.used + i] = t.charCodeAt(i);
    this.used += t.length;
    this.offsets[this.entry] = this.total;
    this.total += t.length;
    if (this.total > 0xffffffff) throw new RangeError(`rendered numbers exceed 4 GiB at entry ${this.entry}`);
    this.entry++;
  }

  finish(): RenderedNumbers {
    if (this.entry !== this.entries) throw new RangeError(`NumberTextBuilder: ${this.entry} of ${this.entries} entries pushed`);
    this.offsets[this.entries] = this.total;
    this.chunks.push(this.chunk.subarray(0, this.used));
    const text = new Uint8Array(this.total);
    let at = 0;
    for (const c of this.chunks) {
      text.set(c, at);
      at += c.length;
    }
    this.chunks.length = 0;
    return { text, offsets: this.offsets };
  }
}

/** The number entry `e` of `r` stands for (exact: the text is a shortest round-trip rendering). */
export function numberAt(r: RenderedNumbers, e: number): number {
  return Number(Buffer.from(r.text.buffer, r.text.byteOffset + r.offsets[e]!, r.offsets[e + 1]! - r.offsets[e]!).toString('latin1'));
}

/** Scores of the hits: numbers (rendered per request) or entries of pre-rendered numbers. */
export type HitScores =
  | { readonly kind: 'numbers'; readonly values: ArrayLike<number> }
  | { readonly kind: 'rendered'; readonly rendered: RenderedNumbers; readonly entries: ArrayLike<number> };

/** Score of hit `i`. */
export function hitScore(s: HitScores, i: number): number {
  return s.kind === 'numbers' ? s.values[i]! : numberAt(s.rendered, s.entries[i]!);
}

/** What one /nearest response says. `rows` and `scores` are the hits, best first by `ranking` (rank = position + 1). */
export interface NearestBody {
  queryRow: number;
  k: number;
  method: string;
  /** what ordered the hits (written as JSON.stringify writes the object: its own key order) */
  ranking: Ranking;
  excludeSameAlbum: boolean;
  composer: string | null;
  rows: ArrayLike<number>;
  scores: HitScores;
}

/** Write an ASCII string at `at` (no binding call: a JS loop is cheaper than Buffer#write for short strings). */
function putAscii(out: Uint8Array, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
  return at + s.length;
}

/**
 * Copy bytes[from, to) to out at `at`: short runs (a score) by a JS loop, longer ones (a track's members) by
 * TypedArray#set, a memcpy whose only overhead is the subarray view.
 */
function putBytes(out: Uint8Array, at: number, bytes: Uint8Array, from: number, to: number): number {
  if (to - from <= 32) {
    for (let i = from; i < to; i++) out[at++] = bytes[i]!;
    return at;
  }
  out.set(bytes.subarray(from, to), at);
  return at + (to - from);
}

/** `{"rank":R,"score":` for R = 1, 2, ...: the ASCII head of hit R before its score, built as needed. */
const rankHeads: Uint8Array[] = [];
function rankHead(rank: number): Uint8Array {
  return (rankHeads[rank] ??= Buffer.from(`{"rank":${rank},"score":`, 'latin1'));
}

/**
 * UTF-8 of the members between the query and the hits; without a composer filter, cached per (ranking object,
 * method, k, same album): a loaded table's ranking is one frozen object, so a reload's new one gets its own entries
 * and the old ones go with the old state.
 */
const midCache = new WeakMap<Ranking, Map<string, Uint8Array[]>>();
function renderMid(b: NearestBody): Uint8Array {
  return Buffer.from(
    `},"k":${b.k},"method":${JSON.stringify(b.method)},"ranking":${JSON.stringify(b.ranking)},"filters":{"exclude_same_album":${b.excludeSameAlbum},` +
      `"composer":${b.composer === null ? 'null' : JSON.stringify(b.composer)}},"hits":[`,
    'utf8',
  );
}
function midBytes(b: NearestBody): Uint8Array {
  if (b.composer !== null || !Number.isInteger(b.k) || b.k < 0 || b.k > 1000) return renderMid(b);
  let perRanking = midCache.get(b.ranking);
  if (perRanking === undefined) midCache.set(b.ranking, (perRanking = new Map()));
  let perMethod = perRanking.get(b.method);
  if (perMethod === undefined) perRanking.set(b.method, (perMethod = []));
  const slot = 2 * b.k + (b.excludeSameAlbum ? 1 : 0);
  return (perMethod[slot] ??= renderMid(b));
}

/**
 * The /nearest JSON body as bytes:
 * `{"query":{..},"k":..,"method":..,"ranking":{"method":..,"params":{..}},"filters":{"exclude_same_album":..,"composer":..},"hits":[{"rank":..,"score":..,<track>},..]}`.
 * Sized first (the scores' shortest round-trip decimal strings, as JSON.stringify writes them), then filled in one
 * pass (ASCII pieces by a JS loop, track members by TypedArray#set): no binding call but the allocation.
 * @throws RangeError on a non-finite score (JSON has no such number; normalised embeddings never produce one)
 */
export function writeNearestBody(json: TrackJson, b: NearestBody): Buffer {
  const n = b.rows.length;
  const mid = midBytes(b);
  const sc = b.scores;
  const scoreText: string[] | null = sc.kind === 'numbers' ? new Array<string>(n) : null;
  const qb = json.block(b.queryRow);
  const q0 = qb.offsets[b.queryRow - qb.first]!;
  const q1 = qb.offsets[b.queryRow - qb.first + 1]!;
  // {"query":{ + query + mid + hits joined by "," + ]}
  let size = 10 + (q1 - q0) + mid.length + (n > 0 ? n - 1 : 0) + 2;
  for (let i = 0; i < n; i++) {
    let scoreLen: number;
    if (scoreText !== null) {
      const score = (sc as { values: ArrayLike<number> }).values[i]!;
      if (!Number.isFinite(score)) throw new RangeError(`hit ${i + 1} (row ${b.rows[i]}) has score ${score}, not a finite number`);
      const t = String(score);
      scoreText[i] = t;
      scoreLen = t.length;
    } else {
      const { rendered, entries } = sc as { rendered: RenderedNumbers; entries: ArrayLike<number> };
      const e = entries[i]!;
      scoreLen = rendered.offsets[e + 1]! - rendered.offsets[e]!;
    }
    const r = b.rows[i]!;
    const blk = json.block(r);
    // {"rank":R,"score": + number + , + members + }
    size += rankHead(i + 1).length + scoreLen + 1 + (blk.offsets[r - blk.first + 1]! - blk.offsets[r - blk.first]!) + 1;
  }
  const out = Buffer.allocUnsafe(size);
  let at = putAscii(out, 0, '{"query":{');
  at = putBytes(out, at, qb.bytes, q0, q1);
  out.set(mid, at);
  at += mid.length;
  for (let i = 0; i < n; i++) {
    if (i > 0) out[at++] = 0x2c; // ,
    const head = rankHeads[i + 1]!;
    at = putBytes(out, at, head, 0, head.length);
    if (scoreText !== null) {
      at = putAscii(out, at, scoreText[i]!);
    } else {
      const { rendered, entries } = sc as { rendered: RenderedNumbers; entries: ArrayLike<number> };
      const e = entries[i]!;
      at = putBytes(out, at, rendered.text, rendered.offsets[e]!, rendered.offsets[e + 1]!);
    }
    out[at++] = 0x2c; // ,
    const r = b.rows[i]!;
    const blk = json.block(r);
    at = putBytes(out, at, blk.bytes, blk.offsets[r - blk.first]!, blk.offsets[r - blk.first + 1]!);
    out[at++] = 0x7d; // }
  }
  out[at++] = 0x5d; // ]
  out[at++] = 0x7d; // }
  if (at !== size) throw new Error(`nearest body is ${at} bytes, sized ${size}`);
  return out;
}
