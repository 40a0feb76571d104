/**
 * The artifact JSON Schemas (`artifact_schema/*.schema.json`, draft 2020-12), read from disk at start-up — the
 * very files the Python side validates against — and each one's validator made once, when first used: the
 * module `npm run build` precompiled for a file of exactly these bytes (schemaCode.ts), else compiled here with
 * ajv (compiling all of them took ~0.6 s, more than loading 100k tracks; a start-up uses a third of them); and
 * the artifact list of the same folder (`artifacts.json`, validated against `artifact_list.schema.json`), which
 * gives the paths Node reads.
 */

import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Ajv2020, ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';

import { ArtifactError, ConfigError } from './errors.js';
import { readArtifactPaths, type ArtifactPaths, type OptionalArtifactPaths } from './layout.js';
import { AJV_VERSION, INDEX_FILE, SCHEMA_SUFFIX, exceptUniqueKey, exceptUniqueSchema, newAjv, schemaKey, type PrecompiledIndex } from './schemaCode.js';

const require = createRequire(import.meta.url);

/** Where `npm run build` writes the precompiled validators (scripts/compile-schemas.mjs). */
export const PRECOMPILED_DIR = fileURLToPath(new URL('./validators/', import.meta.url));

/** The precompiled validators' index in `dir`, or null when there is none, it is unreadable, or another ajv wrote it. */
function readPrecompiled(dir: string): PrecompiledIndex | null {
  try {
    const index = JSON.parse(readFileSync(path.join(dir, INDEX_FILE), 'utf8')) as PrecompiledIndex;
    return index.ajv === AJV_VERSION && typeof index.modules === 'object' && index.modules !== null ? index : null;
  } catch {
    return null;
  }
}

/** The schemas the server itself loads artifacts with: start-up refuses a schema folder that lacks one. */
export const SCHEMA_NAMES = [
  'artifact_list',
  'embeddings_meta',
  'eval_results',
  'export_report',
  'index_meta',
  'latest_pointer',
  'manifest',
  'pull_report',
  'sample_topk',
  'standardize_report',
  'track_ids',
  'tracks_metadata_row',
] as const;
export type SchemaName = (typeof SCHEMA_NAMES)[number];
const SUFFIX = SCHEMA_SUFFIX;

/** A track id's JSON Schema (a string with a maxLength in code points, a pattern). */
export type TrackIdSchema = Record<string, unknown> & { readonly type: 'string'; readonly maxLength: number };

/** Render ajv errors as one short line: `/overall/k must be >= 1; ...`. */
export function formatAjvErrors(errors: ErrorObject[] | null | undefined): string {
  if (!errors || errors.length === 0) return 'invalid';
  return errors
    .slice(0, 5)
    .map((e) => {
      const where = e.instancePath || '(root)';
      const extra =
        e.keyword === 'additionalProperties'
          ? ` '${String((e.params as { additionalProperty?: string }).additionalProperty)}'`
          : e.keyword === 'required'
            ? ''
            : e.keyword === 'const' || e.keyword === 'enum'
              ? ` ${JSON.stringify((e.params as { allowedValue?: unknown; allowedValues?: unknown }).allowedValue ?? (e.params as { allowedValues?: unknown }).allowedValues)}`
              : '';
      return `${where} ${e.message ?? 'invalid'}${extra}`;
    })
    .join('; ');
}

/** Compiled validators for every artifact schema in one directory, and the artifact paths of its list. */
export class SchemaRegistry {
  private readonly validators = new Map<string, ValidateFunction>();
  private ajvInstance: Ajv2020 | null = null;
  private readonly raw = new Map<string, Record<string, unknown>>();
  /** sha256 of each schema file's bytes: the key of its precompiled validator */
  private readonly keys = new Map<string, string>();
  private readonly precompiled: { dir: string; index: PrecompiledIndex } | null;
  /** validators made so far: loaded from precompiled modules, compiled here */
  readonly made = { precompiled: 0, compiled: 0 };
  /** paths (relative to a version folder) of the artifacts Node reads, from `<dir>/artifacts.json` */
  readonly paths: ArtifactPaths;
  /** paths of the optional artifacts (the page's features), or why each is off (not listed, no schema) */
  readonly optionalPaths: OptionalArtifactPaths;

