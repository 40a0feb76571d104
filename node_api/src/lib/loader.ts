/**
 * Load one artifact version through an `ArtifactSource` into an immutable `LoadedState`, checking everything
 * the API relies on. Refuses (ArtifactError naming the file and the mismatch) when: a JSON file fails its
 * schema; N or dim disagree between files; embeddings.f32 is not N x D x 4 bytes or holds non-finite values or
 * rows that are not unit length; a recorded sha256 differs from the file's; ids repeat; a track id has no
 * metadata row; the columnar metadata sidecar index/tracks_columns.{json,bin}, read instead of the CSV when
 * present, is corrupt, stale or of other rows (columns.ts); the HNSW index disagrees with the embeddings (element count, dim, labels, vectors); the
 * precomputed neighbour table index/neighbors.i32 is malformed or (a plain-cosine table) disagrees with exact
 * search on a sample; a re-ranked table gets the structural checks only (its order is not the cosine's); the
 * recommenders of recs/, when there, are not the ones trained for these track ids or are corrupt (recs/load.ts).
 */

import { createHash } from 'node:crypto';
import { endianness } from 'node:os';

import { ExactBackend } from './backends/exact.js';
import { dotRow, queryExclusion } from './exact.js';
import { HnswBackend } from './backends/hnsw.js';
import type { PgvectorBackend } from './backends/pgvector.js';
import type { VectorBackend } from './backends/types.js';
import { parseTracksCsv } from './csv.js';
import { ArtifactError } from './errors.js';
import { checkHnswFile, HnswFormatError } from './hnswFile.js';
import { parseJson } from './json.js';
import { COSINE_RANKING, parseNeighborTable, type NeighborTable } from './neighbors.js';
import { lazyTrackJson } from './nearestBody.js';
import { readTracksColumns, type ColumnsFiles, type LoadedColumns } from './columns.js';
import { relativeTo, type ArtifactFile, type ArtifactPaths } from './layout.js';
import { RowIndex } from './rowIndex.js';
import { parseTrackIdsJson } from './trackIdsJson.js';
import { sampleRows } from './random.js';
import { SimdScorer } from './simd.js';
import { tuneRecall } from './recall.js';
import { composerFilterNames } from './trackView.js';
import { buildCatalogIndex, type CatalogIndex } from './catalogSearch.js';
import { readOptional, type OptionalFeatures } from './optional.js';
import { jsScorer, readRecs } from './recs/load.js';
import type { BackendChoice, NeighborsTableMode } from './options.js';
import type { SchemaName, SchemaRegistry } from './schemas.js';
import { DEFAULT_MAX_BYTES, type ArtifactSource } from './source.js';
import type { LoadedState, RecallReport } from './state.js';
import type { EmbeddingsMeta, EvalResults, IndexEntry, IndexMeta, TrackIdsFile, TrackRow } from './types.js';

/** Where the pgvector backend reads (VECTOR_BACKEND=pgvector). */
export interface PgvectorOptions {
  pool: import('pg').Pool;
  databaseUrl: string;
  /** `<artifact_version>/<release>`; null: the model's latest */
  version: string | null;
  efSearch: number;
}

export interface LoadOptions {
  backend: BackendChoice;
  hnswEf: number | null;
  hnswEfMax: number;
  recallSample: number;
  recallTarget: number;
  recallSeed: number;
  /** tolerance on |‖row‖ - 1| (embeddings_meta.normalization is "l2") */
  normTolerance: number;
  /** run full exact scans on the WebAssembly SIMD kernel when possible */
  simdKernel: boolean;
  /** index/neighbors.i32: use when listed (auto; not with pgvector), must be there (require), ignore (off) */
  neighborsTable: NeighborsTableMode;
  /** required with backend 'pgvector' */
  pgvector?: PgvectorOptions;
  log?: Log;
}

export const DEFAULT_LOAD_OPTIONS: LoadOptions = {
  backend: 'auto',
  hnswEf: null,
  hnswEfMax: 2048,
  recallSample: 1000,
  recallTarget: 0.99,
  recallSeed: 0,
  normTolerance: 1e-3,
  simdKernel: true,
  neighborsTable: 'auto',
};

/** Rows of the table compared with exact search at load (catches a table of other embeddings). */
const NEIGHBORS_SPOT_CHECK = 8;

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

async function readJson<T>(source: ArtifactSource, file: ArtifactFile, schemas: SchemaRegistry, name: SchemaName): Promise<{ obj: T; bytes: Buffer }> {
  const bytes = await source.read(file);
  return { obj: schemas.validate<T>(name, parseJson(file, bytes), file), bytes };
}

/**
 * Bytes of one track id in track_ids.json at most: 256 characters (the schemas' maxLength), each at worst a
 * surrogate pair written as two `\\uXXXX` escapes, plus quotes, comma and indentation.
 */
const MAX_TRACK_ID_JSON_BYTES = 256 * 12 + 8;

