/**
 * Read and check the recommenders of a version folder (recs/, research-job train-recs) into a `RecsModel`.
 * recs/ is optional: without recs_meta.json (or when the artifact list / schema folder lacks a recs key) the
 * feature is off with the reason the recommendation endpoints answer 503 with. When recs_meta.json is there,
 * everything must hold or the version is refused (ArtifactError naming the file): the JSON files match their
 * schemas; recs_meta's track_ids_sha256 is the sha256 of the loaded track_ids.json bytes, its dim and
 * embeddings sha256 those of the loaded embeddings, its artifact_version the version's; every binary file has the
 * size its recorded shape gives (checked before a byte is read) and its recorded sha256; the factors are finite;
 * the CSR offsets start at 0, never decrease and end at the entry count; every entry's track row is in range and
 * ascending within a listener, its weight finite and non-zero; every listener id is unique; every popularity
 * track id is in the catalogue.
 */

import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import path from 'node:path';

import { dotRow } from '../exact.js';
import { ArtifactError } from '../errors.js';
import { parseJson } from '../json.js';
import type { ArtifactFile, OptionalArtifactKey } from '../layout.js';
import type { Feature } from '../optional.js';
import { RowIndex } from '../rowIndex.js';
import type { SchemaRegistry } from '../schemas.js';
import { SimdScorer } from '../simd.js';
import type { ArtifactSource } from '../source.js';
import { EVENTS, type EventWeights, type RecsModel } from './model.js';

/** The loaded version the recommenders must have been trained for. */
export interface RecsServedVersion {
  readonly artifactVersion: string;
  /** sha256 of the loaded track_ids.json bytes (embeddings_meta.json records it, the loader checked it) */
  readonly trackIdsSha256: string;
  readonly embeddingsSha256: string;
  readonly dim: number;
  readonly count: number;
  readonly rowById: ReadonlyMap<string, number>;
  /** run the cf scan on the WebAssembly SIMD kernel when possible */
  readonly simdKernel: boolean;
}

/** The 503 of the recommendation endpoints for a version without recs/. */
export const NO_RECS = 'this version folder has no recs/ (run research-job train-recs)';

/** One binary file recs_meta.json records. */
interface FileEntry {
  file: string;
  sha256: string;
  shape: number[];
  dtype: string;
}

/** The fields of recs/recs_meta.json Node uses (recs_meta.schema.json is the authority). */
interface RecsMetaFile {
  artifact_version: string;
  embeddings: { track_ids_sha256: string; embeddings_sha256?: string; dim: number };
  event_weights: Record<string, number>;
  models: { als: { factors: number }; hybrid: { cf_weight: number; light_user_events: number } };
  files: Record<string, FileEntry>;
}

interface UserIdsFile {
  count: number;
  user_ids: string[];
}

interface PopularityFile {
  global: Array<{ track_id: string; score: number }>;
  trending: Array<{ track_id: string; score: number }>;
}

const KEYS = [
  'recs_meta',
  'recs_user_ids',
  'recs_popularity',
  'recs_user_factors',
  'recs_item_factors',
  'recs_user_items',
  'recs_user_items_offsets',
  'recs_user_items_weights',
] as const satisfies readonly OptionalArtifactKey[];
type RecsKey = (typeof KEYS)[number];
type RecsPaths = Record<RecsKey, ArtifactFile>;

const LITTLE_ENDIAN = endianness() === 'LE';

const off = (reason: string): Feature<RecsModel> => ({ on: false, reason });

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * The recommenders of the version `source` holds, or why they are off.
 * @throws ArtifactError naming the recs file and what is wrong with it
 */
export async function readRecs(source: ArtifactSource, schemas: SchemaRegistry, v: RecsServedVersion): Promise<Feature<RecsModel>> {
  // every listed file is probed (a listed path is always asked about, also when a recs key is off), so that a
  // folder missing its sidecar is named
  const present = new Map<RecsKey, boolean>();
  for (const key of KEYS) {
    const p = schemas.optionalPaths[key].path;
    if (p !== null) present.set(key, await source.exists(p));
  }
  const offKey = KEYS.find((k) => schemas.optionalPaths[k].path === null);
  if (offKey !== undefined) return off(`the recommendations are off in this server: ${schemas.optionalPaths[offKey].off}`);
  const F = Object.fromEntries(KEYS.map((k) => [k, schemas.optionalPaths[k].path])) as RecsPaths;
  if (!present.get('recs_meta')) {
    const stray = KEYS.filter((k) => present.get(k)).map((k) => F[k]);
    return off(stray.length > 0 ? `${NO_RECS}: ${stray.join(', ')} without ${F.recs_meta}` : NO_RECS);
  }
  return { on: true, value: await readModel(source, schemas, v, F) };
}

