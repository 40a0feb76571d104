/**
 * Named errors. `ConfigError`: a bad environment variable (the server refuses to start). `ArtifactError`: an
 * artifact file is missing, fails its schema or disagrees with another file (the server refuses to start).
 * `HttpError`: a request the API answers with a 4xx; the one error handler turns it into `{error, message,
 * statusCode}`. `localPathRedactor`: what keeps the server's own folders out of those messages.
 */

import path from 'node:path';

/** A bad configuration value; the message names the variable and lists the valid values. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** An artifact that cannot be served; the message names the file and the mismatch. */
export class ArtifactError extends Error {
  override name = 'ArtifactError';
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
  }
}

/** An S3 / database call failed (network, permissions, missing bucket); the message names the location. */
export class StorageError extends Error {
  override name = 'StorageError';
}

/** A client error with an HTTP status code and a reason safe to show to the caller. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

const PATH_END = `\\s'"\`,;()`;

/**
 * A function that replaces, in a message meant for a client, each of `roots` (absolute folders of the server:
 * artifacts, cache, schemas, working directory) and the rest of the path after it with `<local path>`, where the
 * root starts and ends a path component (not inside an s3:// URL, not a prefix of a longer name). Roots that are
 * not absolute, or are `/`, are ignored.
 */
export function localPathRedactor(roots: readonly string[]): (message: string) => string {
  const usable = [...new Set(roots.filter((r) => path.isAbsolute(r)).map((r) => path.resolve(r)))].filter((r) => r !== path.sep);
  if (usable.length === 0) return (m) => m;
  const alternatives = usable
    .sort((a, b) => b.length - a.length)
    .map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('|');
  const re = new RegExp(`(?<![^${PATH_END}])(?:${alternatives})(?:/[^${PATH_END}]*)?(?![^/${PATH_END}])`, 'g');
  return (m) => m.replace(re, '<local path>');
}
