/**
 * Paths inside one artifact version folder `<root>/v1_model_<MODEL>/`, from the one artifact list
 * `artifact_schema/artifacts.json` (schema `artifact_list.schema.json`), which the research job's layout,
 * validate and publish read too. The Node API reads only the keys of NODE_ARTIFACTS (each must be listed) and of
 * NODE_OPTIONAL_ARTIFACTS (the page's features: report, clusters, previews; one the list does not name is off);
 * their paths are fixed at start-up, and the files inside a listed folder are named by the version's own
 * sidecars (report.json's figures, previews.json's files), checked against a safe-name pattern here (an
 * `ArtifactFile` is only made here), so nothing user-supplied reaches the file system.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';

import { ConfigError } from './errors.js';

declare const artifactFileBrand: unique symbol;
/** A path of artifacts.json, relative to the version folder (only `artifactPaths` makes one). */
export type ArtifactFile = string & { readonly [artifactFileBrand]: true };

/** The list's file name inside the schema folder, and the name of its schema. */
export const ARTIFACT_LIST_FILE = 'artifacts.json';
export const ARTIFACT_LIST_SCHEMA = 'artifact_list';

/** The artifacts the Node API reads, by their key in artifacts.json: the format it reads each as, and its JSON Schema. */
export const NODE_ARTIFACTS = {
  tracks_csv: { format: 'csv', schema: 'tracks_metadata_row' },
  embeddings_f32: { format: 'f32', schema: null },
  track_ids_json: { format: 'json', schema: 'track_ids' },
  embeddings_meta: { format: 'json', schema: 'embeddings_meta' },
  hnsw_index: { format: 'index', schema: null },
  index_meta: { format: 'json', schema: 'index_meta' },
  neighbors_table: { format: 'i32', schema: null },
  eval_results: { format: 'json', schema: 'eval_results' },
} as const;
export type ArtifactKey = keyof typeof NODE_ARTIFACTS;
export const NODE_ARTIFACT_KEYS = Object.keys(NODE_ARTIFACTS) as ArtifactKey[];

/** Path of each artifact the Node API reads. */
export type ArtifactPaths = Readonly<Record<ArtifactKey, ArtifactFile>>;

/**
 * The optional artifacts the Node API reads, by their key in artifacts.json: the format and JSON Schema it
 * reads each with. Each is a feature of the page (GET /report, /report/figures/:name, /tracks/:id/cluster,
 * /tracks/:id/preview), or the columnar metadata sidecar (a faster start than the CSV): a key the list does not
 * name, or a file the version folder lacks, turns it off. The recs_* keys are the recommenders (recs/): the
 * recommendation endpoints are off without them.
 */
export const NODE_OPTIONAL_ARTIFACTS = {
  report_json: { format: 'json', schema: 'report' },
  report_html: { format: 'html', schema: null },
  report_figures_dir: { format: 'folder', schema: null },
  clusters_json: { format: 'json', schema: 'clusters' },
  previews_json: { format: 'json', schema: 'previews' },
  previews_dir: { format: 'folder', schema: null },
  // not a page feature: the columnar metadata the loader reads instead of the CSV when present (columns.ts)
  tracks_columns: { format: 'json', schema: 'tracks_columns' },
  tracks_columns_bin: { format: 'bin', schema: null },
  // the recommenders of train-recs (recs/, read by lib/recs/load.ts): all on, or the recommendation endpoints off
  recs_meta: { format: 'json', schema: 'recs_meta' },
  recs_user_ids: { format: 'json', schema: 'recs_user_ids' },
  recs_popularity: { format: 'json', schema: 'recs_popularity' },
  recs_user_factors: { format: 'f32', schema: null },
  recs_item_factors: { format: 'f32', schema: null },
  recs_user_items: { format: 'i32', schema: null },
  recs_user_items_offsets: { format: 'i64', schema: null },
  recs_user_items_weights: { format: 'f32', schema: null },
} as const;
export type OptionalArtifactKey = keyof typeof NODE_OPTIONAL_ARTIFACTS;
export const NODE_OPTIONAL_ARTIFACT_KEYS = Object.keys(NODE_OPTIONAL_ARTIFACTS) as OptionalArtifactKey[];

/** An optional artifact's path, or why the feature is off before any version is read. */
export type OptionalArtifact = { readonly path: ArtifactFile; readonly off: null } | { readonly path: null; readonly off: string };
export type OptionalArtifactPaths = Readonly<Record<OptionalArtifactKey, OptionalArtifact>>;

/** Both groups of paths of one artifact list. */
export interface NodeArtifactPaths {
  readonly paths: ArtifactPaths;
  readonly optional: OptionalArtifactPaths;
}

/** One entry of artifacts.json (the fields Node uses; the schema has the rest). */
export interface ArtifactListEntry {
  key: string;
  path: string;
  format: string;
  schema?: string;
  described_by?: string;
  step: string;
  publish: 'always' | 'audio' | 'never';
  required: boolean;
}

export interface ArtifactList {
  schema_version: string;
  description?: string;
  artifacts: ArtifactListEntry[];
}

/**
 * The paths of NODE_ARTIFACTS from a schema-valid list; `file` names the list in errors.
 * @throws ConfigError naming the file and the key: a key listed twice, a key Node reads that is missing, or
 *   one whose format or schema is not the one Node reads it with
 */