/** The whole model, every file checked. @throws ArtifactError naming the file */
async function readModel(source: ArtifactSource, schemas: SchemaRegistry, v: RecsServedVersion, F: RecsPaths): Promise<RecsModel> {
  const metaBytes = await source.read(F.recs_meta);
  const meta = schemas.validate<RecsMetaFile>('recs_meta', parseJson(F.recs_meta, metaBytes), F.recs_meta);
  checkMeta(meta, v, F.recs_meta);
  const factors = meta.models.als.factors;
  const entry = (file: ArtifactFile): FileEntry | undefined => fileEntry(meta, file);
  const need = (file: ArtifactFile): FileEntry => {
    const e = entry(file);
    if (!e) throw new ArtifactError(F.recs_meta, `files records no entry for ${path.posix.basename(file)}`);
    return e;
  };

  const userIdsBytes = await source.read(F.recs_user_ids);
  checkJsonSha(userIdsBytes, entry(F.recs_user_ids), F.recs_user_ids, F.recs_meta);
  const ids = schemas.validate<UserIdsFile>('recs_user_ids', parseJson(F.recs_user_ids, userIdsBytes), F.recs_user_ids);
  if (ids.count !== ids.user_ids.length) throw new ArtifactError(F.recs_user_ids, `count is ${ids.count} but the file lists ${ids.user_ids.length} user ids`);
  const built = RowIndex.build(ids.user_ids);
  if ('repeatRow' in built) throw new ArtifactError(F.recs_user_ids, `user id ${JSON.stringify(ids.user_ids[built.repeatRow])} repeats`);
  const users = ids.user_ids.length;

  const bin = (file: ArtifactFile, shape: number[], dtype: string) => readBinary(source, file, need(file), shape, dtype, F.recs_meta);
  const userFactors = toFloat32(await bin(F.recs_user_factors, [users, factors], 'float32'));
  const itemFactors = toFloat32(await bin(F.recs_item_factors, [v.count, factors], 'float32'));
  checkFinite(userFactors, factors, F.recs_user_factors);
  checkFinite(itemFactors, factors, F.recs_item_factors);
  const offsets = readOffsets(await bin(F.recs_user_items_offsets, [users + 1], 'int64'), F.recs_user_items_offsets);
  const nnz = offsets[users]!;
  const items = toInt32(await bin(F.recs_user_items, [nnz], 'int32'));
  const weights = toFloat32(await bin(F.recs_user_items_weights, [nnz], 'float32'));
  checkCsr(offsets, items, weights, v.count, ids.user_ids, F);

  const popBytes = await source.read(F.recs_popularity);
  checkJsonSha(popBytes, entry(F.recs_popularity), F.recs_popularity, F.recs_meta);
  const pop = schemas.validate<PopularityFile>('recs_popularity', parseJson(F.recs_popularity, popBytes), F.recs_popularity);
  // the global list is checked too (its ids), though scoring serves trending (research_job/recs/scoring.py)
  scoresByRow(pop.global, v, F.recs_popularity, 'global');

  const simd = v.simdKernel ? SimdScorer.create(itemFactors, factors, v.count) : null;
  const served = simd ? simd.embeddings : itemFactors;
  return Object.freeze({
    metaFile: F.recs_meta,
    userIds: Object.freeze([...ids.user_ids]),
    userRow: built.index,
    users,
    factors,
    userFactors,
    itemFactors: served,
    itemScores: simd ? (q: Float64Array) => simd.scoreAll(q) : jsScorer(served, factors, v.count),
    offsets,
    items,
    weights,
    trending: scoresByRow(pop.trending, v, F.recs_popularity, 'trending'),
    cfWeight: meta.models.hybrid.cf_weight,
    lightUserEvents: meta.models.hybrid.light_user_events,
    eventWeights: eventWeights(meta, F.recs_meta),
  });
}