  /**
   * Read every `<name>.schema.json` of `dir` (the server's own, SCHEMA_NAMES, must all be there; each one's
   * validator is made when first used, and a schema that does not compile is then refused naming its file), then
   * read and validate `artifacts.json`. `precompiledDir`: the folder of precompiled validators (schemaCode.ts),
   * used for the schema files whose bytes they were built from; null: compile every schema here.
   * @throws ConfigError when the directory or an expected schema is missing or is not JSON, or when
   *   artifacts.json is missing, invalid or lacks a key Node reads (naming the key and the file); an optional
   *   key it does not list, or whose schema the folder lacks, is only off (`optionalPaths`)
   */
  constructor(
    readonly dir: string,
    precompiledDir: string | null = PRECOMPILED_DIR,
  ) {
    let files: string[];
    try {
      files = readdirSync(dir);
    } catch {
      throw new ConfigError(`ARTIFACT_SCHEMA_DIR '${dir}' is not a readable directory (it must hold the *.schema.json files)`);
    }
    const index = precompiledDir === null ? null : readPrecompiled(precompiledDir);
    this.precompiled = index && precompiledDir !== null ? { dir: precompiledDir, index } : null;
    for (const name of SCHEMA_NAMES) {
      if (!files.includes(name + SUFFIX)) {
        throw new ConfigError(`ARTIFACT_SCHEMA_DIR '${dir}' lacks ${name}${SUFFIX} (expected: ${SCHEMA_NAMES.join(', ')})`);
      }
    }
    for (const file of files.filter((f) => f.endsWith(SUFFIX)).sort()) {
      const name = file.slice(0, -SUFFIX.length);
      const bytes = readFileSync(path.join(dir, file));
      const schema = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
      this.raw.set(name, schema);
      this.keys.set(name, schemaKey(bytes));
    }
    const read = readArtifactPaths(
      dir,
      (obj) => this.check('artifact_list', obj),
      (name) => this.raw.has(name),
    );
    this.paths = read.paths;
    this.optionalPaths = read.optional;
  }

  /** Names of every compiled schema (the folder's `*.schema.json`). */
  names(): string[] {
    return [...this.raw.keys()];
  }

  /** The parsed schema document (for example to reuse as a response schema). */
  schema(name: string): Record<string, unknown> {
    const schema = this.raw.get(name);
    if (!schema) throw new ConfigError(`unknown schema '${name}' (known: ${this.names().join(', ')})`);
    return schema;
  }

  /**
   * The schema of one track id as track_ids.schema.json declares it (its `track_ids` items: length bounds and
   * pattern), the contract every id the server serves obeys; the routes validate ids with it.
   * @throws ConfigError when the file declares no item schema with an integer maxLength
   */
  trackIdSchema(): TrackIdSchema {
    const props = this.schema('track_ids').properties as Record<string, { items?: Record<string, unknown> }> | undefined;
    const items = props?.track_ids?.items;
    if (!items || typeof items.maxLength !== 'number' || !Number.isInteger(items.maxLength) || items.maxLength < 1) {
      throw new ConfigError(`${path.join(this.dir, 'track_ids' + SUFFIX)}: properties.track_ids.items must declare an integer maxLength >= 1 (the longest track id)`);
    }
    return items as TrackIdSchema;
  }

  /** Whether `obj` matches schema `name`; returns the error line or null. */
  check(name: string, obj: unknown): string | null {
    const v = this.validator(name);
    return v(obj) ? null : formatAjvErrors(v.errors);
  }

  /**
   * `check` without the `uniqueItems` of the array property `property`, for a caller that has already refused
   * repeats itself (naming the value, and in one pass that also builds its lookup): ajv's uniqueItems took 0.4 s
   * of the 0.5 s check of 1M track ids. Every other keyword of the schema applies as in `check`.
   */
  checkExceptUnique(name: string, property: string, obj: unknown): string | null {
    const key = `${name}#except-unique:${property}`;
    let v = this.validators.get(key);
    if (!v) {
      const schema = exceptUniqueSchema(this.schema(name), property);
      if (!schema) throw new ConfigError(`schema '${name}' declares no uniqueItems on property '${property}'`);
      v = this.make(name, exceptUniqueKey(this.keys.get(name)!, property), schema);
      this.validators.set(key, v);
    }
    return v(obj) ? null : formatAjvErrors(v.errors);
  }

  /**
   * The validator of schema `name` (made on first use, then kept).
   * @throws ConfigError when the folder has no such schema or it does not compile
   */
  private validator(name: string): ValidateFunction {
    let v = this.validators.get(name);
    if (v) return v;
    const schema = this.raw.get(name);
    if (!schema) throw new ConfigError(`unknown schema '${name}' (known: ${this.names().join(', ')})`);
    v = this.make(name, this.keys.get(name)!, schema);
    this.validators.set(name, v);
    return v;
  }

  /**
   * The precompiled module of `key` when the build wrote one (and it loads), else `schema` compiled with ajv.
   * @throws ConfigError naming schema `name`'s file when it does not compile
   */
  private make(name: string, key: string, schema: Record<string, unknown>): ValidateFunction {
    const file = this.precompiled?.index.modules[key];
    if (file !== undefined && !file.includes('/') && !file.includes('\\')) {
      try {
        const v = require(path.join(this.precompiled!.dir, file)) as ValidateFunction;
        if (typeof v === 'function') {
          this.made.precompiled++;
          return v;
        }
      } catch {
        // unreadable or broken build output: compile from the schema instead
      }
    }
    this.ajvInstance ??= newAjv();
    try {
      const v = this.ajvInstance.compile(schema);
      this.made.compiled++;
      return v;
    } catch (err) {
      throw new ConfigError(`${path.join(this.dir, name + SUFFIX)} does not compile: ${(err as Error).message}`);
    }
  }

  /**
   * Validate `obj` against schema `name`.
   * @throws ArtifactError naming `file` and the schema violations.
   */
  validate<T>(name: string, obj: unknown, file: string): T {
    const problem = this.check(name, obj);
    if (problem !== null) throw new ArtifactError(file, `does not match ${name}.schema.json: ${problem}`);
    return obj as T;
  }
}
