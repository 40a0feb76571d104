/**
 * Named errors. `ConfigError`: a bad environment variable (the server refuses to start). `ArtifactError`: an
 * artifact file is missing, fails its schema or disagrees with another file (the server refuses to start).
 * `HttpError`: a request the API answers with a 4xx; the one error handler turns it into `{error, message,
 * statusCode}`.
 */

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
