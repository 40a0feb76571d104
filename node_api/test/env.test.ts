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
    assert.equal(c.artifactSchemaDir, SCHEMA_DIR, 'default ARTIFACT_SCHEMA_DIR is ../artifact_schema from node_api');
  });

  it('reads every variable', () => {
    const c = loadConfig({ ...base, PORT: '8080', HOST: '0.0.0.0', LOG_LEVEL: 'debug', VECTOR_BACKEND: 'exact', HNSW_EF: '50', HNSW_EF_MAX: '400', RECALL_SAMPLE: '10', HNSW_TARGET_RECALL: '0.95' });
    assert.deepEqual(
      [c.port, c.host, c.logLevel, c.vectorBackend, c.hnswEf, c.hnswEfMax, c.recallSample, c.recallTarget],
      [8080, '0.0.0.0', 'debug', 'exact', 50, 400, 10, 0.95],
    );
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ ARTIFACTS_DIR: '' }, /ARTIFACTS_DIR is not set: expected an artifact version folder/],
    [{ ARTIFACTS_DIR: '/nonexistent/v1_model_x' }, /ARTIFACTS_DIR='\/nonexistent\/v1_model_x' is not a directory/],
    [{ ...base, ARTIFACT_SCHEMA_DIR: '/nonexistent' }, /ARTIFACT_SCHEMA_DIR='\/nonexistent' is not a directory/],
    [{ ...base, VECTOR_BACKEND: 'faiss' }, /VECTOR_BACKEND='faiss' is invalid: expected one of exact, hnsw/],
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