/** recs_meta.json against the loaded version: artifact_version, track_ids sha256, embeddings sha256 and dim. */
function checkMeta(meta: RecsMetaFile, v: RecsServedVersion, file: ArtifactFile): void {
  if (meta.artifact_version !== v.artifactVersion) throw new ArtifactError(file, `artifact_version is '${meta.artifact_version}' but the embeddings are of '${v.artifactVersion}'`);
  if (meta.embeddings.track_ids_sha256 !== v.trackIdsSha256) {
    throw new ArtifactError(file, `embeddings.track_ids_sha256 is ${meta.embeddings.track_ids_sha256} but the loaded track_ids.json hashes to ${v.trackIdsSha256} (trained for another catalogue: rerun research-job train-recs)`);
  }
  if (meta.embeddings.embeddings_sha256 !== undefined && meta.embeddings.embeddings_sha256 !== v.embeddingsSha256) {
    throw new ArtifactError(file, `embeddings.embeddings_sha256 is ${meta.embeddings.embeddings_sha256} but the loaded embeddings hash to ${v.embeddingsSha256} (rerun research-job train-recs)`);
  }
  if (meta.embeddings.dim !== v.dim) throw new ArtifactError(file, `embeddings.dim is ${meta.embeddings.dim} but the loaded embeddings have dim ${v.dim}`);
  const f = meta.models.als.factors;
  if (!Number.isInteger(f) || f < 1) throw new ArtifactError(file, `models.als.factors is ${JSON.stringify(f)}, expected an integer >= 1`);
  const { cf_weight: w, light_user_events: l } = meta.models.hybrid;
  if (!(w >= 0 && w <= 1)) throw new ArtifactError(file, `models.hybrid.cf_weight is ${JSON.stringify(w)}, expected a number in [0, 1]`);
  if (!(l >= 0 && Number.isFinite(l))) throw new ArtifactError(file, `models.hybrid.light_user_events is ${JSON.stringify(l)}, expected a number >= 0`);
}

function eventWeights(meta: RecsMetaFile, file: ArtifactFile): EventWeights {
  const out: Partial<Record<(typeof EVENTS)[number], number>> = {};
  for (const e of EVENTS) {
    const w = meta.event_weights?.[e];
    if (typeof w !== 'number' || !Number.isFinite(w)) throw new ArtifactError(file, `event_weights.${e} is ${JSON.stringify(w)}, expected a finite number`);
    out[e] = w;
  }
  return Object.freeze(out as Record<(typeof EVENTS)[number], number>);
}

/** The entry of recs_meta.json's `files` naming `file` (by its version-folder path, its recs/-relative path or its name). */
function fileEntry(meta: RecsMetaFile, file: ArtifactFile): FileEntry | undefined {
  const base = path.posix.basename(file);
  return Object.values(meta.files ?? {}).find((e) => e && (e.file === file || e.file === base || file.endsWith(`/${e.file}`)));
}

/** A JSON file's sha256 against its `files` entry, when recs_meta.json lists one. */
function checkJsonSha(bytes: Buffer, entry: FileEntry | undefined, file: ArtifactFile, metaFile: ArtifactFile): void {
  if (entry === undefined) return;
  const got = sha256(bytes);
  if (got !== entry.sha256) throw new ArtifactError(file, `sha256 is ${got} but ${metaFile} records ${entry.sha256}`);
}

/** A binary file of `shape` x `dtype`: shape and dtype as recorded, the size checked before reading, the sha256. */
async function readBinary(source: ArtifactSource, file: ArtifactFile, entry: FileEntry, shape: number[], dtype: string, metaFile: ArtifactFile): Promise<Buffer> {
  const name = path.posix.basename(file);
  if (entry.dtype !== dtype) throw new ArtifactError(metaFile, `files entry of ${name} has dtype '${entry.dtype}', expected '${dtype}'`);
  if (!Array.isArray(entry.shape) || entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
    throw new ArtifactError(metaFile, `files entry of ${name} has shape ${JSON.stringify(entry.shape)}, expected ${JSON.stringify(shape)}`);
  }
  const bytes = shape.reduce((a, b) => a * b, 1) * (dtype === 'int64' ? 8 : 4);
  const buf = await source.read(file, { exactBytes: bytes, why: `shape ${JSON.stringify(shape)} of ${dtype} in ${metaFile}` });
  const got = sha256(buf);
  if (got !== entry.sha256) throw new ArtifactError(file, `sha256 is ${got} but ${metaFile} records ${entry.sha256}`);
  return buf;
}

