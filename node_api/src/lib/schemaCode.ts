/**
 * The artifact schemas' validators compiled ahead of time (ajv's standalone code), so a start-up does not pay
 * ajv's code generation: compiling the schemas one version folder needs was about half a second of every start
 * (more than loading 100k tracks). `npm run build` writes one CommonJS module per schema of the schema folder,
 * and one per `uniqueItems` variant `checkExceptUnique` uses, under `dist/src/lib/validators/` with an
 * `index.json` that keys each module by the sha256 of the schema file's bytes.
 *
 * The server uses a module only when its key is the sha256 of the file it has just read from its own
 * ARTIFACT_SCHEMA_DIR and the ajv version is the one that wrote it: a schema edited after the build, or another
 * schema folder, is compiled at start-up as before, so the validation is always that of the files on disk.
 * The options below are the runtime's (schemas.ts compiles with them too), so both paths give the same
 * verdicts and the same error objects (tested: schemaCode.test.ts).
 */

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { Ajv2020, type Options } from 'ajv/dist/2020.js';

const require = createRequire(import.meta.url);
// ajv-formats is CommonJS whose module.exports is the plugin function; require it as such.
const addFormats = require('ajv-formats') as (ajv: Ajv2020) => Ajv2020;

/**
 * Start-up cost, not checks: code.optimize off gives the same validators without ajv's name-optimising passes,
 * and validateSchema off skips compiling the 2020-12 meta-schema: the folder's schemas are checked against it
 * where they are written, by Python's load_schema (check_schema) and by the Node tests (startup.test.ts).
 */
export const AJV_OPTIONS: Options = { allErrors: true, strict: false, validateSchema: false, code: { optimize: false } };

/** File name suffix of a schema in the schema folder. */
export const SCHEMA_SUFFIX = '.schema.json';

/** The version of ajv this process runs (a precompiled module is used only by the version that wrote it). */
export const AJV_VERSION = (require('ajv/package.json') as { version: string }).version;

/** A new ajv with the runtime's options and formats (`source`: keep the code, for standalone output). */
export function newAjv(source = false): Ajv2020 {
  const opts = source ? { ...AJV_OPTIONS, code: { ...AJV_OPTIONS.code, source: true } } : AJV_OPTIONS;
  return addFormats(new Ajv2020(opts));
}

/** sha256 (hex) of a schema file's bytes: the key of its precompiled validator. */
export function schemaKey(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The key of the variant of `key`'s schema without `uniqueItems` on `property` (see `exceptUniqueSchema`). */
export function exceptUniqueKey(key: string, property: string): string {
  return `${key}#except-unique:${property}`;
}

/**
 * `schema` without the `uniqueItems` of its top-level array property `property` (a copy; its `$id` marked), or
 * null when that property declares none: what `SchemaRegistry.checkExceptUnique` validates with.
 */
export function exceptUniqueSchema(schema: Record<string, unknown>, property: string): Record<string, unknown> | null {
  const copy = structuredClone(schema) as { $id?: string; properties?: Record<string, Record<string, unknown>> };
  const prop = copy.properties?.[property];
  if (!prop || prop.uniqueItems !== true) return null;
  delete prop.uniqueItems;
  if (copy.$id) copy.$id += `?except-unique=${property}`;
  return copy;
}

/** `index.json` of the precompiled validators: module file (relative to the index) by key, and the ajv version. */
export interface PrecompiledIndex {
  ajv: string;
  modules: Record<string, string>;
}

/** Index file name in the validators folder. */
export const INDEX_FILE = 'index.json';

/** Standalone CommonJS code of `schema`'s validator (`module.exports` is the validate function). */
function standalone(schema: Record<string, unknown>): string {
  const ajv = newAjv(true);
  const validate = ajv.compile(schema);
  const standaloneCode = require('ajv/dist/standalone') as (ajv: Ajv2020, validate: unknown) => string;
  return standaloneCode(ajv, validate);
}

/**
 * Write the precompiled validators of every `*.schema.json` in `schemaDir` (and of each `uniqueItems` variant of
 * a top-level property) to `outDir` (replaced whole: written to a sibling folder, then renamed), with its index.
 * Returns the number of modules written.
 * @throws Error naming the schema file that does not compile
 */
export function writePrecompiled(schemaDir: string, outDir: string): number {
  const tmp = `${outDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const index: PrecompiledIndex = { ajv: AJV_VERSION, modules: {} };
  const emit = (key: string, name: string, schema: Record<string, unknown>, file: string): void => {
    let code: string;
    try {
      code = standalone(schema);
    } catch (err) {
      throw new Error(`${file} does not compile: ${(err as Error).message}`);
    }
    writeFileSync(path.join(tmp, name), code);
    index.modules[key] = name;
  };
  for (const file of readdirSync(schemaDir).filter((f) => f.endsWith(SCHEMA_SUFFIX)).sort()) {
    const full = path.join(schemaDir, file);
    const bytes = readFileSync(full);
    const schema = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    const key = schemaKey(bytes);
    const base = file.slice(0, -SCHEMA_SUFFIX.length);
    emit(key, `${base}.cjs`, schema, full);
    const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
    for (const property of Object.keys(props).sort()) {
      const variant = exceptUniqueSchema(schema, property);
      if (variant) emit(exceptUniqueKey(key, property), `${base}.except-unique.${property}.cjs`, variant, full);
    }
  }
  writeFileSync(path.join(tmp, INDEX_FILE), JSON.stringify(index, null, 2) + '\n');
  rmSync(outDir, { recursive: true, force: true });
  renameSync(tmp, outDir);
  return Object.keys(index.modules).length;
}
