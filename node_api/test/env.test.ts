/** Start-up configuration: defaults, and refusal naming the variable and the valid values. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { loadConfig } from '../src/plugins/env.js';
import { SCHEMA_DIR, TINY } from './helpers.js';

const base = { ARTIFACTS_DIR: TINY, ARTIFACT_SCHEMA_DIR: SCHEMA_DIR };

describe('loadConfig', () => {
  it('applies defaults', () => {
    const c = loadConfig({ ARTIFACTS_DIR: TINY });
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.port, 3000);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.vectorBackend, 'auto');
    assert.equal(c.hnswEf, null);
    assert.equal(c.recallSample, 1000);
    assert.equal(c.neighborsTable, 'auto');
    assert.equal(c.artifactSchemaDir, SCHEMA_DIR, 'default ARTIFACT_SCHEMA_DIR is ../artifact_schema from node_api');
  });

  it('reads every variable', () => {
    const c = loadConfig({ ...base, PORT: '8080', HOST: '0.0.0.0', LOG_LEVEL: 'debug', VECTOR_BACKEND: 'exact', HNSW_EF: '50', HNSW_EF_MAX: '400', RECALL_SAMPLE: '10', HNSW_TARGET_RECALL: '0.95' });
    assert.deepEqual(
      [c.port, c.host, c.logLevel, c.vectorBackend, c.hnswEf, c.hnswEfMax, c.recallSample, c.recallTarget],
      [8080, '0.0.0.0', 'debug', 'exact', 50, 400, 10, 0.95],
    );
  });

  it('reads the S3, reload and pgvector variables', () => {
    const c = loadConfig({
      ARTIFACTS_URI: 's3://bucket/vector-artifacts/latest/v1_model_m.json',
      ARTIFACT_CACHE_DIR: '/var/cache/artifacts',
      RELOAD_TOKEN: '0123456789abcdef',
      RELOAD_POLL_SEC: '60',
      VECTOR_BACKEND: 'pgvector',
      DATABASE_URL: 'postgresql://app@db:5432/catalogue',
      PGVECTOR_VERSION: 'v1_model_m/20261122T040000Z',
      PGVECTOR_EF_SEARCH: '200',
    });
    assert.deepEqual(
      [c.artifactsUri, c.artifactCacheDir, c.reloadToken, c.reloadPollSec, c.vectorBackend, c.databaseUrl, c.pgvectorVersion, c.pgvectorEfSearch],
      ['s3://bucket/vector-artifacts/latest/v1_model_m.json', '/var/cache/artifacts', '0123456789abcdef', 60, 'pgvector', 'postgresql://app@db:5432/catalogue', 'v1_model_m/20261122T040000Z', 200],
    );
    const d = loadConfig({ ARTIFACTS_URI: TINY });
    assert.deepEqual([d.artifactsUri, d.reloadToken, d.reloadPollSec, d.databaseUrl, d.pgvectorVersion, d.pgvectorEfSearch], [TINY, null, 0, null, null, 100]);
  });

  it('accepts VECTOR_BACKEND=auto, the default, when set explicitly', () => {
    for (const v of ['auto', 'exact', 'hnsw'] as const) assert.equal(loadConfig({ ...base, VECTOR_BACKEND: v }).vectorBackend, v);
  });

  it('reads NEIGHBORS_TABLE', () => {
    for (const v of ['auto', 'require', 'off'] as const) assert.equal(loadConfig({ ...base, NEIGHBORS_TABLE: v }).neighborsTable, v);
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ ...base, NEIGHBORS_TABLE: 'on' }, /NEIGHBORS_TABLE='on' is invalid: expected one of auto, require, off/],
    [{ ARTIFACTS_DIR: '' }, /ARTIFACTS_URI \(or ARTIFACTS_DIR\) is not set: expected a local artifact version folder .* or s3:\/\//],
    [{ ...base, ARTIFACTS_URI: TINY }, /set only one of ARTIFACTS_URI .* and ARTIFACTS_DIR/],
    [{ ARTIFACTS_URI: 's3://bucket/v1_model_m' }, /ARTIFACTS_URI='s3:\/\/bucket\/v1_model_m' is invalid: .*expected s3:\/\/<bucket>/],
    [{ ARTIFACTS_URI: '/nonexistent/v1_model_x' }, /ARTIFACTS_URI='\/nonexistent\/v1_model_x' is not a directory/],
    [{ ...base, VECTOR_BACKEND: 'pgvector' }, /DATABASE_URL is not set: VECTOR_BACKEND=pgvector needs postgresql:\/\//],
    [{ ...base, PGVECTOR_VERSION: 'latest' }, /PGVECTOR_VERSION='latest' is invalid: expected <artifact_version>\/<release>/],
    [{ ...base, RELOAD_TOKEN: 'short' }, /RELOAD_TOKEN is invalid: expected at least 16 characters/],
    [{ ...base, RELOAD_POLL_SEC: '30' }, /RELOAD_POLL_SEC='30' needs ARTIFACTS_URI to name a latest pointer/],
    [{ ARTIFACTS_URI: 's3://b/p/v1_model_m/r1', RELOAD_POLL_SEC: '30' }, /RELOAD_POLL_SEC='30' needs ARTIFACTS_URI to name a latest pointer/],
    [{ ...base, PGVECTOR_EF_SEARCH: '0' }, /PGVECTOR_EF_SEARCH='0' is invalid: expected an integer from 1 to 1000/],
    [{ ARTIFACTS_DIR: '/nonexistent/v1_model_x' }, /ARTIFACTS_DIR='\/nonexistent\/v1_model_x' is not a directory/],
    [{ ...base, ARTIFACT_SCHEMA_DIR: '/nonexistent' }, /ARTIFACT_SCHEMA_DIR='\/nonexistent' is not a directory/],
    [{ ...base, VECTOR_BACKEND: 'faiss' }, /VECTOR_BACKEND='faiss' is invalid: expected one of auto, exact, hnsw, pgvector/],
    [{ ...base, LOG_LEVEL: 'loud' }, /LOG_LEVEL='loud' is invalid: expected one of fatal, error, warn, info, debug, trace, silent/],
    [{ ...base, PORT: 'http' }, /PORT='http' is invalid: expected an integer from 0 to 65535/],
    [{ ...base, PORT: '70000' }, /PORT='70000' is invalid/],
    [{ ...base, HNSW_EF: '0' }, /HNSW_EF='0' is invalid: expected an integer from 1 to 100000/],
    [{ ...base, HNSW_TARGET_RECALL: '1.5' }, /HNSW_TARGET_RECALL='1.5' is invalid: expected a number in \(0, 1\]/],
  ];
  for (const [env, msg] of bad) {
    it(`refuses ${JSON.stringify(env).slice(0, 90)}`, () => {
      assert.throws(() => loadConfig(env), (err: Error) => err.name === 'ConfigError' && msg.test(err.message));
    });
  }
});
