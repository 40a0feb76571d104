/**
 * Source providers: what `ARTIFACTS_URI` names, turned into an `ArtifactSource` for each (re)load. A local
 * folder is read in place; an S3 location is resolved (the latest pointer is re-read on every reload), then
 * downloaded and verified into the cache before the loader sees it. `peek()` tells cheaply which release a
 * load would get, so a reload or a poll can skip an unchanged release. The AWS SDK (s3source.ts) is imported
 * on the first S3 call only: a local folder's start-up does not pay for loading it.
 */

import type { S3Client } from '@aws-sdk/client-s3';

import { parseS3Uri, s3Url, type S3Location } from './s3uri.js';
import type { SchemaRegistry } from './schemas.js';
import { LocalDirSource, type ArtifactSource } from './source.js';

export interface SourceProvider {
  readonly description: string;
  /** whether this source has a moving `latest` pointer (what polling watches) */
  readonly follows: boolean;
  /** identity (`<release>@<manifest sha>`) of what `open` would load now, or null when unknown (local folder) */
  peek(): Promise<string | null>;
  /** a verified source ready for the loader, and its identity */
  open(log?: (msg: string, fields?: Record<string, unknown>) => void): Promise<{ source: ArtifactSource; key: string | null }>;
}

/** A local version folder: always reloaded in full (no identity). */
export class LocalProvider implements SourceProvider {
  readonly follows = false;
  readonly description: string;
  constructor(private readonly dir: string) {
    this.description = `local dir ${dir}`;
  }
  async peek(): Promise<string | null> {
    return null;
  }
  async open(): Promise<{ source: ArtifactSource; key: string | null }> {
    return { source: new LocalDirSource(this.dir), key: null };
  }
}

/** A release on S3 (pinned, or the latest pointer), verified into `cacheDir`. */
export class S3Provider implements SourceProvider {
  readonly description: string;
  readonly follows: boolean;
  private s3: Promise<{ lib: typeof import('./s3source.js'); client: S3Client }> | null = null;
  constructor(
    readonly loc: S3Location,
    private readonly cacheDir: string,
    private readonly schemas: SchemaRegistry,
    private readonly client?: S3Client,
  ) {
    const tail = loc.release ?? 'latest';
    this.description = s3Url(loc.bucket, `${loc.prefix ? `${loc.prefix}/` : ''}${loc.artifactVersion}/${tail}`);
    this.follows = loc.release === null;
  }

  /** s3source.ts (and the SDK) loaded on first use, with the client given or one from the AWS configuration. */
  private sdk(): Promise<{ lib: typeof import('./s3source.js'); client: S3Client }> {
    this.s3 ??= import('./s3source.js').then((lib) => ({ lib, client: this.client ?? lib.makeS3Client() }));
    return this.s3;
  }

  async peek(): Promise<string | null> {
    const { lib, client } = await this.sdk();
    const r = await lib.resolveRelease(client, this.loc, this.schemas);
    return `${r.release}@${r.manifestSha256 ?? 'pinned'}`;
  }

  async open(log?: (msg: string, fields?: Record<string, unknown>) => void): Promise<{ source: ArtifactSource; key: string | null }> {
    const { lib, client } = await this.sdk();
    const r = await lib.resolveRelease(client, this.loc, this.schemas);
    const fetched = await lib.fetchRelease(client, this.loc, this.cacheDir, this.schemas, r);
    log?.('fetched release', {
      release: fetched.release,
      downloaded_files: fetched.downloadedFiles,
      downloaded_bytes: fetched.downloadedBytes,
      cached_files: fetched.cachedFiles,
      fetch_sec: fetched.seconds,
    });
    return { source: new lib.S3ReleaseSource(fetched, this.loc), key: `${r.release}@${r.manifestSha256 ?? 'pinned'}` };
  }
}

/** The provider for `uri`: `s3://...` or a local folder path. */
export function providerFor(uri: string, cacheDir: string, schemas: SchemaRegistry, client?: S3Client): SourceProvider {
  if (uri.startsWith('s3://')) return new S3Provider(parseS3Uri(uri), cacheDir, schemas, client);
  return new LocalProvider(uri);
}
