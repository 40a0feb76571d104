/**
 * Load one artifact version through an `ArtifactSource` into an immutable `LoadedState`, checking everything
 * the API relies on. Refuses (ArtifactError naming the file and the mismatch) when: a JSON file fails its
 * schema; N or dim disagree between files; embeddings.f32 is not N x D x 4 bytes or holds non-finite values or
 * rows that are not unit length; a recorded sha256 differs from the file's; ids repeat; a track id has no
 * metadata row; the HNSW index disagrees with the embeddings (element count, dim, labels, vectors); the
 * precomputed neighbour table index/neighbors.i32 is malformed or disagrees with exact search on a sample.
 */

import { createHash } from 'node:crypto';
import { endianness } from 'node:os';

import { ExactBackend } from './backends/exact.js';
import { dotRow } from './exact.js';
import { HnswBackend } from './backends/hnsw.js';
import { PgvectorBackend } from './backends/pgvector.js';
import type { VectorBackend } from './backends/types.js';
import { parseTracksCsv } from './csv.js';
import { ArtifactError } from './errors.js';
import { readHnswHeader } from './hnswHeader.js';
import { parseNeighborTable, type NeighborTable } from './neighbors.js';
import { renderTrackJson } from './nearestBody.js';
import { relativeTo, type ArtifactFile, type ArtifactPaths } from './layout.js';
import { sampleRows } from './random.js';
import { SimdScorer } from './simd.js';
import { tuneRecall } from './recall.js';
import type { BackendChoice, NeighborsTableMode } from './options.js';
import type { SchemaName, SchemaRegistry } from './schemas.js';
import type { ArtifactSource } from './source.js';
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
  log?: (msg: string, fields?: Record<string, unknown>) => void;
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

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

async function readJson<T>(source: ArtifactSource, file: ArtifactFile, schemas: SchemaRegistry, name: SchemaName): Promise<{ obj: T; bytes: Buffer }> {
  const bytes = await source.read(file);
  let obj: unknown;
  try {
    obj = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ArtifactError(file, `not valid JSON: ${(err as Error).message}`);
  }
  return { obj: schemas.validate<T>(name, obj, file), bytes };
}

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

/**
 * Read, validate and cross-check one artifact version; build the backends and measure HNSW recall.
 * @throws ArtifactError naming the file and the mismatch
 */
