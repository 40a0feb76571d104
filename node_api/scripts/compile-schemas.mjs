/**
 * Precompile the artifact schemas' validators (ajv standalone code) into dist/src/lib/validators/, so the server
 * does not run ajv's code generation at start-up (dist/src/lib/schemaCode.js says how they are keyed and when
 * the server uses them). Usage: `node scripts/compile-schemas.mjs [schemaDir]` (default ../artifact_schema,
 * relative to node_api/), after `tsc`; `npm run build` and `build:prod` run it. Exits 1 naming the schema that
 * does not compile, or saying what to build first.
 */

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const schemaDir = path.resolve(root, process.argv[2] ?? path.join('..', 'artifact_schema'));
const compiled = path.join(root, 'dist', 'src', 'lib', 'schemaCode.js');

if (!existsSync(compiled)) {
  process.stderr.write(`compile-schemas: ${compiled} is missing; run \`tsc\` first (npm run build does)\n`);
  process.exit(1);
}
if (!existsSync(schemaDir)) {
  process.stderr.write(`compile-schemas: schema folder ${schemaDir} is missing (pass the folder of *.schema.json files)\n`);
  process.exit(1);
}
const { writePrecompiled } = await import(pathToFileURL(compiled).href);
const outDir = path.join(root, 'dist', 'src', 'lib', 'validators');
try {
  const n = writePrecompiled(schemaDir, outDir);
  process.stdout.write(`compile-schemas: ${n} validators from ${schemaDir} -> ${path.relative(root, outDir)}\n`);
} catch (err) {
  process.stderr.write(`compile-schemas: ${err.message}\n`);
  process.exit(1);
}