export function artifactPaths(list: ArtifactList, file: string): ArtifactPaths {
  const byKey = entriesByKey(list, file);
  const paths: Partial<Record<ArtifactKey, ArtifactFile>> = {};
  for (const key of NODE_ARTIFACT_KEYS) {
    const entry = byKey.get(key);
    if (!entry) throw new ConfigError(`${file} lacks key '${key}', which the Node API reads (it reads: ${NODE_ARTIFACT_KEYS.join(', ')})`);
    const want = NODE_ARTIFACTS[key];
    if (entry.format !== want.format) {
      throw new ConfigError(`${file}: key '${key}' (${entry.path}) has format '${entry.format}', but the Node API reads it as '${want.format}'`);
    }
    if ((entry.schema ?? null) !== want.schema) {
      throw new ConfigError(`${file}: key '${key}' (${entry.path}) has schema '${entry.schema ?? '(none)'}', but the Node API checks it against '${want.schema ?? '(none)'}'`);
    }
    paths[key] = entry.path as ArtifactFile;
  }
  return Object.freeze(paths as Record<ArtifactKey, ArtifactFile>);
}

/** The list's entries by key. @throws ConfigError naming the file and a key listed twice */
function entriesByKey(list: ArtifactList, file: string): Map<string, ArtifactListEntry> {
  const byKey = new Map<string, ArtifactListEntry>();
  for (const entry of list.artifacts) {
    if (byKey.has(entry.key)) throw new ConfigError(`${file} lists key '${entry.key}' twice`);
    byKey.set(entry.key, entry);
  }
  return byKey;
}

/**
 * The paths of NODE_OPTIONAL_ARTIFACTS from a schema-valid list: a key the list does not name is off (with the
 * reason), and so is one whose schema `hasSchema` does not know (the schema folder predates it); a folder must
 * end in '/'.
 * @throws ConfigError naming the file and the key: a key listed with another format or schema than Node reads
 */
export function optionalArtifactPaths(list: ArtifactList, file: string, hasSchema: (name: string) => boolean): OptionalArtifactPaths {
  const byKey = entriesByKey(list, file);
  const out: Partial<Record<OptionalArtifactKey, OptionalArtifact>> = {};
  for (const key of NODE_OPTIONAL_ARTIFACT_KEYS) {
    const entry = byKey.get(key);
    const want = NODE_OPTIONAL_ARTIFACTS[key];
    if (!entry) {
      out[key] = { path: null, off: `the artifact list ${path.basename(file)} names no '${key}'` };
      continue;
    }
    if (entry.format !== want.format || (entry.schema ?? null) !== want.schema) {
      throw new ConfigError(
        `${file}: key '${key}' (${entry.path}) has format '${entry.format}' and schema '${entry.schema ?? '(none)'}', but the Node API reads it as '${want.format}' with schema '${want.schema ?? '(none)'}'`,
      );
    }
    if (want.format === 'folder' && !entry.path.endsWith('/')) throw new ConfigError(`${file}: key '${key}' is a folder, but its path '${entry.path}' does not end in '/'`);
    if (want.schema !== null && !hasSchema(want.schema)) {
      out[key] = { path: null, off: `the schema folder has no ${want.schema}.schema.json to check '${key}' with` };
      continue;
    }
    out[key] = { path: entry.path as ArtifactFile, off: null };
  }
  return Object.freeze(out as Record<OptionalArtifactKey, OptionalArtifact>);
}

/** A file name inside a listed folder: ASCII letters, digits, '.', '_', '-', at most 200, not starting with a dot. */
export const SAFE_FILE_NAME = /^(?!\.)[A-Za-z0-9._-]{1,200}$/;

/**
 * The file `name` inside the listed folder `folder` (its path ends in '/'), or null when `name` is not a safe
 * file name (SAFE_FILE_NAME: no separator, never '.', '..' or hidden).
 */
export function fileInFolder(folder: ArtifactFile, name: string): ArtifactFile | null {
  return SAFE_FILE_NAME.test(name) ? ((folder + name) as ArtifactFile) : null;
}

/**
 * Read `<schemaDir>/artifacts.json`, validate it with `check` (artifact_list.schema.json: the line of errors,
 * or null) and return the paths Node reads, the optional ones with `hasSchema` telling which schemas exist.
 * @throws ConfigError naming the file: missing, not JSON, not matching its schema, or lacking a key Node reads
 */
export function readArtifactPaths(schemaDir: string, check: (obj: unknown) => string | null, hasSchema: (name: string) => boolean): NodeArtifactPaths {
  const file = path.join(schemaDir, ARTIFACT_LIST_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`${file} is ${code === 'ENOENT' ? 'missing' : `unreadable (${code})`}: ARTIFACT_SCHEMA_DIR must hold the artifact list`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const problem = check(obj);
  if (problem !== null) throw new ConfigError(`${file} does not match ${ARTIFACT_LIST_SCHEMA}.schema.json: ${problem}`);
  const list = obj as ArtifactList;
  return { paths: artifactPaths(list, file), optional: optionalArtifactPaths(list, file, hasSchema) };
}

/** `target` relative to the folder of `from` (both version-folder paths): how index_meta.json names index files. */
export function relativeTo(from: ArtifactFile, target: ArtifactFile): string {
  return path.posix.relative(path.posix.dirname(from), target);
}

/** Pattern of a version folder name and of `artifact_version` (same as the schemas). */
export const VERSION_PATTERN = /^v[0-9]+_model_[A-Za-z0-9._-]+$/;
