/**
 * The optional artifacts behind the page's features, read at load beside the required ones: the report
 * (eval/report.html; eval/report.json and the figures of eval/figures/ it names, each checked against its
 * recorded sha256), the clusters (eval/clusters.json, indexed by row) and the previews (previews/previews.json;
 * the audio is read on request, see previews.ts). A feature whose key the artifact list does not name, or whose
 * file the version lacks, is off with the reason a 404 gives; a file that is there but fails its schema, its
 * size limit or a cross-check with the embeddings refuses the load (ArtifactError naming the file).
 */

import { createHash } from 'node:crypto';

import { ArtifactError } from './errors.js';
import { parseJson } from './json.js';
import { fileInFolder, type ArtifactFile, type OptionalArtifact, type OptionalArtifactKey } from './layout.js';
import { PreviewStore } from './previews.js';
import type { SchemaRegistry } from './schemas.js';
import type { ArtifactSource } from './source.js';
import type { ClusterEntry, ClustersFile, PreviewsFile, ReportJson } from './types.js';

/** A feature of the loaded version: its value, or why it is off (the message of its 404). */
export type Feature<T> = { readonly on: true; readonly value: T } | { readonly on: false; readonly reason: string };

/** Largest eval/report.html read (its figures are inline as data: URIs). */
export const MAX_REPORT_HTML_BYTES = 64 * 1024 * 1024;
/** Largest figure file, and the most bytes of figures read in all. */
export const MAX_FIGURE_BYTES = 16 * 1024 * 1024;
export const MAX_FIGURES_BYTES = 64 * 1024 * 1024;

/** Media type of a figure, by its name's extension. */
const FIGURE_TYPES: Readonly<Record<string, string>> = { '.png': 'image/png', '.svg': 'image/svg+xml' };

/** One figure report.json names: its bytes, or why it cannot be served. */
export type Figure = { readonly type: string; readonly bytes: Buffer; readonly etag: string } | { readonly missing: string };

/** The cluster of every row clusters.json lists, and the clusters' own fields. */
export interface ClusterIndex {
  /** eval/clusters.json's path in the version folder (for messages) */
  readonly file: ArtifactFile;
  readonly method: string;
  readonly k: number;
  readonly label: string;
  readonly seed: number;
  /** cluster number of each row, -1 for a row clusters.json does not list */
  readonly clusterOfRow: Int32Array;
  readonly confidenceOfRow: Float64Array;
  readonly clusters: ReadonlyMap<number, ClusterEntry>;
  /** rows listed */
  readonly count: number;
}

/** The features of one loaded version. */
export interface OptionalFeatures {
  readonly reportHtml: Feature<Buffer>;
  /** the figures report.json names, by name */
  readonly figures: Feature<ReadonlyMap<string, Figure>>;
  readonly clusters: Feature<ClusterIndex>;
  readonly previews: Feature<PreviewStore>;
}

/** What the optional artifacts are checked against: the loaded embeddings and catalogue. */
export interface ServedVersion {
  readonly artifactVersion: string;
  readonly embeddingsSha256: string;
  readonly embeddingsFile: ArtifactFile;
  readonly rowById: ReadonlyMap<string, number>;
}

interface Ctx {
  readonly source: ArtifactSource;
  readonly schemas: SchemaRegistry;
  readonly v: ServedVersion;
}

const off = (reason: string): { on: false; reason: string } => ({ on: false, reason });
const on = <T>(value: T): { on: true; value: T } => ({ on: true, value });

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** The path of `key` when the list names it and the version has the file; else the feature's reason. */
async function present(ctx: Ctx, key: OptionalArtifactKey, step: string): Promise<{ file: ArtifactFile } | { reason: string }> {
  const entry: OptionalArtifact = ctx.schemas.optionalPaths[key];
  if (entry.path === null) return { reason: `${key} is off in this server: ${entry.off}` };
  if (!(await ctx.source.exists(entry.path))) return { reason: `No ${entry.path} in ${ctx.v.artifactVersion}; run research-job ${step}` };
  return { file: entry.path };
}

/** A JSON artifact read within the default limit and validated against `schema`. */
async function readChecked<T>(ctx: Ctx, file: ArtifactFile, schema: string): Promise<T> {
  return ctx.schemas.validate<T>(schema, parseJson(file, await ctx.source.read(file)), file);
}

/** artifact_version and embeddings_sha256 of `obj` as the loaded embeddings say. */
function sameEmbeddings(ctx: Ctx, file: ArtifactFile, obj: { artifact_version: string; embeddings_sha256: string }): void {
  if (obj.artifact_version !== ctx.v.artifactVersion) throw new ArtifactError(file, `artifact_version is '${obj.artifact_version}' but the embeddings are of '${ctx.v.artifactVersion}'`);
  if (obj.embeddings_sha256 !== ctx.v.embeddingsSha256) {
    throw new ArtifactError(file, `embeddings_sha256 is ${obj.embeddings_sha256} but ${ctx.v.embeddingsFile} hashes to ${ctx.v.embeddingsSha256} (written for other embeddings: rerun research-job report)`);
  }
}

/**
 * Read every optional artifact the list names and the version holds.
 * @throws ArtifactError naming the file: schema, size, artifact_version / embeddings mismatch, unknown track
 */
