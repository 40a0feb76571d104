/**
 * The artifact JSON Schemas (`artifact_schema/*.schema.json`, draft 2020-12), read from disk at start-up — the
 * very files the Python side validates against — and compiled once with ajv.
 */

import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { createRequire } from 'node:module';

import { ArtifactError, ConfigError } from './errors.js';

// ajv-formats is CommonJS whose module.exports is the plugin function; require it as such.
const addFormats = createRequire(import.meta.url)('ajv-formats') as (ajv: Ajv2020) => Ajv2020;

export const SCHEMA_NAMES = [
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

/** Compiled validators for every artifact schema in one directory. */
export class SchemaRegistry {
  private readonly validators = new Map<SchemaName, ValidateFunction>();
  private readonly raw = new Map<SchemaName, Record<string, unknown>>();

  /**
   * Read and compile every `<name>.schema.json` of `dir`.
   * @throws ConfigError when the directory or an expected schema is missing or does not compile.
   */
  constructor(readonly dir: string) {
    let files: string[];
    try {
      files = readdirSync(dir);
    } catch {
      throw new ConfigError(`ARTIFACT_SCHEMA_DIR '${dir}' is not a readable directory (it must hold the *.schema.json files)`);
    }
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    addFormats(ajv);
    for (const name of SCHEMA_NAMES) {
      const file = `${name}.schema.json`;
      if (!files.includes(file)) {
        throw new ConfigError(`ARTIFACT_SCHEMA_DIR '${dir}' lacks ${file} (expected: ${SCHEMA_NAMES.join(', ')})`);
      }
      const schema = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as Record<string, unknown>;
      this.raw.set(name, schema);
      this.validators.set(name, ajv.compile(schema));
    }
  }

  /** The parsed schema document (for example to reuse as a response schema). */
  schema(name: SchemaName): Record<string, unknown> {
    return this.raw.get(name)!;
  }

  /** Whether `obj` matches schema `name`; returns the error line or null. */
  check(name: SchemaName, obj: unknown): string | null {
    const v = this.validators.get(name)!;
    return v(obj) ? null : formatAjvErrors(v.errors);
  }

  /**
   * Validate `obj` against schema `name`.
   * @throws ArtifactError naming `file` and the schema violations.
   */
  validate<T>(name: SchemaName, obj: unknown, file: string): T {
    const problem = this.check(name, obj);
    if (problem !== null) throw new ArtifactError(file, `does not match ${name}.schema.json: ${problem}`);
    return obj as T;
  }
}
