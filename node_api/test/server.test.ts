/**
 * The real entry point (src/server.js compiled beside this test: dist/ or another outDir) as a child process: it
 * starts, answers /health, closes on SIGTERM with exit code 0, draining its keep-alive connections under load
 * (every request sent gets a complete response, none is reset); and it refuses to start (exit 1, message naming
 * the variable or file) on a bad config, an artifact list lacking a key it reads, or corrupted artifacts.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { cleanupTmp, copyFixture, readJson, SCHEMA_DIR, TINY, tmp, writeJson } from './helpers.js';

const SERVER = fileURLToPath(new URL('../src/server.js', import.meta.url));

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

  it('drains keep-alive connections on SIGTERM under load: complete responses, Connection: close, no reset', async () => {
    const CONNECTIONS = 6;
    const outcome = { ok: 0, unavailable: 0, told: 0, resets: 0, other: [] as string[] };
    let answered = 0;
    let signalled!: () => void;
    const sigterm = new Promise<void>((r) => (signalled = r));
    /** one keep-alive connection sending requests back to back until the server says it closes it */
    const client = async (agent: http.Agent): Promise<void> => {
      for (;;) {
        const res = await new Promise<{ status: number; connection: string | undefined; body: string } | { error: NodeJS.ErrnoException }>((resolve) => {
          const req = http.get({ host: '127.0.0.1', port, agent, path: '/tracks/t001/nearest?k=5' }, (r) => {
            let body = '';
            r.setEncoding('utf8');
            r.on('data', (d: string) => (body += d));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, connection: r.headers.connection, body }));
            r.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
          });
          req.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
        });
        if ('error' in res) {
          if (res.error.code === 'ECONNRESET' || /socket hang up/.test(res.error.message)) outcome.resets++;
          else outcome.other.push(`${res.error.code}: ${res.error.message}`);
          return;
        }
        JSON.parse(res.body); // complete
        if (res.status === 200) outcome.ok++;
        else if (res.status === 503) outcome.unavailable++;
        else outcome.other.push(`status ${res.status}: ${res.body.slice(0, 100)}`);
        if (++answered === 40 * CONNECTIONS) signalled();
        if (res.connection === 'close') {
          outcome.told++;
          return;
        }
      }
    };
    let port = 0;
    const run = await runServer({ ARTIFACTS_DIR: TINY, LOG_LEVEL: 'info', VECTOR_BACKEND: 'exact' }, async (p, kill) => {
      port = p;
      const deadline = Date.now() + 15_000;
      while ((await fetch(`http://127.0.0.1:${port}/health`)).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const agents = Array.from({ length: CONNECTIONS }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
      const clients = Promise.all(agents.map(client));
      await sigterm;
      kill();
      await clients;
      for (const a of agents) a.destroy();
    });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(outcome.other, []);
    assert.equal(outcome.resets, 0, JSON.stringify(outcome));
    assert.equal(outcome.told, CONNECTIONS, `every connection was closed by a response saying so: ${JSON.stringify(outcome)}`);
    assert.ok(outcome.ok >= 40 * CONNECTIONS, JSON.stringify(outcome));
  });

  it('refuses an invalid variable, naming it and the valid values', async () => {
    const run = await runServer({ ARTIFACTS_DIR: TINY, VECTOR_BACKEND: 'annoy' });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /refusing to start: VECTOR_BACKEND='annoy' is invalid: expected one of (auto, )?exact, hnsw/);
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