export async function readOptional(source: ArtifactSource, schemas: SchemaRegistry, v: ServedVersion): Promise<OptionalFeatures> {
  const ctx: Ctx = { source, schemas, v };
  return Object.freeze({
    reportHtml: await readReportHtml(ctx),
    figures: await readFigures(ctx),
    clusters: await readClusters(ctx),
    previews: await readPreviews(ctx),
  });
}

/** eval/report.html, at most MAX_REPORT_HTML_BYTES. */
async function readReportHtml(ctx: Ctx): Promise<Feature<Buffer>> {
  const p = await present(ctx, 'report_html', 'report');
  if ('reason' in p) return off(p.reason);
  return on(await ctx.source.read(p.file, { maxBytes: MAX_REPORT_HTML_BYTES, why: 'the largest report the API serves' }));
}

/**
 * eval/report.json (same embeddings) and each figure it names in eval/figures/: a safe .png/.svg name, at
 * most MAX_FIGURE_BYTES (MAX_FIGURES_BYTES in all), the recorded sha256. A figure whose file is missing is
 * served as a 404 naming it; the others are read now (a report draws a handful of small images).
 */
async function readFigures(ctx: Ctx): Promise<Feature<ReadonlyMap<string, Figure>>> {
  const p = await present(ctx, 'report_json', 'report');
  if ('reason' in p) return off(p.reason);
  const report = await readChecked<ReportJson>(ctx, p.file, 'report');
  sameEmbeddings(ctx, p.file, report);
  const dir = ctx.schemas.optionalPaths.report_figures_dir;
  if (dir.path === null) return off(`report_figures_dir is off in this server: ${dir.off}`);
  const figures = new Map<string, Figure>();
  let total = 0;
  for (const { name, sha256: recorded } of report.figures) {
    const ext = name.slice(name.lastIndexOf('.'));
    const file = fileInFolder(dir.path, name);
    const type = FIGURE_TYPES[ext];
    if (file === null || type === undefined) throw new ArtifactError(p.file, `figure ${JSON.stringify(name)} is not a safe .png or .svg file name`);
    if (figures.has(name)) throw new ArtifactError(p.file, `figure '${name}' is listed twice`);
    if (!(await ctx.source.exists(file))) {
      figures.set(name, { missing: `Figure '${name}' is listed in ${p.file} but ${file} is missing from ${ctx.v.artifactVersion}; rerun research-job report` });
      continue;
    }
    const bytes = await ctx.source.read(file, { maxBytes: Math.min(MAX_FIGURE_BYTES, MAX_FIGURES_BYTES - total), why: `at most ${MAX_FIGURE_BYTES} per figure, ${MAX_FIGURES_BYTES} in all` });
    total += bytes.length;
    const got = sha256(bytes);
    if (got !== recorded) throw new ArtifactError(file, `sha256 is ${got} but ${p.file} records ${recorded}`);
    figures.set(name, Object.freeze({ type, bytes, etag: `"${got.slice(0, 32)}"` }));
  }
  return on(figures);
}

/**
 * eval/clusters.json (same embeddings): every track id in the catalogue and listed once, every track's cluster
 * among `clusters`, each cluster number once; indexed by row.
 */
async function readClusters(ctx: Ctx): Promise<Feature<ClusterIndex>> {
  const p = await present(ctx, 'clusters_json', 'report');
  if ('reason' in p) return off(p.reason);
  const c = await readChecked<ClustersFile>(ctx, p.file, 'clusters');
  sameEmbeddings(ctx, p.file, c);
  const bad = (detail: string) => new ArtifactError(p.file, detail);
  const clusters = new Map<number, ClusterEntry>();
  for (const entry of c.clusters) {
    if (clusters.has(entry.cluster)) throw bad(`cluster ${entry.cluster} is listed twice`);
    clusters.set(entry.cluster, Object.freeze(entry));
  }
  const n = ctx.v.rowById.size;
  const clusterOfRow = new Int32Array(n).fill(-1);
  const confidenceOfRow = new Float64Array(n);
  c.tracks.forEach((t, i) => {
    const row = ctx.v.rowById.get(t.track_id);
    if (row === undefined) throw bad(`tracks[${i}]: track id ${JSON.stringify(t.track_id)} is not in the catalogue (track_ids.json)`);
    if (clusterOfRow[row] !== -1) throw bad(`tracks[${i}]: track id ${JSON.stringify(t.track_id)} is listed twice`);
    if (!clusters.has(t.cluster)) throw bad(`tracks[${i}] (${JSON.stringify(t.track_id)}): cluster ${t.cluster} is not among clusters (${[...clusters.keys()].join(', ')})`);
    clusterOfRow[row] = t.cluster;
    confidenceOfRow[row] = t.confidence;
  });
  return on(Object.freeze({ file: p.file, method: c.method, k: c.k, label: c.label, seed: c.seed, clusterOfRow, confidenceOfRow, clusters, count: c.tracks.length }));
}

/** previews/previews.json (checked by PreviewStore.fromFile); the audio files are read on request. */
async function readPreviews(ctx: Ctx): Promise<Feature<PreviewStore>> {
  const p = await present(ctx, 'previews_json', 'previews');
  if ('reason' in p) return off(p.reason);
  const dir = ctx.schemas.optionalPaths.previews_dir;
  if (dir.path === null) return off(`previews_dir is off in this server: ${dir.off}`);
  const obj = await readChecked<PreviewsFile>(ctx, p.file, 'previews');
  return on(PreviewStore.fromFile(ctx.source, { json: p.file, dir: dir.path }, obj, ctx.v.artifactVersion, ctx.v.rowById));
}
