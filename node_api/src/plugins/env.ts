/**
 * Configuration from environment variables, validated at start-up. An unknown or invalid value refuses the
 * start with a ConfigError naming the variable and listing the valid values.
 */

import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import fp from 'fastify-plugin';

import { ConfigError } from '../lib/errors.js';
import { BACKEND_CHOICES, NEIGHBORS_TABLE_MODES, type BackendChoice, type NeighborsTableMode } from '../lib/options.js';
import { redact } from '../lib/redact.js';
import { parseS3Uri } from '../lib/s3uri.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AppConfig {
  /** `s3://...` location, or an absolute local version folder */
  artifactsUri: string;
  artifactCacheDir: string;
  /** bearer token of POST /models/reload; null: reload disabled */
  reloadToken: string | null;
  /** seconds between polls of the latest pointer; 0: no polling */
  reloadPollSec: number;
  databaseUrl: string | null;
  /** PostgreSQL of POST /feedback (table feedback_events); null: /feedback answers 503, the rest serves without feedback */
  feedbackDatabaseUrl: string | null;
  /** pinned pgvector version `<artifact_version>/<release>`; null: the model's latest */
  pgvectorVersion: string | null;
  pgvectorEfSearch: number;
  artifactSchemaDir: string;
  host: string;
  port: number;
  logLevel: LogLevel;
  vectorBackend: BackendChoice;
  hnswEf: number | null;
  hnswEfMax: number;
  recallSample: number;
  recallTarget: number;
  neighborsTable: NeighborsTableMode;
  /** candidates per model of /recommend/user's content and hybrid with an approximate backend; 0: exact scans */
  recsCandidates: number;
  /** use the validators `npm run build` precompiled for schema files of the same bytes (off: compile each here) */
  precompiledValidators: boolean;
}