export async function loadArtifacts(source: ArtifactSource, schemas: SchemaRegistry, options: Partial<LoadOptions> = {}): Promise<LoadedState> {
  const opts = { ...DEFAULT_LOAD_OPTIONS, ...options };
  const F = schemas.paths;
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  let tPhase = t0;
  const phase = (name: string, fields: Record<string, unknown> = {}): void => {
    const now = performance.now();
    log(`loaded ${name}`, { phase: name, ms: Math.round(now - tPhase), ...fields });
    tPhase = now;
  };

  // --- embeddings sidecar, ids, vectors
  const { obj: meta } = await readJson<EmbeddingsMeta>(source, F.embeddings_meta, schemas, 'embeddings_meta');
  const idsBytes = await source.read(F.track_ids_json);
  let idsRaw: unknown;
  try {
    idsRaw = JSON.parse(idsBytes.toString('utf8'));
  } catch (err) {
    throw new ArtifactError(F.track_ids_json, `not valid JSON: ${(err as Error).message}`);
  }
  const rawList = (idsRaw as { track_ids?: unknown }).track_ids;
  if (Array.isArray(rawList)) {
    const seen = new Set<unknown>();
    for (const id of rawList) {
      if (seen.has(id)) throw new ArtifactError(F.track_ids_json, `track id ${JSON.stringify(id)} repeats`);
      seen.add(id);
    }
  }
  const ids = schemas.validate<TrackIdsFile>('track_ids', idsRaw, F.track_ids_json);
  const n = ids.track_ids.length;
  const dim = meta.dim;
  if (ids.count !== n) throw new ArtifactError(F.track_ids_json, `count is ${ids.count} but the file lists ${n} track ids`);
  if (meta.count !== n) throw mismatch(F.embeddings_meta, 'count', meta.count, n, F.track_ids_json);
  const idsSha = sha256(idsBytes);
  if (meta.files.track_ids_sha256 !== idsSha) {
    throw new ArtifactError(F.track_ids_json, `sha256 is ${idsSha} but ${F.embeddings_meta} records ${meta.files.track_ids_sha256}`);
  }

  const embBytes = await source.read(F.embeddings_f32);
  const expectedBytes = n * dim * 4;
  if (embBytes.length !== expectedBytes) {
    throw new ArtifactError(F.embeddings_f32, `size is ${embBytes.length} bytes but N x D x 4 = ${n} x ${dim} x 4 = ${expectedBytes} (N from ${F.track_ids_json}, D from ${F.embeddings_meta})`);
  }
  const embSha = sha256(embBytes);
  if (meta.files.embeddings_sha256 !== embSha) {
    throw new ArtifactError(F.embeddings_f32, `sha256 is ${embSha} but ${F.embeddings_meta} records ${meta.files.embeddings_sha256}`);
  }
  const fileEmb = toFloat32(embBytes);
  // with the SIMD kernel the rows live in wasm memory; every reader uses that one copy
  const simd = opts.simdKernel ? SimdScorer.create(fileEmb, dim, n) : null;
  const emb = simd ? simd.embeddings : fileEmb;
  for (let row = 0; row < n; row++) {
    let ss = 0;
    for (let d = 0; d < dim; d++) {
      const v = emb[row * dim + d]!;
      if (!Number.isFinite(v)) throw new ArtifactError(F.embeddings_f32, `row ${row} (track ${ids.track_ids[row]}) holds a non-finite value`);
      ss += v * v;
    }
    if (Math.abs(Math.sqrt(ss) - 1) > opts.normTolerance) {
      throw new ArtifactError(F.embeddings_f32, `row ${row} (track ${ids.track_ids[row]}) has L2 norm ${Math.sqrt(ss)}, but ${F.embeddings_meta} says normalization "l2"`);
    }
  }
  phase('embeddings', { count: n, dim, exact_kernel: simd ? 'wasm-simd' : 'js' });

  // --- metadata
  const csvRows = parseTracksCsv(await source.read(F.tracks_csv), schemas);
  const byId = new Map<string, TrackRow>(csvRows.map((r) => [r.track_id, r]));
  const rowById = new Map<string, number>();
  const tracks: TrackRow[] = [];
  ids.track_ids.forEach((id, row) => {
    const t = byId.get(id);
    if (!t) throw new ArtifactError(F.tracks_csv, `track id '${id}' (row ${row} of ${F.embeddings_f32}) has no metadata row`);
    rowById.set(id, row);
    tracks.push(Object.freeze(t));
  });
  const albumIndex = new Map<string, number>();
  const albumOfRow = new Int32Array(n);
  const composerLists = new Map<string, number[]>();
  tracks.forEach((t, row) => {
    let a = albumIndex.get(t.album_id);
    if (a === undefined) albumIndex.set(t.album_id, (a = albumIndex.size));
    albumOfRow[row] = a;
    if (t.composer !== null) {
      const list = composerLists.get(t.composer) ?? [];
      list.push(row);
      composerLists.set(t.composer, list);
    }
  });
  const albumSize = new Int32Array(albumIndex.size);
  for (const a of albumOfRow) albumSize[a]!++;
  const composerRows = new Map<string, Int32Array>([...composerLists].map(([c, rows]) => [c, Int32Array.from(rows)]));
  phase('metadata', { metadata_rows: csvRows.length, albums: albumIndex.size, composers: composerRows.size });
  const trackJson = renderTrackJson(tracks);
  phase('track json', { size_bytes: trackJson.bytes.length });

  // --- index
  let indexMeta: IndexMeta | null = null;
  let hnswEntry: IndexEntry | null = null;
  if (await source.exists(F.index_meta)) {
    indexMeta = (await readJson<IndexMeta>(source, F.index_meta, schemas, 'index_meta')).obj;
    if (indexMeta.count !== n) throw mismatch(F.index_meta, 'count', indexMeta.count, n, F.track_ids_json);
    if (indexMeta.dim !== dim) throw mismatch(F.index_meta, 'dim', indexMeta.dim, dim, F.embeddings_meta);
    if (indexMeta.embeddings_sha256 !== embSha) {
      throw new ArtifactError(F.index_meta, `embeddings_sha256 is ${indexMeta.embeddings_sha256} but ${F.embeddings_f32} hashes to ${embSha}`);
    }
    if (indexMeta.artifact_version !== meta.artifact_version) {
      throw mismatch(F.index_meta, 'artifact_version', indexMeta.artifact_version, meta.artifact_version, F.embeddings_meta);
    }
    hnswEntry = indexMeta.indexes.find((e) => e.name === 'hnswlib') ?? null;
  }
  const exact = new ExactBackend(emb, dim, n, simd);
  const neighbors = await loadNeighbors(source, F, indexMeta, opts, exact, emb, dim, n, log);
  if (neighbors) phase('neighbors', { k: neighbors.k, size_bytes: neighbors.rows.byteLength, scores_bytes: neighbors.scores.text.byteLength + neighbors.scores.offsets.byteLength });
  let backend: VectorBackend = exact;
  let recall: RecallReport | null = null;
  const hnswWanted = opts.backend === 'hnsw' || (opts.backend === 'auto' && hnswEntry !== null && (await source.exists(F.hnsw_index)));
  if (opts.backend === 'hnsw' && !hnswEntry) {
    throw new ArtifactError(F.index_meta, `VECTOR_BACKEND=hnsw but ${indexMeta ? 'no "hnswlib" entry is listed' : 'the file is missing'} (set VECTOR_BACKEND=exact to serve without the index)`);
  }
  if (hnswWanted && hnswEntry) {
    const hnswFile = relativeTo(F.index_meta, F.hnsw_index);
    if (hnswEntry.file !== hnswFile || hnswEntry.space !== 'ip') {
      throw new ArtifactError(F.index_meta, `hnswlib entry has file '${hnswEntry.file}', space '${hnswEntry.space}'; expected '${hnswFile}', 'ip'`);
    }
    const idxBytes = await source.read(F.hnsw_index);
    const idxSha = sha256(idxBytes);
    if (idxSha !== hnswEntry.sha256) throw new ArtifactError(F.hnsw_index, `sha256 is ${idxSha} but ${F.index_meta} records ${hnswEntry.sha256}`);
    if (idxBytes.length !== hnswEntry.size_bytes) throw mismatch(F.hnsw_index, 'size in bytes', idxBytes.length, hnswEntry.size_bytes, F.index_meta);
    const header = readHnswHeader(idxBytes);
    if (!header) throw new ArtifactError(F.hnsw_index, 'is not an hnswlib index (header unreadable)');
    if (header.count !== n) throw new ArtifactError(F.hnsw_index, `holds ${header.count} elements but ${F.track_ids_json} lists ${n}`);
    if (header.dataSize !== dim * 4) {
      throw new ArtifactError(F.hnsw_index, `stores ${header.dataSize} bytes per vector (dim ${header.dataSize / 4}) but ${F.embeddings_meta} says dim ${dim}`);
    }
    if (hnswEntry.params.M !== undefined && hnswEntry.params.M !== header.M) throw mismatch(F.hnsw_index, 'M', header.M, hnswEntry.params.M, F.index_meta);
    const index = HnswBackend.readIndex(await source.localPath(F.hnsw_index), dim);
    if (index.getCurrentCount() !== n) throw new ArtifactError(F.hnsw_index, `addon reads ${index.getCurrentCount()} elements, expected ${n}`);
    const labels = index.getIdsList().sort((a, b) => a - b);
    labels.forEach((label, i) => {
      if (label !== i) throw new ArtifactError(F.hnsw_index, `labels are not the row indices 0..${n - 1} (found label ${label} at position ${i})`);
    });
    for (const row of sampleRows(n, 64, 1)) {
      const p = index.getPoint(row);
      for (let d = 0; d < dim; d++) {
        if (Math.fround(p[d]!) !== emb[row * dim + d]) {
          throw new ArtifactError(F.hnsw_index, `vector of label ${row} differs from row ${row} of ${F.embeddings_f32} (component ${d})`);
        }
      }
    }
    const startEf = opts.hnswEf ?? hnswEntry.params.ef_search ?? 64;
    const hnsw = new HnswBackend(index, emb, dim, n, startEf, {
      M: header.M,
      ef_construction: header.efConstruction,
      ef_search_recorded: hnswEntry.params.ef_search ?? null,
    });
    phase('hnsw index', { M: header.M, ef_construction: header.efConstruction });
    recall = tuneRecall(hnsw, exact, emb, dim, n, {
      sampleSize: opts.recallSample,
      seed: opts.recallSeed,
      target: opts.recallTarget,
      fixedEf: opts.hnswEf,
      startEf,
      maxEf: opts.hnswEfMax,
      table: neighbors,
    });
    phase('recall', { ...recall });
    backend = hnsw;
  }

  if (opts.backend === 'pgvector') {
    if (!opts.pgvector) throw new ArtifactError('DATABASE_URL', 'VECTOR_BACKEND=pgvector needs DATABASE_URL');
    const pgb = await PgvectorBackend.open({
      ...opts.pgvector,
      artifactVersion: meta.artifact_version,
      trackIds: ids.track_ids,
      dim,
      contentSha256: source.release?.contentSha256 ?? null,
    });
    phase('pgvector', pgb.describe());
    recall = await measurePgvectorRecall(pgb, exact, emb, dim, n, ids.track_ids, opts.recallSample, opts.recallSeed);
    phase('recall', { ...recall });
    backend = pgb;
  }

  // --- evaluation
  let evalResults: EvalResults | null = null;
  if (await source.exists(F.eval_results)) {
    evalResults = (await readJson<EvalResults>(source, F.eval_results, schemas, 'eval_results')).obj;
    if (evalResults.n_tracks !== n) throw mismatch(F.eval_results, 'n_tracks', evalResults.n_tracks, n, F.track_ids_json);
    if (evalResults.embeddings_sha256 !== embSha) {
      throw new ArtifactError(F.eval_results, `embeddings_sha256 is ${evalResults.embeddings_sha256} but ${F.embeddings_f32} hashes to ${embSha}`);
    }
    if (evalResults.artifact_version !== meta.artifact_version) {
      throw mismatch(F.eval_results, 'artifact_version', evalResults.artifact_version, meta.artifact_version, F.embeddings_meta);
    }
  }
  phase('eval', { present: evalResults !== null });

  return Object.freeze({
    artifactVersion: meta.artifact_version,
    source: source.description,
    release: source.release?.release ?? null,
    contentSha256: source.release?.contentSha256 ?? null,
    loadedAt: new Date().toISOString(),
    loadSec: (performance.now() - t0) / 1000,
    dim,
    count: n,
    embeddings: emb,
    embeddingsSha256: embSha,
    trackIds: Object.freeze([...ids.track_ids]),
    rowById,
    tracks: Object.freeze(tracks),
    trackJson,
    albumOfRow,
    albumSize,
    composerRows,
    embeddingsMeta: meta,
    indexMeta,
    hnswEntry,
    evalResults,
    exact,
    backend,
    recall,
    neighbors,
  });
}

