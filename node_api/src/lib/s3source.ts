/**
 * Artifacts from S3 (or an S3-compatible store): parse an `s3://` location, resolve the `latest` pointer,
 * download one release into a local cache and verify every file against its manifest (size, then sha256)
 * before anything is loaded — the verification algorithm of docs/publishing.md, as Python's
 * `verify_published` runs it. Files go to `<file>.tmp` and are renamed only once verified; a cached file
 * with the manifest's size and sha256 is not downloaded again. The loader then reads the verified cache
 * folder through a `LocalDirSource`.
 */

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { GetObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

import { ArtifactError, StorageError } from './errors.js';
import { parseJson } from './json.js';
import { redact } from './redact.js';
import type { SchemaRegistry } from './schemas.js';
import { LocalDirSource } from './source.js';
import { s3Url, type S3Location } from './s3uri.js';

export { parseS3Uri, s3Url, type S3Location } from './s3uri.js';

/** One file entry of manifest.json. */
export interface ManifestFile {
  path: string;
  size_bytes: number;
  sha256: string;
  schema: string | null;
  schema_version: string | null;
}

export interface Manifest {
  artifact_version: string;
  release: string;
  content_sha256: string;
  count: number;
  dim: number;
  files: ManifestFile[];
  [key: string]: unknown;
}

interface LatestPointer {
  artifact_version: string;
  release: string;
  version_prefix: string;
  manifest_key: string;
  manifest_sha256: string;
  content_sha256: string;
}

/** What a release resolution found (enough to tell whether a reload would change anything). */
export interface ResolvedRelease {
  release: string;
  manifestKey: string;
  versionPrefix: string;
  /** sha256 the pointer records for the manifest bytes (null for a pinned release) */
  manifestSha256: string | null;
}

/** The outcome of a verified fetch. */
export interface FetchedRelease {
  dir: string;
  artifactVersion: string;
  release: string;
  contentSha256: string;
  manifest: Manifest;
  downloadedFiles: number;
  downloadedBytes: number;
  cachedFiles: number;
  seconds: number;
}

function keyPrefix(loc: S3Location): string {
  return loc.prefix ? `${loc.prefix}/` : '';
}

/** Key of the latest pointer of `loc`'s artifact version. */
export function latestKey(loc: S3Location): string {
  return `${keyPrefix(loc)}latest/${loc.artifactVersion}.json`;
}

/**
 * An S3 client from the standard AWS configuration (region, credentials chain). `AWS_ENDPOINT_URL_S3` or
 * `AWS_ENDPOINT_URL` select an S3-compatible store, with path-style addressing. Connecting times out after
 * 10 s, an idle socket after 60 s.
 */
export function makeS3Client(env: NodeJS.ProcessEnv = process.env): S3Client {
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  // bounded waits: a hung store must not hold a reload (and with it every later reload) forever
  const cfg: S3ClientConfig = { requestHandler: { connectionTimeout: 10_000, requestTimeout: 60_000 } };
  if (endpoint) {
    cfg.endpoint = endpoint;
    cfg.forcePathStyle = true;
  }
  if (!env.AWS_REGION && !env.AWS_DEFAULT_REGION && endpoint) cfg.region = 'us-east-1';
  else if (!env.AWS_REGION && env.AWS_DEFAULT_REGION) cfg.region = env.AWS_DEFAULT_REGION;
  return new S3Client(cfg);
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

async function getBytes(client: S3Client, bucket: string, key: string): Promise<Buffer | null> {
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } catch (err) {
    if (isNotFound(err)) return null;
    throw new StorageError(`GET ${s3Url(bucket, key)} failed: ${(err as Error).name}: ${redact((err as Error).message)}`);
  }
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

/** The manifest's content digest: sha256 over `<sha256>  <size>  <path>\n` lines in path order. */
export function contentDigest(files: readonly ManifestFile[]): string {
  const h = createHash('sha256');
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const f of sorted) h.update(`${f.sha256}  ${f.size_bytes}  ${f.path}\n`, 'utf8');
  return h.digest('hex');
}

/**
 * Which release `loc` names now: the pinned one, or the one the latest pointer names (schema-checked).
 * @throws ArtifactError when nothing is published or the pointer is invalid; StorageError on S3 failures
 */
export async function resolveRelease(client: S3Client, loc: S3Location, schemas: SchemaRegistry): Promise<ResolvedRelease> {
  const base = `${keyPrefix(loc)}${loc.artifactVersion}/`;
  if (loc.release !== null) {
    const versionPrefix = `${base}${loc.release}/`;
    return { release: loc.release, versionPrefix, manifestKey: `${versionPrefix}manifest.json`, manifestSha256: null };
  }
  const key = latestKey(loc);
  const raw = await getBytes(client, loc.bucket, key);
  if (raw === null) throw new ArtifactError(s3Url(loc.bucket, key), `nothing published for ${loc.artifactVersion} (no latest pointer)`);
  const ptr = schemas.validate<LatestPointer>('latest_pointer', parseJson(s3Url(loc.bucket, key), raw), s3Url(loc.bucket, key));
  if (ptr.artifact_version !== loc.artifactVersion) {
    throw new ArtifactError(s3Url(loc.bucket, key), `artifact_version is '${ptr.artifact_version}', expected '${loc.artifactVersion}'`);
  }
  return { release: ptr.release, versionPrefix: ptr.version_prefix, manifestKey: ptr.manifest_key, manifestSha256: ptr.manifest_sha256 };
}

async function fileMatches(file: string, entry: ManifestFile): Promise<boolean> {
  try {
    const st = await stat(file);
    if (!st.isFile() || st.size !== entry.size_bytes) return false;
  } catch {
    return false;
  }
  return (await sha256File(file)) === entry.sha256;
}

/**
 * Download (or reuse from the cache) and verify one release; returns the verified local folder.
 * @throws ArtifactError naming the file whose size or sha256 disagrees with the manifest, or that is missing
 */
export async function fetchRelease(
  client: S3Client,
  loc: S3Location,
  cacheDir: string,
  schemas: SchemaRegistry,
  resolved?: ResolvedRelease,
  concurrency = 4,
): Promise<FetchedRelease> {
  const t0 = performance.now();
  const r = resolved ?? (await resolveRelease(client, loc, schemas));
  const where = s3Url(loc.bucket, r.manifestKey);
  const mBytes = await getBytes(client, loc.bucket, r.manifestKey);
  if (mBytes === null) throw new ArtifactError('manifest.json', `missing at ${where} (release '${r.release}' not published or interrupted)`);
  if (r.manifestSha256 !== null && sha256(mBytes) !== r.manifestSha256) {
    throw new ArtifactError('manifest.json', `sha256 ${sha256(mBytes)} != latest pointer's manifest_sha256 ${r.manifestSha256} (${where})`);
  }
  const manifest = schemas.validate<Manifest>('manifest', parseJson('manifest.json', mBytes), 'manifest.json');
  if (manifest.artifact_version !== loc.artifactVersion) {
    throw new ArtifactError('manifest.json', `artifact_version is '${manifest.artifact_version}', expected '${loc.artifactVersion}' (${where})`);
  }
  if (manifest.release !== r.release) throw new ArtifactError('manifest.json', `release is '${manifest.release}', expected '${r.release}' (${where})`);
  const digest = contentDigest(manifest.files);
  if (digest !== manifest.content_sha256) {
    throw new ArtifactError('manifest.json', `content digest of files is ${digest} but content_sha256 says ${manifest.content_sha256} (${where})`);
  }

  const root = path.resolve(cacheDir, loc.artifactVersion, r.release);
  await mkdir(root, { recursive: true });
  let downloadedFiles = 0;
  let downloadedBytes = 0;
  let cachedFiles = 0;
  const verifyOne = async (entry: ManifestFile): Promise<void> => {
    const local = path.resolve(root, entry.path);
    if (!local.startsWith(root + path.sep)) throw new ArtifactError(entry.path, `path resolves outside the cache folder ${root}`);
    if (await fileMatches(local, entry)) {
      cachedFiles++;
      return;
    }
    const key = r.versionPrefix + entry.path;
    const url = s3Url(loc.bucket, key);
    const tmp = `${local}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await mkdir(path.dirname(local), { recursive: true });
    let body: Readable;
    try {
      const res = await client.send(new GetObjectCommand({ Bucket: loc.bucket, Key: key }));
      body = res.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) throw new ArtifactError(entry.path, `missing: ${url} is listed in manifest.json but not found`);
      throw new StorageError(`GET ${url} failed: ${(err as Error).name}: ${redact((err as Error).message)}`);
    }
    const h = createHash('sha256');
    let size = 0;
    try {
      body.on('data', (chunk: Buffer) => {
        h.update(chunk);
        size += chunk.length;
      });
      await pipeline(body, createWriteStream(tmp));
      if (size !== entry.size_bytes) throw new ArtifactError(entry.path, `Refusing ${url}: size ${size} != manifest ${entry.size_bytes}`);
      const got = h.digest('hex');
      if (got !== entry.sha256) throw new ArtifactError(entry.path, `Refusing ${url}: sha256 ${got} != manifest ${entry.sha256}`);
      await rename(tmp, local);
      downloadedFiles++;
      downloadedBytes += size;
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof ArtifactError) throw err;
      throw new StorageError(`download of ${url} failed: ${redact((err as Error).message)}`);
    }
  };
  const queue = [...manifest.files].sort((a, b) => b.size_bytes - a.size_bytes);
  const errors: unknown[] = [];
  const workers = Array.from({ length: Math.max(1, concurrency) }, async () => {
    for (let e = queue.shift(); e !== undefined && errors.length === 0; e = queue.shift()) {
      try {
        await verifyOne(e);
      } catch (err) {
        errors.push(err);
      }
    }
  });
  await Promise.all(workers);
  if (errors.length) throw errors[0];
  // the manifest last: a cache folder with a manifest is a verified release
  const mTmp = path.join(root, `manifest.json.${process.pid}.tmp`);
  await writeFile(mTmp, mBytes);
  await rename(mTmp, path.join(root, 'manifest.json'));
  return {
    dir: root,
    artifactVersion: loc.artifactVersion,
    release: r.release,
    contentSha256: manifest.content_sha256,
    manifest,
    downloadedFiles,
    downloadedBytes,
    cachedFiles,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** A verified local release folder, read like any local version folder, remembering where it came from. */
export class S3ReleaseSource extends LocalDirSource {
  override readonly description: string;
  readonly release: { release: string; contentSha256: string };

  constructor(fetched: FetchedRelease, loc: S3Location) {
    super(fetched.dir);
    this.description = `${s3Url(loc.bucket, `${keyPrefix(loc)}${loc.artifactVersion}/${fetched.release}/`)} (verified cache ${fetched.dir})`;
    this.release = { release: fetched.release, contentSha256: fetched.contentSha256 };
  }
}
