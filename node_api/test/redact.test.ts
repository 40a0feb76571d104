/**
 * No secret of DATABASE_URL reaches a log line, stderr or an error: `redact` (lib/redact.ts) on every URL
 * shape (userinfo password, plain, percent-encoded or with a raw `#` / `/`; `?password=` / `&password=` /
 * `sslpassword` in any case; libpq keyword strings, quoted or not; a malformed URL; URLs inside longer
 * messages; S3 / HTTP URLs with credentials), and the real server process started with VECTOR_BACKEND=pgvector
 * and a DATABASE_URL of each shape pointing at a closed port on 127.0.0.1: it logs the pgvector start-up line,
 * fails to connect, and refuses to start with exit code 1, and the secret is nowhere in what it wrote. Against
 * a live PostgreSQL (pgserver, which accepts any password) with nothing published, it refuses naming the
 * database with its secrets redacted.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { redact } from '../src/lib/redact.js';
import { SCHEMA_DIR, TINY } from './helpers.js';
import { PublishFixture } from './publishFixture.js';

// the compiled entry point next to this compiled test (dist/ or any other outDir)
const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'server.js');

const CASES: [string, string][] = [
  ['postgresql://app:s3cret@host/db', 'postgresql://app:***@host/db'],
  ['postgresql://app:s3%21cr%40et@host:5432/db', 'postgresql://app:***@host:5432/db'],
  ['postgresql://app:s3#cr/et@host/db', 'postgresql://app:***@host/db'],
  ['postgresql://:s3cret@host/db', 'postgresql://:***@host/db'],
  ['postgresql://app@host/db?password=s3cret', 'postgresql://app@host/db?password=***'],
  ['postgresql://app@host/db?sslmode=require&password=s3cret', 'postgresql://app@host/db?sslmode=require&password=***'],
  ['postgresql://app@host/db?Password=s3cret&sslmode=require', 'postgresql://app@host/db?Password=***&sslmode=require'],
  ['postgresql://app@host/db?sslpassword=s3cret', 'postgresql://app@host/db?sslpassword=***'],
  ['postgresql://app@host/db?SSLPassword=s3cret#frag', 'postgresql://app@host/db?SSLPassword=***'],
  ['host=h port=5432 password=s3cret dbname=x', 'host=h port=5432 password=*** dbname=x'],
  ['host=h password = s3cret', 'host=h password = ***'],
  ["host=h password='with space' user=u", 'host=h password=*** user=u'],
  ["host=h password='it\\'s s3cret' user=u", 'host=h password=*** user=u'],
  ["host=h password='unterminated s3cret", 'host=h password=***'],
  ['postgresql://app:s3cret@[::1:1/c', 'postgresql://app:***@[::1:1/c'],
  ['invalid URI: "postgresql://app:s3cret@[::1:1/c" (at char 25)', 'invalid URI: "postgresql://app:***@[::1:1/c" (at char 25)'],
  [
    'Cannot connect to postgresql://a:s3cret@h/db, then to http://b:t0ken@minio:9000/x: refused',
    'Cannot connect to postgresql://a:***@h/db, then to http://b:***@minio:9000/x: refused',
  ],
  ['s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/key', 's3://AKIAEXAMPLE:***@bucket/key'],
  ['https://minio:9000/b/k?X-Amz-Signature=abc123&X-Amz-Expires=60', 'https://minio:9000/b/k?X-Amz-Signature=***&X-Amz-Expires=60'],
  ['{"password":"s3cret","host":"h"}', '{"password":***,"host":"h"}'],
  ['postgresql://app@host:5432/db?sslmode=require', 'postgresql://app@host:5432/db?sslmode=require'],
  ['s3://bucket/vector-artifacts/v1_model_x/latest.json', 's3://bucket/vector-artifacts/v1_model_x/latest.json'],
  ['the passwordless login failed', 'the passwordless login failed'],
];

describe('redact', () => {
  for (const [text, want] of CASES) {
    it(`hides the secret of ${text}`, () => {
      assert.equal(redact(text), want);
      if (want.includes('://')) assert.equal(redact(want), want);
    });
  }

  it("scrubs the URL's own secrets wherever a driver message quotes them", () => {
    const url = 'postgresql://app:s3%2Fcr%40et@h/db?sslpassword=k3y%21';
    assert.equal(redact('password "s3/cr@et" rejected; bad key k3y! (raw s3%2Fcr%40et)', url), 'password "***" rejected; bad key *** (raw ***)');
    assert.equal(redact('token s3cret is bad', 'postgresql://app:s3cret@[::1:1/c'), 'token *** is bad');
    assert.equal(redact("x='with space' y", "host=h password='with space'"), "x='***' y");
  });
});

interface Run {
  code: number | null;
  out: string;
  stderr: string;
}

function runServer(databaseUrl: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SERVER], {
      env: {
        PATH: process.env.PATH ?? '',
        ARTIFACTS_DIR: TINY,
        ARTIFACT_SCHEMA_DIR: SCHEMA_DIR,
        PORT: '0',
        LOG_LEVEL: 'debug',
        VECTOR_BACKEND: 'pgvector',
        DATABASE_URL: databaseUrl,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out: out + stderr, stderr });
    });
  });
}

// port 9 on 127.0.0.1: nothing listens there, the connection is refused at once
const SHAPES: [string, string[]][] = [
  ['postgresql://app:s3cret@127.0.0.1:9/db', ['s3cret']],
  ['postgresql://app:s3%2Fcr%40et@127.0.0.1:9/db', ['s3%2Fcr%40et', 's3/cr@et']],
  ['postgresql://app:s3#cret@127.0.0.1:9/db', ['s3#cret']],
  ['postgresql://app:s3/cret@127.0.0.1:9/db', ['s3/cret']],
  ['postgresql://app@127.0.0.1:9/db?password=s3cret', ['s3cret']],
  ['postgresql://app@127.0.0.1:9/db?sslmode=disable&password=s3cret', ['s3cret']],
  ['postgresql://app@127.0.0.1:9/db?sslmode=disable&PassWord=s3cret', ['s3cret']],
  ['postgresql://app@127.0.0.1:9/db?sslmode=disable&SSLPASSWORD=s3cret', ['s3cret']],
  ['host=127.0.0.1 port=9 password=s3cret', ['s3cret']],
  ["host=127.0.0.1 port=9 password='with s3cret space'", ['s3cret', 'with s', "space'"]],
  ['postgresql://app:s3cret@[::1:1/c', ['s3cret']],
];

describe('the server started with a secret in DATABASE_URL', () => {
  for (const [url, secrets] of SHAPES) {
    it(`refuses to start without showing it: ${url}`, async () => {
      const run = await runServer(url);
      assert.equal(run.code, 1, run.out);
      assert.match(run.out, /"msg":"pgvector backend"/);
      assert.match(run.stderr, /^node_api: refusing to start: pgvector \S/m);
      for (const s of secrets) assert.ok(!run.out.includes(s), `${s} leaked:\n${run.out}`);
    });
  }
});

describe('the server against a live PostgreSQL with a secret in DATABASE_URL', () => {
  let fx: PublishFixture;
  before(async () => {
    fx = await PublishFixture.start({ pg: true });
  });
  after(async () => {
    await fx?.close();
  });

  it('refuses an empty database naming it redacted', async () => {
    const live = fx.ready.pg!; // postgresql://postgres:@/postgres?host=<socket dir>
    for (const url of [live.replace('postgres:@', 'postgres:s3cret@'), `${live}&password=s3cret`, `${live}&SSLPassword=s3cret`]) {
      const run = await runServer(url);
      assert.equal(run.code, 1, run.out);
      assert.match(run.stderr, /^node_api: refusing to start: vector_versions: missing in pgvector postgresql:\/\/postgres(:\*\*\*)?@\/postgres\?host=\S+: nothing was published/m);
      assert.ok(!run.out.includes('s3cret'), `leaked:\n${run.out}`);
    }
  });
});

describe('redact twice', () => {
  for (const text of [
    'missing in pgvector postgresql://app:***@h/db?host=/x&password=***: nothing was published',
    'connect failed: password=*** (host=h)',
    'postgresql://app:s3cret@h/db?password=s3cret',
  ]) {
    it(`changes nothing the second time: ${text}`, () => {
      const once = redact(text);
      assert.equal(redact(once), once);
      assert.ok(!once.includes('s3cret'));
    });
  }
  it('still hides a value that merely starts with the mask', () => assert.equal(redact('password=***s3cret'), 'password=***'));
});

describe("the logger's err serializer", () => {
  it('redacts the message and the stack of any logged error', async () => {
    const { redactedError } = await import('../src/app.js');
    const err = Object.assign(new Error('connect to postgresql://app:s3cret@db/x?sslpassword=k3y failed'), { code: 'ECONNREFUSED' });
    const out = redactedError(err as never);
    assert.equal(out.message, 'connect to postgresql://app:***@db/x?sslpassword=*** failed');
    assert.ok(!out.stack.includes('s3cret') && !out.stack.includes('k3y'), out.stack);
    assert.equal(out.code, 'ECONNREFUSED');
  });
});
