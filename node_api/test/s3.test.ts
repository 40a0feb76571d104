/**
 * Serving from S3 over HTTP (moto's server mode on 127.0.0.1, started by test/fixtures/publish_server.py,
 * releases published by the Python publisher): load through the latest pointer / a pinned release, the
 * verified cache, refusal on a tampered or missing object naming the file, an interrupted publish leaving the
 * previous release served, POST /models/reload under concurrent load (a good and a bad version, zero failed
 * requests) and polling of the latest pointer.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { FastifyInstance } from 'fastify';

import { buildApp } from '../src/app.js';
import { fetchRelease, makeS3Client, parseS3Uri } from '../src/lib/s3source.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { loadConfig } from '../src/plugins/env.js';
import { cleanupTmp, NODE_API_ROOT, SCHEMA_DIR, tmp } from './helpers.js';
import { PublishFixture } from './publishFixture.js';

const AV = 'v1_model_fake-model';
const TOKEN = 'test-reload-token-0123456789';
let fx: PublishFixture;
let bucket: string;
const apps: FastifyInstance[] = [];

before(async () => {
  fx = await PublishFixture.start({ s3: true });
  bucket = fx.ready.bucket;
  // the standard AWS configuration, as a deployment would set it
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_S3: fx.ready.s3!,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  });
});

after(async () => {
  for (const a of apps) await a.close();
  await fx?.close();
  cleanupTmp();
});

async function make(seed: number, createdAt = '2026-11-22T04:00:00Z'): Promise<string> {
  return (await fx.request<{ dir: string }>({ op: 'make', root: tmp('node-api-s3-'), seed, created_at: createdAt })).dir;
}

async function publish(dir: string, prefix: string, release: string, abortAfter: number | null = null): Promise<any> {
  return fx.request({ op: 'publish_s3', dir, prefix, release, abort_after: abortAfter });
}

function env(uri: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ARTIFACTS_URI: uri, ARTIFACT_CACHE_DIR: tmp('node-api-cache-'), ARTIFACT_SCHEMA_DIR: SCHEMA_DIR, LOG_LEVEL: 'silent', RECALL_SAMPLE: '50', ...extra };
}

async function app(e: Record<string, string>): Promise<FastifyInstance> {
  const a = await buildApp({ config: loadConfig(e), logger: false });
  apps.push(a);
  return a;
}

async function nearest(a: FastifyInstance, id: string, k = 5): Promise<unknown> {
  const r = await a.inject(`/tracks/${id}/nearest?k=${k}`);
  assert.equal(r.statusCode, 200, r.body);
  return r.json().hits;
}

/** Replace one object with the same bytes except one flipped byte (same size, other sha256). */
async function tamper(key: string): Promise<void> {
  const s3 = makeS3Client();
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await got.Body!.transformToByteArray());
  const mid = bytes.length >> 1;
  bytes[mid] = bytes[mid]! ^ 0x01;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, Metadata: got.Metadata }));
}

