/**
 * The web page's static files: copy web/index.html and web/page.css next to the compiled page.js
 * (`tsc -p tsconfig.web.json` writes it), so the built web folder holds the three files the page route
 * serves. Usage: `node scripts/web-assets.mjs [outDir]` (default dist/web, relative to node_api/). Plain
 * JavaScript so it runs without a build; exits 1 naming the file when page.js or a source is missing.
 */

import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.resolve(root, process.argv[2] ?? path.join('dist', 'web'));
const STATIC_FILES = ['index.html', 'page.css'];

mkdirSync(outDir, { recursive: true });
for (const name of STATIC_FILES) {
  const src = path.join(root, 'web', name);
  if (!existsSync(src)) {
    process.stderr.write(`web-assets: ${src} is missing (expected: ${STATIC_FILES.join(', ')} in node_api/web/)\n`);
    process.exit(1);
  }
  copyFileSync(src, path.join(outDir, name));
}
if (!existsSync(path.join(outDir, 'page.js'))) {
  process.stderr.write(`web-assets: ${path.join(outDir, 'page.js')} is missing; run \`tsc -p tsconfig.web.json\` first (npm run build does)\n`);
  process.exit(1);
}
