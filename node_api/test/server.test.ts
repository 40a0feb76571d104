/**
 * The real entry point (dist/src/server.js) as a child process: it starts, answers /health, closes on SIGTERM
 * with exit code 0; and it refuses to start (exit 1, message naming the variable or file) on a bad config, an
 * artifact list lacking a key it reads, or corrupted artifacts.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { cleanupTmp, copyFixture, NODE_API_ROOT, readJson, SCHEMA_DIR, TINY, tmp, writeJson } from './helpers.js';

const SERVER = path.join(NODE_API_ROOT, 'dist', 'src', 'server.js');

after(cleanupTmp);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Start the server; `onListening(port)` runs once it logs its address; resolves when the process exits. */
function runServer(env: Record<string, string>, onListening?: (port: number, kill: () => void) => Promise<void>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVER], {
      env: { PATH: process.env.PATH ?? '', ARTIFACT_SCHEMA_DIR: SCHEMA_DIR, PORT: '0', RECALL_SAMPLE: '20', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let started = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
      if (m && !started && onListening) {
        started = true;
        onListening(Number(m[1]), () => child.kill('SIGTERM')).catch((err: unknown) => {
          child.kill('SIGKILL');
          reject(err);
        });
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('server process', () => {
  it('listens on 127.0.0.1, becomes healthy, and exits 0 on SIGTERM', async () => {
    let health = 0;
    const run = await runServer({ ARTIFACTS_DIR: TINY, LOG_LEVEL: 'info' }, async (port, kill) => {
      const deadline = Date.now() + 15_000;
      while (health !== 200 && Date.now() < deadline) {
        health = (await fetch(`http://127.0.0.1:${port}/health`)).status;
        if (health !== 200) await new Promise((r) => setTimeout(r, 20));
      }
      kill();
    });
    assert.equal(health, 200);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /artifacts loaded/);
    assert.match(run.stdout, /"phase":"recall"/);
  });

  it('refuses an invalid variable, naming it and the valid values', async () => {
    const run = await runServer({ ARTIFACTS_DIR: TINY, VECTOR_BACKEND: 'annoy' });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /refusing to start: VECTOR_BACKEND='annoy' is invalid: expected one of exact, hnsw/);
  });

  it('refuses a schema folder whose artifacts.json lacks a key Node reads, naming the key and the file', async () => {
    const schemaDir = path.join(tmp('node-api-schema-'), 'artifact_schema');
    cpSync(SCHEMA_DIR, schemaDir, { recursive: true });
    const listFile = path.join(schemaDir, 'artifacts.json');
    const list = readJson(listFile);
    list.artifacts = list.artifacts.filter((a: { key: string }) => a.key !== 'embeddings_meta');
    writeJson(listFile, list);
    const run = await runServer({ ARTIFACTS_DIR: TINY, ARTIFACT_SCHEMA_DIR: schemaDir, LOG_LEVEL: 'silent' });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^node_api: refusing to start: \S+\/artifact_schema\/artifacts\.json lacks key 'embeddings_meta', which the Node API reads/);
  });

  it('refuses corrupted artifacts, naming the file and the mismatch', async () => {
    const dir = copyFixture();
    const f = path.join(dir, 'index', 'index_meta.json');
    const o = readJson(f);
    o.count = 99;
    writeJson(f, o);
    const run = await runServer({ ARTIFACTS_DIR: dir, LOG_LEVEL: 'silent' });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /refusing to start: index\/index_meta\.json: count is 99 but embeddings\/track_ids\.json says 12/);
  });
});