/** node_api/ (the folder holding package.json), from this compiled or source file. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

function int(env: NodeJS.ProcessEnv, name: string, dflt: number | null, min: number, max: number): number | null {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name}='${raw}' is invalid: expected an integer from ${min} to ${max}`);
  }
  return Number(raw);
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, valid: readonly T[], dflt: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  if (!(valid as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name}='${raw}' is invalid: expected one of ${valid.join(', ')}`);
  }
  return raw as T;
}

function dir(env: NodeJS.ProcessEnv, name: string, dflt: string | null, hint: string): string {
  const raw = env[name] || dflt;
  if (!raw) throw new ConfigError(`${name} is not set: expected ${hint}`);
  const resolved = path.resolve(raw);
  if (!existsSync(resolved) || !statSync(resolved).isDirectory()) {
    throw new ConfigError(`${name}='${raw}' is not a directory: expected ${hint}`);
  }
  return resolved;
}

/**
 * Validated configuration from `env`.
 * @throws ConfigError naming the variable and the valid values
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const ratio = env.HNSW_TARGET_RECALL;
  let recallTarget = 0.99;
  if (ratio !== undefined && ratio !== '') {
    recallTarget = Number(ratio);
    if (!Number.isFinite(recallTarget) || recallTarget <= 0 || recallTarget > 1) {
      throw new ConfigError(`HNSW_TARGET_RECALL='${ratio}' is invalid: expected a number in (0, 1]`);
    }
  }
  const uriRaw = env.ARTIFACTS_URI || '';
  const dirRaw = env.ARTIFACTS_DIR || '';
  if (uriRaw && dirRaw) throw new ConfigError(`set only one of ARTIFACTS_URI ('${uriRaw}') and ARTIFACTS_DIR ('${dirRaw}')`);
  const hint = 'a local artifact version folder such as artifacts/v1_model_fusion-musicnn-msd_musicnn-mtt, or s3://<bucket>/<prefix>/v1_model_<MODEL>/<release|latest>';
  let artifactsUri: string;
  let followsLatest = false;
  if (uriRaw.startsWith('s3://')) {
    followsLatest = parseS3Uri(uriRaw, 'ARTIFACTS_URI').release === null;
    artifactsUri = uriRaw.trim();
  } else if (uriRaw) {
    artifactsUri = dir(env, 'ARTIFACTS_URI', null, hint);
  } else {
    if (!dirRaw) throw new ConfigError(`ARTIFACTS_URI (or ARTIFACTS_DIR) is not set: expected ${hint}`);
    artifactsUri = dir(env, 'ARTIFACTS_DIR', null, 'an artifact version folder such as artifacts/v1_model_fusion-musicnn-msd_musicnn-mtt');
  }
  const reloadToken = env.RELOAD_TOKEN || null;
  if (reloadToken !== null && (reloadToken.length < 16 || /\s/.test(reloadToken))) {
    throw new ConfigError('RELOAD_TOKEN is invalid: expected at least 16 characters without whitespace (or unset to disable POST /models/reload)');
  }
  const reloadPollSec = int(env, 'RELOAD_POLL_SEC', 0, 0, 86400)!;
  if (reloadPollSec > 0 && !followsLatest) {
    throw new ConfigError(`RELOAD_POLL_SEC='${env.RELOAD_POLL_SEC}' needs ARTIFACTS_URI to name a latest pointer (s3://<bucket>/<prefix>/v1_model_<MODEL>/latest)`);
  }
  const vectorBackend = oneOf<BackendChoice>(env, 'VECTOR_BACKEND', BACKEND_CHOICES, 'auto');
  const databaseUrl = env.DATABASE_URL || null;
  if (vectorBackend === 'pgvector' && !databaseUrl) {
    throw new ConfigError('DATABASE_URL is not set: VECTOR_BACKEND=pgvector needs postgresql://user@host:5432/db (password via PGPASSWORD or the URL)');
  }
  const feedbackDatabaseUrl = env.FEEDBACK_DATABASE_URL || null;
  if (feedbackDatabaseUrl !== null && !/^postgres(ql)?:\/\/[^\s]+$/.test(feedbackDatabaseUrl)) {
    throw new ConfigError(`FEEDBACK_DATABASE_URL='${redact(feedbackDatabaseUrl)}' is invalid: expected postgresql://user[:password]@host:5432/db (or unset to serve without feedback)`);
  }
  const pgvectorVersion = env.PGVECTOR_VERSION || null;
  if (pgvectorVersion !== null && !/^v[0-9]+_model_[A-Za-z0-9._-]+\/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(pgvectorVersion)) {
    throw new ConfigError(`PGVECTOR_VERSION='${pgvectorVersion}' is invalid: expected <artifact_version>/<release>, e.g. v1_model_fusion-musicnn-msd_musicnn-mtt/20261122T040000Z`);
  }
  return {
    artifactsUri,
    artifactCacheDir: path.resolve(env.ARTIFACT_CACHE_DIR || path.join(tmpdir(), 'audio-sim-artifact-cache')),
    reloadToken,
    reloadPollSec,
    databaseUrl,
    feedbackDatabaseUrl,
    pgvectorVersion,
    pgvectorEfSearch: int(env, 'PGVECTOR_EF_SEARCH', 100, 1, 1000)!,
    artifactSchemaDir: dir(env, 'ARTIFACT_SCHEMA_DIR', path.join(packageRoot(), '..', 'artifact_schema'), 'the folder of *.schema.json files'),
    host: env.HOST || '127.0.0.1',
    port: int(env, 'PORT', 3000, 0, 65535)!,
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
    vectorBackend,
    hnswEf: int(env, 'HNSW_EF', null, 1, 100000),
    hnswEfMax: int(env, 'HNSW_EF_MAX', 2048, 1, 100000)!,
    recallSample: int(env, 'RECALL_SAMPLE', 1000, 0, 1000000)!,
    recallTarget,
    neighborsTable: oneOf(env, 'NEIGHBORS_TABLE', NEIGHBORS_TABLE_MODES, 'auto'),
    recsCandidates: int(env, 'RECS_CANDIDATES', 200, 0, 100000)!,
    precompiledValidators: oneOf(env, 'PRECOMPILED_VALIDATORS', ['on', 'off'] as const, 'on') === 'on',
  };
}

declare module 'fastify' {
  interface FastifyInstance {
    config: AppConfig;
  }
}

/** Decorates the instance with the validated config. */
export default fp<{ config: AppConfig }>(
  async (app, opts) => {
    app.decorate('config', Object.freeze({ ...opts.config }));
  },
  { name: 'env' },
);