/**
 * index/neighbors.i32 when index_meta lists it and NEIGHBORS_TABLE allows it (auto: when listed and present,
 * except with VECTOR_BACKEND=pgvector, whose answers come from the database; require: always, refusing
 * without it; off: never). Checked in full (parseNeighborTable) and, on a seeded sample of rows, against exact
 * search: same rows in order, or a swap only between scores equal to 1e-12 (a float64 summation-order tie).
 * @throws ArtifactError naming the file and the first bad row / value
 */
async function loadNeighbors(
  source: ArtifactSource,
  F: ArtifactPaths,
  indexMeta: IndexMeta | null,
  opts: LoadOptions,
  exact: ExactBackend,
  emb: Float32Array,
  dim: number,
  n: number,
  log: (msg: string, fields?: Record<string, unknown>) => void,
): Promise<NeighborTable | null> {
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
  const bytes = await source.read(F.neighbors_table);
  const table = parseNeighborTable(bytes, entry, n, sha256(bytes), emb, dim, F);
  const listed = Math.min(table.k, n - 1);
  for (const row of sampleRows(n, NEIGHBORS_SPOT_CHECK, 2)) {
    const q = new Float64Array(dim);
    for (let d = 0; d < dim; d++) q[d] = emb[row * dim + d]!;
    const want = exact.searchSync(q, listed, { has: (r) => r === row, size: 1 });
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
async function measurePgvectorRecall(
  pgb: PgvectorBackend,
  exact: ExactBackend,
  emb: Float32Array,
  dim: number,
  n: number,
  trackIds: readonly string[],
  sampleSize: number,
  seed: number,
): Promise<RecallReport | null> {
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
    const truth = exact.searchSync(q, 10, { has: (r) => r === row, size: 1 }).map((h) => h.row);
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