describe('S3 source', () => {
  it('parses the accepted URI forms and refuses others', () => {
    assert.deepEqual(parseS3Uri('s3://b/vector-artifacts/v1_model_m/20261122T040000Z'), { bucket: 'b', prefix: 'vector-artifacts', artifactVersion: 'v1_model_m', release: '20261122T040000Z' });
    assert.deepEqual(parseS3Uri('s3://b/a/b/latest/v1_model_m.json'), { bucket: 'b', prefix: 'a/b', artifactVersion: 'v1_model_m', release: null });
    assert.deepEqual(parseS3Uri('s3://b/v1_model_m/latest'), { bucket: 'b', prefix: '', artifactVersion: 'v1_model_m', release: null });
    for (const bad of ['s3://b', 's3://b/p/model_m/r1', 's3://b/p//v1_model_m/r1', 's3://b/p/v1_model_m/../r1', 's3://b/p/v1_model_m/-r']) {
      assert.throws(() => parseS3Uri(bad), (e: Error) => e.name === 'ConfigError' && e.message.includes(bad) && e.message.includes('expected s3://'), bad);
    }
  });

  it('loads a release via the latest pointer, the shorthand and a pinned name; same answers as the local folder', async (t) => {
    const dir = await make(0);
    const rep = (await publish(dir, 'p1', 'r1')).report;
    assert.equal(rep.status, 'published');
    const local = await app({ ARTIFACTS_DIR: dir, ARTIFACT_SCHEMA_DIR: SCHEMA_DIR, LOG_LEVEL: 'silent', RECALL_SAMPLE: '50' });
    const uris = [`s3://${bucket}/p1/latest/${AV}.json`, `s3://${bucket}/p1/${AV}/latest`, `s3://${bucket}/p1/${AV}/r1`];
    for (const uri of uris) {
      const t0 = performance.now();
      const a = await app(env(uri));
      const ms = performance.now() - t0;
      t.diagnostic(`S3 load (download + verify + load, ${rep.files} files, ${rep.bytes_total} bytes) from ${uri}: ${ms.toFixed(0)} ms`);
      const m = (await a.inject('/models')).json();
      assert.equal(m.release, 'r1');
      assert.equal(m.content_sha256, rep.content_sha256);
      assert.equal(m.source, 's3 v1_model_fake-model/r1', 'the version and release, never a path on the server');
      for (const id of ['t00000', 't00007', 't00119']) assert.deepEqual(await nearest(a, id), await nearest(local, id));
    }
  });

  it('reuses verified cached files, re-downloads a corrupted one, never leaves temp files', async (t) => {
    const dir = await make(3);
    await publish(dir, 'pc', 'r1');
    const cache = tmp('node-api-cache-');
    const loc = parseS3Uri(`s3://${bucket}/pc/${AV}/latest`);
    const schemas = new SchemaRegistry(SCHEMA_DIR);
    const client = makeS3Client();
    const first = await fetchRelease(client, loc, cache, schemas);
    assert.equal(first.downloadedFiles, first.manifest.files.length);
    const second = await fetchRelease(client, loc, cache, schemas);
    assert.deepEqual([second.downloadedFiles, second.cachedFiles], [0, first.manifest.files.length]);
    t.diagnostic(`fetch + verify ${first.downloadedFiles} files / ${first.downloadedBytes} bytes: ${(first.seconds * 1000).toFixed(0)} ms; re-verify from cache: ${(second.seconds * 1000).toFixed(0)} ms`);
    writeFileSync(path.join(first.dir, 'eval', 'eval_results.json'), '{}');
    const third = await fetchRelease(client, loc, cache, schemas);
    assert.deepEqual([third.downloadedFiles, third.cachedFiles], [1, first.manifest.files.length - 1]);
    const all = readdirSync(first.dir, { recursive: true }) as string[];
    assert.deepEqual(all.filter((f) => f.endsWith('.tmp')), []);
    assert.ok(all.includes('manifest.json'));
  });

  it('refuses a tampered object, naming the file, and leaves no unverified file in the cache', async () => {
    const dir = await make(1);
    await publish(dir, 'p2', 'r1');
    await tamper(`p2/${AV}/r1/embeddings/embeddings.f32`);
    const e = env(`s3://${bucket}/p2/${AV}/latest`);
    await assert.rejects(buildApp({ config: loadConfig(e), logger: false }), (err: Error) => {
      assert.equal(err.name, 'ArtifactError');
      assert.match(err.message, /^embeddings\/embeddings\.f32: Refusing s3:\/\/node-api-test\/p2\/v1_model_fake-model\/r1\/embeddings\/embeddings\.f32: sha256 [0-9a-f]{64} != manifest [0-9a-f]{64}$/);
      return true;
    });
    const cached = path.join(e.ARTIFACT_CACHE_DIR!, AV, 'r1');
    assert.equal(existsSync(path.join(cached, 'embeddings', 'embeddings.f32')), false);
    assert.equal(existsSync(path.join(cached, 'manifest.json')), false);

    await make(1).then((d) => publish(d, 'p2b', 'r1'));
    await makeS3Client().send(new DeleteObjectCommand({ Bucket: bucket, Key: `p2b/${AV}/r1/index/index_meta.json` }));
    await assert.rejects(buildApp({ config: loadConfig(env(`s3://${bucket}/p2b/${AV}/r1`)), logger: false }), /^ArtifactError: index\/index_meta\.json: missing: s3:\/\/.*index_meta\.json is listed in manifest\.json but not found$/);
  });

  it('the server process refuses to start (exit 1) naming the tampered file', async () => {
    const child = spawn(process.execPath, [path.join(NODE_API_ROOT, 'dist', 'src', 'server.js')], {
      env: { ...process.env, ...env(`s3://${bucket}/p2/${AV}/latest`), PORT: '0', LOG_LEVEL: 'fatal' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    assert.equal(code, 1);
    assert.match(stderr, /node_api: refusing to start: embeddings\/embeddings\.f32: Refusing s3:\/\/.*sha256/);
  });

  it('an interrupted publish leaves latest serving the previous release', async () => {
    const d1 = await make(0);
    const d2 = await make(5, '2026-11-22T05:00:00Z');
    await publish(d1, 'p3', 'r1');
    const res = await publish(d2, 'p3', 'r2', 3);
    assert.equal(res.aborted, true);
    assert.equal(res.uploaded.length, 3);
    const a = await app(env(`s3://${bucket}/p3/${AV}/latest`));
    assert.equal((await a.inject('/models')).json().release, 'r1');
    await assert.rejects(
      buildApp({ config: loadConfig(env(`s3://${bucket}/p3/${AV}/r2`)), logger: false }),
      /manifest\.json: missing at s3:\/\/node-api-test\/p3\/v1_model_fake-model\/r2\/manifest\.json/,
    );
  });
});

describe('POST /models/reload', () => {
  it('is disabled without RELOAD_TOKEN and needs the right bearer token', async (t) => {
    const dir = await make(0);
    await publish(dir, 'p4auth', 'r1');
    const off = await app(env(`s3://${bucket}/p4auth/${AV}/latest`));
    const r0 = await off.inject({ method: 'POST', url: '/models/reload' });
    assert.equal(r0.statusCode, 404);
    assert.match(r0.json().message, /RELOAD_TOKEN is not set/);
    const on = await app(env(`s3://${bucket}/p4auth/${AV}/latest`, { RELOAD_TOKEN: TOKEN }));
    const r1 = await on.inject({ method: 'POST', url: '/models/reload' });
    assert.equal(r1.statusCode, 401);
    assert.equal(r1.headers['www-authenticate'], 'Bearer');
    const r2 = await on.inject({ method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}x` } });
    assert.equal(r2.statusCode, 403);
    const r3 = await on.inject({ method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r3.statusCode, 200);
    assert.equal(r3.json().status, 'unchanged');
    await publish(await make(4, '2026-11-22T05:00:00Z'), 'p4auth', 'r2');
    const t0 = performance.now();
    const r4 = await on.inject({ method: 'POST', url: '/models/reload', headers: { authorization: `Bearer ${TOKEN}` } });
    t.diagnostic(`reload latency without load: ${(performance.now() - t0).toFixed(0)} ms (unchanged check: ${(r3.json().reload_sec * 1000).toFixed(0)} ms)`);
    assert.deepEqual([r4.statusCode, r4.json().status, r4.json().current.release], [200, 'reloaded', 'r2']);
    assert.equal((await on.inject('/models')).json().release, 'r2');
  });

  it('swaps to a good version and refuses a bad one under 20 concurrent clients with zero failed requests', async (t) => {
    const d1 = await make(0);
    const d2 = await make(6, '2026-11-22T05:00:00Z');
    const d3 = await make(7, '2026-11-22T06:00:00Z');
    await publish(d1, 'p4', 'r1');
    const a = await app(env(`s3://${bucket}/p4/${AV}/latest`, { RELOAD_TOKEN: TOKEN }));
    await a.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(a.server.address() as { port: number }).port}`;
    const local2 = await app({ ARTIFACTS_DIR: d2, ARTIFACT_SCHEMA_DIR: SCHEMA_DIR, LOG_LEVEL: 'silent', RECALL_SAMPLE: '0', VECTOR_BACKEND: 'exact' });
    await publish(d2, 'p4', 'r2');

    let reloadsDone = false;
    let ok = 0;
    const failures: string[] = [];
    const latencies: number[] = [];
    const client = async (c: number): Promise<void> => {
      for (let i = 0; (i < 25 || !reloadsDone) && i < 3000; i++) {
        const id = `t${String((c * 37 + i * 11) % 120).padStart(5, '0')}`;
        try {
          const t0 = performance.now();
          const r = await fetch(`${base}/tracks/${id}/nearest?k=5`);
          const body = (await r.json()) as { hits?: unknown[] };
          latencies.push(performance.now() - t0);
          if (r.status !== 200 || body.hits?.length !== 5) failures.push(`${id}: ${r.status}`);
          else ok++;
        } catch (err) {
          failures.push(`${id}: ${(err as Error).message}`);
        }
      }
    };
    const reload = async (): Promise<{ status: number; body: any; ms: number }> => {
      const t0 = performance.now();
      const r = await fetch(`${base}/models/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      return { status: r.status, body: await r.json(), ms: performance.now() - t0 };
    };
    const clients = Array.from({ length: 20 }, (_, c) => client(c));
    const good = await reload();
    assert.equal(good.status, 200, JSON.stringify(good.body));
    assert.deepEqual([good.body.status, good.body.previous.release, good.body.current.release], ['reloaded', 'r1', 'r2']);
    await publish(d3, 'p4', 'r3');
    await tamper(`p4/${AV}/r3/index/hnsw.index`);
    const [bad, concurrent] = await Promise.all([reload(), reload()]);
    reloadsDone = true;
    await Promise.all(clients);
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    assert.match(bad.body.message, /^Reload refused: index\/hnsw\.index: Refusing s3:\/\/.*sha256 .* \(still serving v1_model_fake-model\/r2\)$/);
    assert.equal(concurrent.status, 409);
    latencies.sort((x, y) => x - y);
    const pct = (p: number): string => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!.toFixed(1);
    t.diagnostic(`reload latency under load: good ${good.ms.toFixed(0)} ms (server ${(good.body.reload_sec * 1000).toFixed(0)} ms), bad ${bad.ms.toFixed(0)} ms; load: ${ok} ok, ${failures.length} failed; request latency p50 ${pct(0.5)} / p99 ${pct(0.99)} / max ${pct(1)} ms`);
    assert.deepEqual(failures, []);
    assert.ok(ok >= 500, `only ${ok} requests`);
    const m = (await (await fetch(`${base}/models`)).json()) as { release: string };
    assert.equal(m.release, 'r2');
    for (const id of ['t00001', 't00050']) assert.deepEqual(await nearest(a, id), await nearest(local2, id));
  });

  it('RELOAD_POLL_SEC follows the latest pointer', async () => {
    const d1 = await make(0);
    await publish(d1, 'p5', 'r1');
    const a = await app(env(`s3://${bucket}/p5/${AV}/latest`, { RELOAD_POLL_SEC: '1' }));
    assert.equal((await a.inject('/models')).json().release, 'r1');
    await publish(await make(8, '2026-11-22T05:00:00Z'), 'p5', 'r2');
    const deadline = Date.now() + 15_000;
    let release = 'r1';
    while (release !== 'r2' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      release = (await a.inject('/models')).json().release;
    }
    assert.equal(release, 'r2');
  });
});