/** Little-endian float32 values, copied (so that the array is aligned and owns its memory). */
function toFloat32(buf: Buffer): Float32Array {
  if (LITTLE_ENDIAN) return new Float32Array(new Uint8Array(buf).buffer);
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** Little-endian int32 values, copied. */
function toInt32(buf: Buffer): Int32Array {
  if (LITTLE_ENDIAN) return new Int32Array(new Uint8Array(buf).buffer);
  const out = new Int32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readInt32LE(i * 4);
  return out;
}

/** Every value finite (the row is named otherwise). */
function checkFinite(a: Float32Array, width: number, file: ArtifactFile): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) throw new ArtifactError(file, `row ${Math.floor(i / width)} holds a non-finite value`);
  }
}

/** int64 offsets: 0 first, never decreasing, each below 2^31 (the entry files are indexed by int32). */
function readOffsets(buf: Buffer, file: ArtifactFile): Int32Array {
  const n = buf.length / 8;
  const out = new Int32Array(n);
  let prev = 0n;
  for (let i = 0; i < n; i++) {
    const o = buf.readBigInt64LE(i * 8);
    if (i === 0 && o !== 0n) throw new ArtifactError(file, `offsets[0] is ${o}, expected 0`);
    if (o < prev) throw new ArtifactError(file, `offsets[${i}] = ${o} is below offsets[${i - 1}] = ${prev}`);
    if (o >= 2n ** 31n) throw new ArtifactError(file, `offsets[${i}] = ${o} is past the 2^31 - 1 entries the server indexes`);
    out[i] = Number(o);
    prev = o;
  }
  return out;
}

/** Each listener's entries: track rows in range and strictly ascending, weights finite and non-zero. */
function checkCsr(offsets: Int32Array, items: Int32Array, weights: Float32Array, tracks: number, userIds: readonly string[], F: RecsPaths): void {
  for (let u = 0; u < userIds.length; u++) {
    let prev = -1;
    for (let e = offsets[u]!; e < offsets[u + 1]!; e++) {
      const row = items[e]!;
      if (row < 0 || row >= tracks) throw new ArtifactError(F.recs_user_items, `entry ${e} (user ${JSON.stringify(userIds[u])}) is track row ${row}, outside 0..${tracks - 1}`);
      if (row <= prev) throw new ArtifactError(F.recs_user_items, `entry ${e} (user ${JSON.stringify(userIds[u])}): track rows are not strictly ascending (${prev} then ${row})`);
      prev = row;
      const w = weights[e]!;
      if (!Number.isFinite(w) || w === 0) throw new ArtifactError(F.recs_user_items_weights, `entry ${e} (user ${JSON.stringify(userIds[u])}) has weight ${w}, expected a finite non-zero confidence`);
    }
  }
}

/** A popularity list as a score per catalogue row, 0 off the list (every track id in the catalogue, once, its score finite). */
function scoresByRow(list: Array<{ track_id: string; score: number }>, v: RecsServedVersion, file: ArtifactFile, name: string): Float64Array {
  const scores = new Float64Array(v.count);
  const seen = new Set<number>();
  list.forEach((e, i) => {
    const row = v.rowById.get(e.track_id);
    if (row === undefined) throw new ArtifactError(file, `${name}[${i}]: track id ${JSON.stringify(e.track_id)} is not in the catalogue (track_ids.json)`);
    if (seen.has(row)) throw new ArtifactError(file, `${name}[${i}]: track id ${JSON.stringify(e.track_id)} is listed twice`);
    if (!Number.isFinite(e.score)) throw new ArtifactError(file, `${name}[${i}]: score ${e.score} is not finite`);
    seen.add(row);
    scores[row] = e.score;
  });
  return scores;
}

/** Scores of every row of `m` (count x width) against a query, by the exact scan's dot product, into one reused buffer. */
export function jsScorer(m: Float32Array, width: number, count: number): (q: Float64Array) => Float64Array {
  const out = new Float64Array(count);
  return (q) => {
    for (let r = 0; r < count; r++) out[r] = dotRow(m, width, r, q);
    return out;
  };
}
