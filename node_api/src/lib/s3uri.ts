/**
 * `s3://` locations of artifact releases: parsing ARTIFACTS_URI and writing `s3://bucket/key` for messages.
 * Apart from s3source.ts so that the environment check and the provider can name S3 locations without
 * loading the AWS SDK (0.17 s of the server's start-up), which s3source.ts imports only when S3 is used.
 */

import { ConfigError } from './errors.js';
import { VERSION_PATTERN } from './layout.js';

const RELEASE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Where one artifact version lives on S3: a pinned release, or whatever the latest pointer names. */
export interface S3Location {
  bucket: string;
  /** key prefix without leading/trailing slash ('' for none) */
  prefix: string;
  artifactVersion: string;
  /** a release name, or null for "follow the latest pointer" */
  release: string | null;
}

const USAGE =
  's3://<bucket>/<prefix>/v1_model_<MODEL>/<release>, s3://<bucket>/<prefix>/v1_model_<MODEL>/latest, or s3://<bucket>/<prefix>/latest/v1_model_<MODEL>.json';

/**
 * Parse an `s3://` URI. Accepted forms: a pinned release `s3://b/p/v1_model_M/<release>`, the latest pointer
 * object `s3://b/p/latest/v1_model_M.json`, and the shorthand `s3://b/p/v1_model_M/latest`.
 * @throws ConfigError naming the URI and listing the accepted forms
 */
export function parseS3Uri(uri: string, varName = 'ARTIFACTS_URI'): S3Location {
  const bad = (why: string): ConfigError => new ConfigError(`${varName}='${uri}' is invalid: ${why}; expected ${USAGE}`);
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri.trim());
  if (!m) throw bad('no bucket or key');
  const bucket = m[1]!;
  const parts = m[2]!.replace(/\/+$/, '').split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) throw bad("empty, '.' or '..' path components");
  if (parts.length < 2) throw bad('too few path components');
  const last = parts[parts.length - 1]!;
  const before = parts[parts.length - 2]!;
  if (before === 'latest' && last.endsWith('.json')) {
    const av = last.slice(0, -'.json'.length);
    if (!VERSION_PATTERN.test(av)) throw bad(`'${av}' is not an artifact version (v1_model_<MODEL>)`);
    return { bucket, prefix: parts.slice(0, -2).join('/'), artifactVersion: av, release: null };
  }
  if (!VERSION_PATTERN.test(before)) throw bad(`'${before}' is not an artifact version (v1_model_<MODEL>)`);
  if (!RELEASE_PATTERN.test(last)) throw bad(`'${last}' is not a release name`);
  return { bucket, prefix: parts.slice(0, -2).join('/'), artifactVersion: before, release: last === 'latest' ? null : last };
}

/** `s3://bucket/key` for messages. */
export function s3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}
