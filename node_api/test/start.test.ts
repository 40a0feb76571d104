/**
 * `npm start` never compiles: package.json has no prestart hook and its start script is the plain-JS launcher
 * scripts/start.mjs, which runs dist/src/server.js when it is built and otherwise prints one line naming the
 * build command and exits 1. The launcher is run from temporary copies of node_api/ (with and without a
 * dist/src/server.js) so the real dist/ is never touched. The Dockerfile compiles in its build stage only and
 * its runtime runs the built JS.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { cleanupTmp, NODE_API_ROOT, tmp } from './helpers.js';

const LAUNCHER = path.join(NODE_API_ROOT, 'scripts', 'start.mjs');

after(cleanupTmp);

/** A folder holding scripts/start.mjs (a copy of the real one), optionally a dist/src/server.js with `serverJs`. */
function copyWithLauncher(serverJs: string | null): string {
  const root = tmp('node-api-start-');
  mkdirSync(path.join(root, 'scripts'));
  copyFileSync(LAUNCHER, path.join(root, 'scripts', 'start.mjs'));
  if (serverJs !== null) {
    mkdirSync(path.join(root, 'dist', 'src'), { recursive: true });
    writeFileSync(path.join(root, 'dist', 'src', 'server.js'), serverJs);
  }
  return root;
}

function launch(root: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'start.mjs')], { cwd: root, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('npm start', () => {
  it('package.json: no prestart (nothing compiles on start), start runs the launcher, build:prod builds once', () => {
    const pkg = JSON.parse(readFileSync(path.join(NODE_API_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; main: string };
    assert.equal(pkg.scripts.prestart, undefined);
    assert.equal(pkg.scripts.poststart, undefined);
    assert.equal(pkg.scripts.start, 'node scripts/start.mjs');
    assert.match(pkg.scripts['build:prod']!, /tsc -p tsconfig\.build\.json/);
    assert.equal(pkg.main, 'dist/src/server.js');
  });

  it('without dist/src/server.js: one line naming the build command, exit 1', () => {
    const root = copyWithLauncher(null);
    const r = launch(root);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^node_api is not built: run `make node-build` \(or `npm run build:prod` in node_api\/\)/);
    assert.ok(lines[0]!.includes(path.join(root, 'dist', 'src', 'server.js')), lines[0]);
  });

  it('with dist/src/server.js: runs it in the same process (its output and exit code)', () => {
    const root = copyWithLauncher("process.stdout.write('server module ran\\n'); process.exitCode = 3;\n");
    const r = launch(root);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, 'server module ran\n');
    assert.equal(r.status, 3);
  });

  it('the Dockerfile compiles in its build stage and its runtime runs the built JS', () => {
    const text = readFileSync(path.join(NODE_API_ROOT, 'Dockerfile'), 'utf8');
    const code = text.replace(/^\s*#.*$/gm, '');
    const stages = code.split(/^FROM /m).slice(1);
    assert.equal(stages.length, 2, 'a build and a runtime stage');
    const [build, runtime] = stages as [string, string];
    assert.match(build, /^\S+ AS build\b/);
    assert.match(build, /RUN npm run build:prod/);
    assert.match(runtime, /^\S+ AS runtime\b/);
    assert.match(runtime, /COPY --from=build \S* ?\/app\/node_api\/dist \.\/dist/);
    assert.match(runtime, /^CMD \["node", "dist\/src\/server\.js"\]$/m);
    assert.doesNotMatch(runtime, /\btsc\b|npm run build|npm start/);
  });
});
