/**
 * Configuration from environment variables, validated at start-up. An unknown or invalid value refuses the
 * start with a ConfigError naming the variable and listing the valid values.
 */

import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import fp from 'fastify-plugin';

import { ConfigError } from '../lib/errors.js';
import type { BackendChoice } from '../lib/loader.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AppConfig {
  artifactsDir: string;
  artifactSchemaDir: string;
  host: string;
  port: number;
  logLevel: LogLevel;
  vectorBackend: BackendChoice;
  hnswEf: number | null;
  hnswEfMax: number;
  recallSample: number;
  recallTarget: number;
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
  return {
    artifactsDir: dir(env, 'ARTIFACTS_DIR', null, 'an artifact version folder such as artifacts/v1_model_musicnn-msd'),
    artifactSchemaDir: dir(env, 'ARTIFACT_SCHEMA_DIR', path.join(packageRoot(), '..', 'artifact_schema'), 'the folder of *.schema.json files'),
    host: env.HOST || '127.0.0.1',
    port: int(env, 'PORT', 3000, 0, 65535)!,
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
    vectorBackend: oneOf<BackendChoice>(env, 'VECTOR_BACKEND', ['exact', 'hnsw'], 'auto'),
    hnswEf: int(env, 'HNSW_EF', null, 1, 100000),
    hnswEfMax: int(env, 'HNSW_EF_MAX', 2048, 1, 100000)!,
    recallSample: int(env, 'RECALL_SAMPLE', 1000, 0, 1000000)!,
    recallTarget,
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
