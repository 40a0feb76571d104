/**
 * `npm start`: run the compiled server (dist/src/server.js), never the compiler. Plain JavaScript, so it runs
 * before any TypeScript is built; when nothing is built it prints one line saying what to run and exits 1.
 * Build once with `make node-build` (or `npm run build:prod` here); the production image runs the built
 * file directly (Dockerfile CMD), so it never needs this launcher nor the compiler.
 */

import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const server = fileURLToPath(new URL('../dist/src/server.js', import.meta.url));

if (!existsSync(server)) {
  process.stderr.write(`node_api is not built: run \`make node-build\` (or \`npm run build:prod\` in node_api/); ${server} is missing\n`);
  process.exit(1);
}
await import(pathToFileURL(server).href);