function toFloat32(buf: Buffer): Float32Array {
  if (endianness() === 'LE') {
    // Float32Array needs a 4-byte aligned offset; copy when the buffer is not aligned
    if (buf.byteOffset % 4 === 0) return new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    return new Float32Array(new Uint8Array(buf).buffer);
  }
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

function mismatch(file: ArtifactFile, what: string, got: unknown, expected: unknown, other: string): ArtifactError {
  return new ArtifactError(file, `${what} is ${JSON.stringify(got)} but ${other} says ${JSON.stringify(expected)}`);
}

type Log = (msg: string, fields?: Record<string, unknown>) => void;

/** What every phase reads through: the source, the schemas, the options and the artifact paths. */
interface LoadContext {
  readonly source: ArtifactSource;
  readonly schemas: SchemaRegistry;
  readonly opts: LoadOptions;
  readonly F: ArtifactPaths;
  readonly log: Log;
}

/** The embeddings phase: the sidecar, the ids and the checked vectors (row i is trackIds[i]). */
interface Vectors {
  readonly meta: EmbeddingsMeta;
  readonly trackIds: string[];
  /** row of each track id (built while refusing repeats) */
  readonly rowById: RowIndex;
  readonly n: number;
  readonly dim: number;
  readonly embSha: string;
  /** the rows every reader uses (in wasm memory when the SIMD kernel runs) */
  readonly emb: Float32Array;
  readonly simd: SimdScorer | null;
}

/** The metadata phase: one row per vector row, and the album / composer indexes over them. */
interface Metadata {
  /** where the rows came from: the columnar sidecar, or the CSV */
  readonly from: 'columns' | 'csv';
  readonly metadataRows: number;
  /** frozen (the sidecar's: made on first read, read-only) */
  readonly tracks: readonly TrackRow[];
  readonly rowById: RowIndex;
  readonly albumOfRow: Int32Array;
  readonly albumSize: Int32Array;
  readonly composerRows: Map<string, Int32Array>;
  readonly composerFilterRows: Map<string, Int32Array>;
}

/** index/index_meta.json when present, and its hnswlib entry. */
interface IndexInfo {
  readonly indexMeta: IndexMeta | null;
  readonly hnswEntry: IndexEntry | null;
}

type Phase = (name: string, fields?: Record<string, unknown>) => void;

/** Logs `loaded <name>` with the milliseconds since the previous phase (or `t0`). */
function phaseTimer(log: Log, t0: number): Phase {
  let tPhase = t0;
  return (name, fields = {}) => {
    const now = performance.now();
    log(`loaded ${name}`, { phase: name, ms: Math.round(now - tPhase), ...fields });
    tPhase = now;
  };
}

/**
 * Read, validate and cross-check one artifact version; build the backends and measure HNSW recall.
 * @throws ArtifactError naming the file and the mismatch
 */
export async function loadArtifacts(source: ArtifactSource, schemas: SchemaRegistry, options: Partial<LoadOptions> = {}): Promise<LoadedState> {
  const opts = { ...DEFAULT_LOAD_OPTIONS, ...options };
  const ctx: LoadContext = { source, schemas, opts, F: schemas.paths, log: opts.log ?? (() => {}) };
  const t0 = performance.now();
  const phase = phaseTimer(ctx.log, t0);

  const v = await readVectors(ctx);
  phase('embeddings', { count: v.n, dim: v.dim, exact_kernel: v.simd ? 'wasm-simd' : 'js' });
  const md = await readMetadata(ctx, v);
  phase('metadata', { from: md.from, metadata_rows: md.metadataRows, albums: md.albumSize.length, composers: md.composerRows.size });
  // rendered a block at a time when a response first names a row (renderTrackJson took 2 s at 1M tracks)
  const trackJson = lazyTrackJson(md.tracks);
  const index = await readIndexMeta(ctx, v);
  const exact = new ExactBackend(v.emb, v.dim, v.n, v.simd);
  const neighbors = await loadNeighbors(ctx, index.indexMeta, exact, v);
  if (neighbors) phase('neighbors', { k: neighbors.k, size_bytes: neighbors.rows.byteLength, scores_bytes: neighbors.scores.text.byteLength + neighbors.scores.offsets.byteLength });
  const { backend, recall } = await serveBackend(ctx, v, index, exact, neighbors, phase);
  const evalResults = await readEval(ctx, v);
  phase('eval', { present: evalResults !== null });
  const features = await readOptional(source, schemas, { artifactVersion: v.meta.artifact_version, embeddingsSha256: v.embSha, embeddingsFile: ctx.F.embeddings_f32, rowById: md.rowById });
  phase('optional', featureFields(features));
  const recs = await readRecs(source, schemas, { artifactVersion: v.meta.artifact_version, trackIdsSha256: v.meta.files.track_ids_sha256, embeddingsSha256: v.embSha, dim: v.dim, count: v.n, rowById: md.rowById, simdKernel: opts.simdKernel });
  phase('recs', recs.on ? { users: recs.value.users, factors: recs.value.factors, pairs: recs.value.items.length } : { off: recs.reason });
  const catalogIndex = lazyCatalog(ctx, md.tracks);

  return Object.freeze({
    artifactVersion: v.meta.artifact_version,
    source: source.description,
    release: source.release?.release ?? null,
    contentSha256: source.release?.contentSha256 ?? null,
    loadedAt: new Date().toISOString(),
    loadSec: (performance.now() - t0) / 1000,
    dim: v.dim,
    count: v.n,
    embeddings: v.emb,
    embeddingsSha256: v.embSha,
    trackIds: Object.freeze([...v.trackIds]),
    rowById: md.rowById,
    tracks: md.tracks,
    trackJson,
    albumOfRow: md.albumOfRow,
    albumSize: md.albumSize,
    composerRows: md.composerRows,
    composerFilterRows: md.composerFilterRows,
    embeddingsMeta: v.meta,
    indexMeta: index.indexMeta,
    hnswEntry: index.hnswEntry,
    evalResults,
    exact,
    backend,
    recall,
    neighbors,
    get catalog(): CatalogIndex {
      return catalogIndex();
    },
    features,
    recs,
    scoreAll: v.simd ? (q: Float64Array) => v.simd!.scoreAll(q) : jsScorer(v.emb, v.dim, v.n),
  });
}

/**
 * The catalogue search index, built on the first GET /tracks?q= (2.7 s at 1M tracks): a start-up need not wait
 * for a search nobody asked; `tracks` are frozen, so a late build indexes what an early one would have.
 */
function lazyCatalog(ctx: LoadContext, tracks: readonly TrackRow[]): () => CatalogIndex {
  let catalog: CatalogIndex | null = null;
  return () => {
    if (catalog === null) {
      const t0 = performance.now();
      catalog = buildCatalogIndex(tracks);
      ctx.log('built catalogue search', { phase: 'catalogue search', ms: Math.round(performance.now() - t0), chunks: catalog.chunks.length, lazy: true });
    }
    return catalog;
  };
}

/** Log fields of the optional features: which are on, with their counts. */
function featureFields(f: OptionalFeatures): Record<string, unknown> {
  return {
    report_html: f.reportHtml.on,
    figures: f.figures.on ? f.figures.value.size : null,
    clusters: f.clusters.on ? f.clusters.value.count : null,
    previews: f.previews.on ? f.previews.value.count : null,
  };
}

/**
 * embeddings_meta.json, track_ids.json (no repeated id; count and sha256 as the sidecar records) and
 * embeddings.f32 (N x D x 4 bytes, the recorded sha256, every row finite and of unit length).
 * @throws ArtifactError naming the file and the mismatch
 */
async function readVectors(ctx: LoadContext): Promise<Vectors> {
  const { source, schemas, opts, F } = ctx;
  const { obj: meta } = await readJson<EmbeddingsMeta>(source, F.embeddings_meta, schemas, 'embeddings_meta');
  const { ids, rowById } = await readTrackIds(ctx, meta);
  const n = ids.track_ids.length;
  const dim = meta.dim;
  const expectedBytes = n * dim * 4;
  // the size is checked before a byte is read (a link to /dev/zero, or a huge file, is refused unread)
  const why = `N x D x 4 = ${n} x ${dim} x 4 = ${expectedBytes} (N from ${F.track_ids_json}, D from ${F.embeddings_meta})`;
  // with the SIMD kernel the rows live in wasm memory, read there in one pass (no second copy of N x D x 4
  // bytes); every reader uses that one copy
  let simd = opts.simdKernel && endianness() === 'LE' && source.readInto ? SimdScorer.allocate(dim, n) : null;
  let embBytes: Uint8Array;
  let fileEmb: Float32Array;
  let embSha: string;
  if (simd && source.readInto) {
    // one pass: each part is hashed and its whole rows checked while the next part is read (the sha256 alone is
    // ~0.6 s of a 1M x 200 start-up); a bad row found early is reported only once the checksum has matched, as
    // when the whole file was hashed first, so a damaged file is named by its checksum
    embBytes = new Uint8Array(simd.embeddings.buffer, simd.embeddings.byteOffset, expectedBytes);
    fileEmb = simd.embeddings;
    const hash = createHash('sha256');
    const rowBytes = dim * 4;
    let rowsChecked = 0;
    let rowError: unknown = null;
    await source.readInto(F.embeddings_f32, embBytes, why, (start, end) => {
      hash.update(embBytes.subarray(start, end));
      const rows = Math.floor(end / rowBytes);
      if (rowError === null) {
        try {
          checkRows(ctx, fileEmb, dim, ids.track_ids, rowsChecked, rows);
        } catch (err) {
          rowError = err;
        }
      }
      rowsChecked = rows;
    });
    embSha = hash.digest('hex');
    checkSha(F, meta, embSha);
    if (rowError !== null) throw rowError;
  } else {
    const buf = await source.read(F.embeddings_f32, { exactBytes: expectedBytes, why });
    embBytes = buf;
    fileEmb = toFloat32(buf);
    embSha = sha256(embBytes);
    checkSha(F, meta, embSha);
    if (opts.simdKernel) simd = SimdScorer.create(fileEmb, dim, n);
    checkRows(ctx, simd ? simd.embeddings : fileEmb, dim, ids.track_ids, 0, n);
  }
  const emb = simd ? simd.embeddings : fileEmb;
  return { meta, trackIds: ids.track_ids, rowById, n, dim, embSha, emb, simd };
}

/**
 * track_ids.json: JSON, no repeated id (named), its schema, its count and the sha256 `meta` records; with the
 * row of each id (the map that refuses repeats is the lookup the routes use).
 */
async function readTrackIds(ctx: LoadContext, meta: EmbeddingsMeta): Promise<{ ids: TrackIdsFile; rowById: RowIndex }> {
  const { source, schemas, F } = ctx;
  const idsBytes = await source.read(F.track_ids_json, { maxBytes: Math.min(DEFAULT_MAX_BYTES, 65536 + meta.count * MAX_TRACK_ID_JSON_BYTES), why: `${meta.count} track ids (count from ${F.embeddings_meta})` });
  const idsRaw = parseTrackIdsJson(F.track_ids_json, idsBytes);
  // before the schema (whose uniqueItems would not say which id repeats)
  const rawList = (idsRaw as { track_ids?: unknown }).track_ids;
  let rowById: RowIndex | null = null;
  if (Array.isArray(rawList) && rawList.every((id) => typeof id === 'string')) {
    const built = RowIndex.build(rawList as string[]);
    if ('repeatRow' in built) throw new ArtifactError(F.track_ids_json, `track id ${JSON.stringify(rawList[built.repeatRow])} repeats`);
    rowById = built.index;
  }
  // every keyword of the schema but uniqueItems, which the index above has checked (and named the repeat); a
  // list with a non-string id fails the schema's items
  const problem = Array.isArray(rawList) ? schemas.checkExceptUnique('track_ids', 'track_ids', idsRaw) : schemas.check('track_ids', idsRaw);
  if (problem !== null || rowById === null) throw new ArtifactError(F.track_ids_json, `does not match track_ids.schema.json: ${problem}`);
  const ids = idsRaw as TrackIdsFile;
  const n = ids.track_ids.length;
  if (ids.count !== n) throw new ArtifactError(F.track_ids_json, `count is ${ids.count} but the file lists ${n} track ids`);
  if (meta.count !== n) throw mismatch(F.embeddings_meta, 'count', meta.count, n, F.track_ids_json);
  const idsSha = sha256(idsBytes);
  if (meta.files.track_ids_sha256 !== idsSha) {
    throw new ArtifactError(F.track_ids_json, `sha256 is ${idsSha} but ${F.embeddings_meta} records ${meta.files.track_ids_sha256}`);
  }
  return { ids, rowById };
}

/** Every row finite and of L2 norm 1 within `normTolerance` (embeddings_meta.normalization is "l2"). */
/** The recorded embeddings sha256 is the file's. @throws ArtifactError naming both */
function checkSha(F: LoadContext['F'], meta: EmbeddingsMeta, embSha: string): void {
  if (meta.files.embeddings_sha256 !== embSha) {
    throw new ArtifactError(F.embeddings_f32, `sha256 is ${embSha} but ${F.embeddings_meta} records ${meta.files.embeddings_sha256}`);
  }
}

/** Rows `[from, to)` are finite and of unit length. @throws ArtifactError naming the first bad row and its track */
function checkRows(ctx: LoadContext, emb: Float32Array, dim: number, trackIds: readonly string[], from: number, to: number): void {
  const { F, opts } = ctx;
  // four partial sums (dims 0, 1, 2, 3 mod 4): 1.6x the speed of one sum (0.3 s of the start-up at 1M x 200)
  const d4 = dim - (dim % 4);
  for (let row = from; row < to; row++) {
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    const base = row * dim;
    let d = 0;
    for (; d < d4; d += 4) {
      const v0 = emb[base + d]!;
      const v1 = emb[base + d + 1]!;
      const v2 = emb[base + d + 2]!;
      const v3 = emb[base + d + 3]!;
      s0 += v0 * v0;
      s1 += v1 * v1;
      s2 += v2 * v2;
      s3 += v3 * v3;
    }
    for (; d < dim; d++) s0 += emb[base + d]! * emb[base + d]!;
    const ss = s0 + s1 + (s2 + s3);
    // a NaN or an infinity makes the sum NaN or infinite, so a finite norm within tolerance proves the row finite;
    // only a row that fails is searched for the value to name
    if (Math.abs(Math.sqrt(ss) - 1) <= opts.normTolerance) continue;
    for (let d = 0; d < dim; d++) {
      if (!Number.isFinite(emb[base + d]!)) throw new ArtifactError(F.embeddings_f32, `row ${row} (track ${trackIds[row]}) holds a non-finite value`);
    }
    throw new ArtifactError(F.embeddings_f32, `row ${row} (track ${trackIds[row]}) has L2 norm ${Math.sqrt(ss)}, but ${F.embeddings_meta} says normalization "l2"`);
  }
}

/** The sidecar's two files, when the artifact list names both and the schema folder knows the header's schema. */
function columnsFiles(schemas: SchemaRegistry): ColumnsFiles | null {
  const header = schemas.optionalPaths.tracks_columns.path;
  const bin = schemas.optionalPaths.tracks_columns_bin.path;
  return header !== null && bin !== null ? { header, bin } : null;
}

/**
 * The metadata of every vector row: from the columnar sidecar index/tracks_columns.{json,bin} when present
 * (columns.ts: checked, and tied to this CSV and these ids), else from tracks_metadata.csv (every track id needs
 * a row); with each row's album index, the album sizes, the rows of each standardised composer, and the rows
 * each normalised `composer` filter value finds (a key or a display name, trimmed and lower-cased).
 * @throws ArtifactError naming the sidecar or the CSV and what is wrong (the first track id without a row, ...)
 */
async function readMetadata(ctx: LoadContext, v: Vectors): Promise<Metadata> {
  const cols = await readTracksColumns(ctx.source, ctx.schemas, columnsFiles(ctx.schemas), v);
  if (cols) return { from: 'columns', metadataRows: cols.csvRows, tracks: cols.tracks, ...columnIndexes(v, cols) };
  const { tracks, metadataRows } = await readCsvRows(ctx, v);
  return { from: 'csv', metadataRows, tracks: Object.freeze(tracks), ...rowIndexes(v, tracks) };
}

/** tracks_metadata.csv's rows in vector row order. @throws ArtifactError naming the CSV (a track id without a row, ...) */
async function readCsvRows(ctx: LoadContext, v: Vectors): Promise<{ tracks: TrackRow[]; metadataRows: number }> {
  const { source, schemas, F } = ctx;
  const csvRows = parseTracksCsv(await source.read(F.tracks_csv), schemas);
  const byId = new Map<string, TrackRow>(csvRows.map((r) => [r.track_id, r]));
  const tracks: TrackRow[] = new Array<TrackRow>(v.n);
  v.trackIds.forEach((id, row) => {
    const t = byId.get(id);
    if (!t) throw new ArtifactError(F.tracks_csv, `track id '${id}' (row ${row} of ${F.embeddings_f32}) has no metadata row`);
    tracks[row] = Object.freeze(t);
  });
  return { tracks, metadataRows: csvRows.length };
}

/** The row lookups over `tracks` (row i is v.trackIds[i]): id -> row, albums, composers, filter names. */
function rowIndexes(v: Vectors, tracks: readonly TrackRow[]): Omit<Metadata, 'from' | 'metadataRows' | 'tracks'> {
  const albumIndex = new Map<string, number>();
  const albumOfRow = new Int32Array(v.n);
  const composerLists = new Map<string, number[]>();
  const filterLists = new Map<string, number[]>();
  // the filter names of a (composer, composer_raw) pair, normalised once per pair, not per row (NFKC + regexes)
  const namesOf = new Map<string, Map<string | null, string[]>>();
  const filterNames = (t: TrackRow): string[] => {
    if (t.composer === null) return [];
    let byRaw = namesOf.get(t.composer);
    if (byRaw === undefined) namesOf.set(t.composer, (byRaw = new Map()));
    let names = byRaw.get(t.composer_raw);
    if (names === undefined) byRaw.set(t.composer_raw, (names = composerFilterNames(t)));
    return names;
  };
  const add = (lists: Map<string, number[]>, name: string, row: number): void => {
    const list = lists.get(name);
    if (list) list.push(row);
    else lists.set(name, [row]);
  };
  tracks.forEach((t, row) => {
    let a = albumIndex.get(t.album_id);
    if (a === undefined) albumIndex.set(t.album_id, (a = albumIndex.size));
    albumOfRow[row] = a;
    if (t.composer !== null) add(composerLists, t.composer, row);
    for (const name of filterNames(t)) add(filterLists, name, row);
  });
  const albumSize = new Int32Array(albumIndex.size);
  for (const a of albumOfRow) albumSize[a]!++;
  const asRows = (lists: Map<string, number[]>) => new Map<string, Int32Array>([...lists].map(([c, rows]) => [c, Int32Array.from(rows)]));
  return {
    rowById: v.rowById,
    albumOfRow,
    albumSize,
    composerRows: asRows(composerLists),
    composerFilterRows: asRows(filterLists),
  };
}

/**
 * rowIndexes from the sidecar's dictionary columns, without a row object each: the same indexes in the same
 * orders (albums and composers numbered by first row; rows ascending), a dictionary value that repeats
 * (two codes, one string) counting as one, as the CSV's strings would.
 */
function columnIndexes(v: Vectors, cols: LoadedColumns): Omit<Metadata, 'from' | 'metadataRows' | 'tracks'> {
  const n = v.n;
  const albumOfRow = new Int32Array(n);
  const albumOfCode = new Int32Array(cols.album.values.length).fill(-1);
  const albumIndex = new Map<string, number>();
  const ac = cols.album.codes;
  for (let row = 0; row < n; row++) {
    const code = ac[row]!;
    let a = albumOfCode[code]!;
    if (a < 0) {
      const value = cols.album.values[code]!;
      a = albumIndex.get(value) ?? albumIndex.size;
      albumIndex.set(value, a);
      albumOfCode[code] = a;
    }
    albumOfRow[row] = a;
  }
  const albumSize = new Int32Array(albumIndex.size);
  for (let row = 0; row < n; row++) albumSize[albumOfRow[row]!]!++;
  // each (composer code, composer_raw code) pair's rows join the same lists, in rowIndexes' order: the
  // composer's, then each filter name's (the names of its first row); lists are numbered in the order of their
  // first row, counted, then filled (no growing arrays)
  const composerIds = new Map<string, number>();
  const filterIds = new Map<string, number>();
  const sizes: number[] = [];
  const idOf = (ids: Map<string, number>, name: string): number => {
    let id = ids.get(name);
    if (id === undefined) {
      ids.set(name, (id = sizes.length));
      sizes.push(0);
    }
    return id;
  };
  const { pairOfRow, firstRow } = composerPairs(cols, n);
  const listsOfPair = new Array<number[] | undefined>(firstRow.length);
  for (let row = 0; row < n; row++) {
    const p = pairOfRow[row]!;
    if (p < 0) continue;
    let ids = listsOfPair[p];
    if (ids === undefined) {
      const t = cols.tracks[firstRow[p]!]!;
      ids = listsOfPair[p] = [idOf(composerIds, t.composer!), ...composerFilterNames(t).map((name) => idOf(filterIds, name))];
    }
    for (const id of ids) sizes[id]!++;
  }
  const rows = sizes.map((k) => new Int32Array(k));
  const filled = new Int32Array(sizes.length);
  for (let row = 0; row < n; row++) {
    const p = pairOfRow[row]!;
    if (p >= 0) for (const id of listsOfPair[p]!) rows[id]![filled[id]!++] = row;
  }
  const asRows = (ids: Map<string, number>) => new Map<string, Int32Array>([...ids].map(([name, id]) => [name, rows[id]!]));
  return { rowById: v.rowById, albumOfRow, albumSize, composerRows: asRows(composerIds), composerFilterRows: asRows(filterIds) };
}

/**
 * A number for each (composer code, composer_raw code) pair that rows carry (-1: no composer), and the first row
 * of each, without hashing the pairs (codes come from the file; crafted ones must not flood a hash table): rows
 * grouped by composer code (a counting sort), then each group's raw codes numbered through a stamped array.
 */
function composerPairs(cols: LoadedColumns, n: number): { pairOfRow: Int32Array; firstRow: number[] } {
  const cc = cols.composer.codes;
  const rc = cols.composerRaw.codes;
  const groups = cols.composer.values.length;
  const start = new Int32Array(groups + 1);
  for (let row = 0; row < n; row++) if (cc[row]! >= 0) start[cc[row]! + 1]!++;
  for (let g = 0; g < groups; g++) start[g + 1]! += start[g]!;
  const order = new Int32Array(start[groups]!);
  const fill = start.slice(0, groups);
  for (let row = 0; row < n; row++) if (cc[row]! >= 0) order[fill[cc[row]!]!++] = row;
  const pairOfRow = new Int32Array(n).fill(-1);
  const firstRow: number[] = [];
  // raw code + 1 (0: none) -> its pair in the current group, valid where stamp holds the group
  const stamp = new Int32Array(cols.composerRaw.values.length + 1).fill(-1);
  const pairOfRaw = new Int32Array(stamp.length);
  for (let g = 0; g < groups; g++) {
    for (let i = start[g]!; i < start[g + 1]!; i++) {
      const row = order[i]!;
      const k = rc[row]! + 1;
      if (stamp[k] !== g) {
        stamp[k] = g;
        pairOfRaw[k] = firstRow.length;
        // rows of a group are ascending: the first met is the pair's first row
        firstRow.push(row);
      }
      pairOfRow[row] = pairOfRaw[k]!;
    }
  }
  return { pairOfRow, firstRow };
}

/**
 * index/index_meta.json when present: count, dim, embeddings sha256 and artifact_version as the embeddings
 * say; and its hnswlib entry.
 * @throws ArtifactError naming index_meta.json and the mismatch
 */
async function readIndexMeta(ctx: LoadContext, v: Vectors): Promise<IndexInfo> {
  const { source, schemas, F } = ctx;
  if (!(await source.exists(F.index_meta))) return { indexMeta: null, hnswEntry: null };
  const indexMeta = (await readJson<IndexMeta>(source, F.index_meta, schemas, 'index_meta')).obj;
  if (indexMeta.count !== v.n) throw mismatch(F.index_meta, 'count', indexMeta.count, v.n, F.track_ids_json);
  if (indexMeta.dim !== v.dim) throw mismatch(F.index_meta, 'dim', indexMeta.dim, v.dim, F.embeddings_meta);
  if (indexMeta.embeddings_sha256 !== v.embSha) {
    throw new ArtifactError(F.index_meta, `embeddings_sha256 is ${indexMeta.embeddings_sha256} but ${F.embeddings_f32} hashes to ${v.embSha}`);
  }
  if (indexMeta.artifact_version !== v.meta.artifact_version) {
    throw mismatch(F.index_meta, 'artifact_version', indexMeta.artifact_version, v.meta.artifact_version, F.embeddings_meta);
  }
  return { indexMeta, hnswEntry: indexMeta.indexes.find((e) => e.name === 'hnswlib') ?? null };
}

/**
 * The backend that answers searches, with its recall against exact search: HNSW (VECTOR_BACKEND=hnsw, or auto
 * when index_meta lists the index and the file is there; ef tuned on a seeded sample), pgvector
 * (VECTOR_BACKEND=pgvector), else exact search (no recall to measure).
 * @throws ArtifactError naming the file (the index, index_meta.json) or DATABASE_URL
 */
async function serveBackend(
  ctx: LoadContext,
  v: Vectors,
  index: IndexInfo,
  exact: ExactBackend,
  neighbors: NeighborTable | null,
  phase: Phase,
): Promise<{ backend: VectorBackend; recall: RecallReport | null }> {
  const { opts } = ctx;
  const hnswEntry = await hnswEntryToServe(ctx, index);
  if (hnswEntry) {
    const { hnsw, startEf, M, efConstruction } = await openHnsw(ctx, v, hnswEntry);
    phase('hnsw index', { M, ef_construction: efConstruction });
    const recall = tuneRecall(hnsw, exact, v.emb, v.dim, v.n, {
      sampleSize: opts.recallSample,
      seed: opts.recallSeed,
      target: opts.recallTarget,
      fixedEf: opts.hnswEf,
      startEf,
      maxEf: opts.hnswEfMax,
      table: neighbors,
    });
    phase('recall', { ...recall });
    return { backend: hnsw, recall };
  }
  if (opts.backend === 'pgvector') {
    if (!opts.pgvector) throw new ArtifactError('DATABASE_URL', 'VECTOR_BACKEND=pgvector needs DATABASE_URL');
    // imported here: pg is loaded only when pgvector serves
    const { PgvectorBackend } = await import('./backends/pgvector.js');
    const pgb = await PgvectorBackend.open({
      ...opts.pgvector,
      artifactVersion: v.meta.artifact_version,
      trackIds: v.trackIds,
      dim: v.dim,
      contentSha256: ctx.source.release?.contentSha256 ?? null,
    });
    phase('pgvector', pgb.describe());
    const recall = await measurePgvectorRecall(pgb, exact, v, opts.recallSample, opts.recallSeed);
    phase('recall', { ...recall });
    return { backend: pgb, recall };
  }
  return { backend: exact, recall: null };
}

/**
 * The hnswlib entry to serve: with VECTOR_BACKEND=hnsw (refused without one), or auto when index_meta.json
 * lists one; null otherwise (exact, pgvector, or auto without a listed index). A listed index whose file is
 * missing refuses the load under auto too: serving exact search instead would change the product's latency and
 * memory silently, and the file was recorded with its sha256, so its absence is damage, not a choice.
 * @throws ArtifactError naming index_meta.json (VECTOR_BACKEND=hnsw, no entry) or the index (listed, missing)
 */
async function hnswEntryToServe(ctx: LoadContext, index: IndexInfo): Promise<IndexEntry | null> {
  const { source, opts, F } = ctx;
  const { indexMeta, hnswEntry } = index;
  if (opts.backend === 'hnsw' && !hnswEntry) {
    throw new ArtifactError(F.index_meta, `VECTOR_BACKEND=hnsw but ${indexMeta ? 'no "hnswlib" entry is listed' : 'the file is missing'} (set VECTOR_BACKEND=exact to serve without the index)`);
  }
  if (!hnswEntry || (opts.backend !== 'hnsw' && opts.backend !== 'auto')) return null;
  if (!(await source.exists(F.hnsw_index))) {
    throw new ArtifactError(F.hnsw_index, `missing, but ${F.index_meta} lists it (sha256 ${hnswEntry.sha256.slice(0, 12)}...); restore it, or set VECTOR_BACKEND=exact to serve by exact search without it`);
  }
  return hnswEntry;
}

/**
 * index/hnsw.index checked against its entry (file, space, sha256, size, M) and the embeddings (element count,
 * dim, labels 0..N-1, the vectors of a seeded sample of labels), opened with hnswlib-node.
 * @throws ArtifactError naming the index (or index_meta.json) and the mismatch
 */
async function openHnsw(ctx: LoadContext, v: Vectors, entry: IndexEntry): Promise<{ hnsw: HnswBackend; startEf: number; M: number; efConstruction: number }> {
  const { source, opts, F } = ctx;
  const { n, dim, emb } = v;
  const hnswFile = relativeTo(F.index_meta, F.hnsw_index);
  if (entry.file !== hnswFile || entry.space !== 'ip') {
    throw new ArtifactError(F.index_meta, `hnswlib entry has file '${entry.file}', space '${entry.space}'; expected '${hnswFile}', 'ip'`);
  }
  const idxBytes = await source.read(F.hnsw_index, { exactBytes: entry.size_bytes, why: `size_bytes in ${F.index_meta}` });
  const idxSha = sha256(idxBytes);
  if (idxSha !== entry.sha256) throw new ArtifactError(F.hnsw_index, `sha256 is ${idxSha} but ${F.index_meta} records ${entry.sha256}`);
  // the checksum proves the file is the recorded one, not that native code can walk it: bounds-check the graph
  let header;
  try {
    header = checkHnswFile(idxBytes, n, dim);
  } catch (err) {
    if (!(err instanceof HnswFormatError)) throw err;
    throw new ArtifactError(F.hnsw_index, `${err.message} (N from ${F.track_ids_json}, dim from ${F.embeddings_meta}); not handed to hnswlib`);
  }
  if (entry.params.M !== undefined && entry.params.M !== header.M) throw mismatch(F.hnsw_index, 'M', header.M, entry.params.M, F.index_meta);
  let index;
  try {
    // the path still names the file just checked (localPath compares device, inode, size and mtime)
    index = HnswBackend.readIndex(await source.localPath(F.hnsw_index), dim);
  } catch (err) {
    if (err instanceof ArtifactError) throw err;
    throw new ArtifactError(F.hnsw_index, `hnswlib refuses it: ${(err as Error).message}`);
  }
  if (index.getCurrentCount() !== n) throw new ArtifactError(F.hnsw_index, `addon reads ${index.getCurrentCount()} elements, expected ${n}`);
  // the labels are a permutation of 0..N-1 (checkHnswFile read them from the bytes the addon loaded)
  for (const row of sampleRows(n, 64, 1)) {
    const p = index.getPoint(row);
    for (let d = 0; d < dim; d++) {
      if (Math.fround(p[d]!) !== emb[row * dim + d]) {
        throw new ArtifactError(F.hnsw_index, `vector of label ${row} differs from row ${row} of ${F.embeddings_f32} (component ${d})`);
      }
    }
  }
  const startEf = opts.hnswEf ?? entry.params.ef_search ?? 64;
  const hnsw = new HnswBackend(index, emb, dim, n, startEf, {
    M: header.M,
    ef_construction: header.efConstruction,
    ef_search_recorded: entry.params.ef_search ?? null,
  });
  return { hnsw, startEf, M: header.M, efConstruction: header.efConstruction };
}

/**
 * eval/eval_results.json when present: n_tracks (at most, for a track subset), embeddings sha256 and
 * artifact_version as the embeddings say.
 * @throws ArtifactError naming eval_results.json and the mismatch
 */
async function readEval(ctx: LoadContext, v: Vectors): Promise<EvalResults | null> {
  const { source, schemas, F } = ctx;
  if (!(await source.exists(F.eval_results))) return null;
  const evalResults = (await readJson<EvalResults>(source, F.eval_results, schemas, 'eval_results')).obj;
  // an evaluation of a track subset (evaluate --tracks multi_label_albums) scores fewer tracks, never more
  const subset = (evalResults.tracks ?? 'all') !== 'all';
  if (subset ? !(evalResults.n_tracks >= 1 && evalResults.n_tracks <= v.n) : evalResults.n_tracks !== v.n) {
    throw mismatch(F.eval_results, 'n_tracks', evalResults.n_tracks, v.n, F.track_ids_json);
  }
  if (evalResults.embeddings_sha256 !== v.embSha) {
    throw new ArtifactError(F.eval_results, `embeddings_sha256 is ${evalResults.embeddings_sha256} but ${F.embeddings_f32} hashes to ${v.embSha}`);
  }
  if (evalResults.artifact_version !== v.meta.artifact_version) {
    throw mismatch(F.eval_results, 'artifact_version', evalResults.artifact_version, v.meta.artifact_version, F.embeddings_meta);
  }
  return evalResults;
}

/**
 * index/neighbors.i32 when index_meta lists it and NEIGHBORS_TABLE allows it (auto: when listed and present,
 * except with VECTOR_BACKEND=pgvector, whose answers come from the database; require: always, refusing
 * without it; off: never). Checked in full (parseNeighborTable) and, a plain-cosine table, on a seeded sample of
 * rows against exact search: same rows in order, or a swap only between scores equal to 1e-12 (a float64
 * summation-order tie). A re-ranked table (index_meta's `rerank`) orders its lists by another similarity, which
 * Node does not recompute: it gets the structural checks and its sha256, recorded beside the embeddings' in
 * index_meta.json, ties it to the embeddings it was built from.
 * @throws ArtifactError naming the file and the first bad row / value
 */
async function loadNeighbors(ctx: LoadContext, indexMeta: IndexMeta | null, exact: ExactBackend, v: Vectors): Promise<NeighborTable | null> {
  const { source, opts, F, log } = ctx;
  const { n, dim, emb } = v;
  const mode = opts.neighborsTable;
  if (mode === 'off') return null;
  const entry = indexMeta?.neighbors ?? null;
  if (!entry) {
    if (mode === 'require') {
      throw new ArtifactError(F.index_meta, `NEIGHBORS_TABLE=require but ${indexMeta ? 'no "neighbors" entry is listed' : 'the file is missing'} (set NEIGHBORS_TABLE=auto to serve without the table)`);
    }
    return null;
  }
  if (mode === 'auto' && opts.backend === 'pgvector') {
    log('neighbors table not used: VECTOR_BACKEND=pgvector answers from the database (NEIGHBORS_TABLE=require uses it)', { phase: 'neighbors' });
    return null;
  }
  if (!(await source.exists(F.neighbors_table))) {
    if (mode === 'require') throw new ArtifactError(F.neighbors_table, `missing, but ${F.index_meta} lists it and NEIGHBORS_TABLE=require`);
    log(`neighbors table not used: ${F.neighbors_table} is listed in ${F.index_meta} but missing`, { phase: 'neighbors' });
    return null;
  }
  const bytes = await source.read(F.neighbors_table, { maxBytes: entry.size_bytes, why: `size_bytes in ${F.index_meta}` });
  const table = parseNeighborTable(bytes, entry, n, sha256(bytes), emb, dim, F);
  if (table.ranking !== COSINE_RANKING) {
    log(`neighbors table ordered by ${table.ranking.method}: served in its order, scored by the cosine (no cosine-order checks)`, {
      phase: 'neighbors',
      ranking: table.order,
      rerank: table.ranking,
    });
    return table;
  }
  const listed = Math.min(table.k, n - 1);
  for (const row of sampleRows(n, NEIGHBORS_SPOT_CHECK, 2)) {
    const q = new Float64Array(dim);
    for (let d = 0; d < dim; d++) q[d] = emb[row * dim + d]!;
    const want = exact.searchSync(q, listed, queryExclusion(row));
    want.forEach((h, j) => {
      const got = table.rows[row * table.k + j]!;
      if (got === h.row) return;
      const gotScore = dotRow(emb, dim, got, q);
      if (Math.abs(gotScore - h.score) > 1e-12) {
        throw new ArtifactError(F.neighbors_table, `row ${row} column ${j} lists row ${got} (score ${gotScore}) but exact search ranks row ${h.row} (score ${h.score}) there: the table does not match ${F.embeddings_f32}`);
      }
    });
  }
  return table;
}

/**
 * Recall@5 / @10 of the pgvector path against exact search on a seeded sample of tracks (self excluded): the
 * fraction of the exact top-k track rows that pgvector also returns.
 */
async function measurePgvectorRecall(pgb: PgvectorBackend, exact: ExactBackend, v: Vectors, sampleSize: number, seed: number): Promise<RecallReport | null> {
  const { n, dim, emb, trackIds } = v;
  if (sampleSize <= 0 || n < 2) return null;
  const t0 = performance.now();
  const rows = sampleRows(n, Math.min(sampleSize, n), seed);
  let truthSec = 0;
  let hit5 = 0;
  let hit10 = 0;
  let tot5 = 0;
  let tot10 = 0;
  for (const row of rows) {
    const q = new Float64Array(dim);
    for (let d = 0; d < dim; d++) q[d] = emb[row * dim + d]!;
    const tt = performance.now();
    const truth = exact.searchSync(q, 10, queryExclusion(row)).map((h) => h.row);
    truthSec += (performance.now() - tt) / 1000;
    const got = new Set((await pgb.searchTrack(trackIds[row]!, 10, false)).map((h) => h.row));
    truth.forEach((r, i) => {
      if (i < 5) {
        tot5++;
        if (got.has(r)) hit5++;
      }
      tot10++;
      if (got.has(r)) hit10++;
    });
  }
  const info = pgb.describe();
  return {
    sample_size: rows.length,
    seed,
    target_recall_at_5: 0,
    ef: info.ef_search as number,
    ef_tried: [info.ef_search as number],
    ladder: [{ ef: info.ef_search as number, recall_at_5: tot5 ? hit5 / tot5 : 1, recall_at_10: tot10 ? hit10 / tot10 : 1 }],
    truth: 'exact scan',
    truth_sec: truthSec,
    recall_at_5: tot5 ? hit5 / tot5 : 1,
    recall_at_10: tot10 ? hit10 / tot10 : 1,
    measure_sec: (performance.now() - t0) / 1000,
  };
}
