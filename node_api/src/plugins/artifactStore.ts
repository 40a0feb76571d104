/**
 * The artifact store: loads one artifact version through an `ArtifactSource` and holds the single reference
 * to the immutable `LoadedState`. Routes call `current()` once per request. `swap()` replaces the whole state
 * in one assignment. `reload()` (POST /models/reload, RELOAD_POLL_SEC) loads the new version beside the old
 * one through a `SourceProvider` and swaps only when it loaded and verified in full; a failed reload leaves
 * the old state serving. One reload runs at a time.
 */

import fp from 'fastify-plugin';

import { HttpError } from '../lib/errors.js';
import { loadArtifacts, type LoadOptions } from '../lib/loader.js';
import type { SchemaRegistry } from '../lib/schemas.js';
import type { SourceProvider } from '../lib/provider.js';
import type { ArtifactSource } from '../lib/source.js';
import type { LoadedState } from '../lib/state.js';

export type StoreStatus = 'loading' | 'ready' | 'failed';

export interface ReloadResult {
  status: 'reloaded' | 'unchanged';
  previous: { artifact_version: string; release: string | null } | null;
  current: { artifact_version: string; release: string | null; content_sha256: string | null };
  reload_sec: number;
}

export class ArtifactStore {
  private state: LoadedState | null = null;
  private key: string | null = null;
  private inFlight: Promise<ReloadResult> | null = null;
  private statusValue: StoreStatus = 'loading';
  private failure: Error | null = null;

  get status(): StoreStatus {
    return this.statusValue;
  }

  get error(): Error | null {
    return this.failure;
  }

  /** The loaded state, or null while loading / after a failed load. */
  current(): LoadedState | null {
    return this.state;
  }

  /** The loaded state, or a 503 for the caller. */
  require(): LoadedState {
    const s = this.state;
    if (!s) throw new HttpError(503, this.statusValue === 'failed' ? 'Artifacts failed to load' : 'Artifacts are still loading');
    return s;
  }

  /** Publish a fully loaded state (atomic: one reference assignment). */
  swap(next: LoadedState): void {
    this.state = next;
    this.statusValue = 'ready';
    this.failure = null;
  }

  /** Whether a reload is running now. */
  get reloading(): boolean {
    return this.inFlight !== null;
  }

  /** First load through `provider` (fetch + verify, then load); on failure the store is 'failed'. */
  async loadFrom(provider: SourceProvider, schemas: SchemaRegistry, opts: Partial<LoadOptions>): Promise<LoadedState> {
    try {
      const { source, key } = await provider.open(opts.log);
      const next = await this.load(source, schemas, opts);
      this.key = key;
      return next;
    } catch (err) {
      if (!this.state) this.statusValue = 'failed';
      this.failure = err as Error;
      throw err;
    }
  }

  /**
   * Load what `provider` names now beside the current state and swap to it; 'unchanged' (no load) when the
   * provider reports the release already served. Requests in flight keep the state they read.
   * @throws HttpError 409 while another reload runs; the loader's ArtifactError/StorageError (old state kept)
   */
  async reload(provider: SourceProvider, schemas: SchemaRegistry, opts: Partial<LoadOptions>): Promise<ReloadResult> {
    if (this.inFlight) throw new HttpError(409, 'A reload is already in progress; retry when it has finished');
    const run = async (): Promise<ReloadResult> => {
      const t0 = performance.now();
      const prev = this.state;
      const previous = prev ? { artifact_version: prev.artifactVersion, release: prev.release } : null;
      const peeked = await provider.peek();
      if (prev && peeked !== null && peeked === this.key) {
        return {
          status: 'unchanged',
          previous,
          current: { artifact_version: prev.artifactVersion, release: prev.release, content_sha256: prev.contentSha256 },
          reload_sec: (performance.now() - t0) / 1000,
        };
      }
      const { source, key } = await provider.open(opts.log);
      const next = await loadArtifacts(source, schemas, opts);
      this.swap(next);
      this.key = key;
      return {
        status: 'reloaded',
        previous,
        current: { artifact_version: next.artifactVersion, release: next.release, content_sha256: next.contentSha256 },
        reload_sec: (performance.now() - t0) / 1000,
      };
    };
    this.inFlight = run();
    try {
      return await this.inFlight;
    } finally {
      this.inFlight = null;
    }
  }

  /** Load from `source`; on success publish, on failure remember the error and rethrow. */
  async load(source: ArtifactSource, schemas: SchemaRegistry, opts: Partial<LoadOptions>): Promise<LoadedState> {
    try {
      const next = await loadArtifacts(source, schemas, opts);
      this.swap(next);
      return next;
    } catch (err) {
      if (!this.state) this.statusValue = 'failed';
      this.failure = err as Error;
      throw err;
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    store: ArtifactStore;
  }
}

export interface StorePluginOptions {
  store: ArtifactStore;
}

/** Decorates the instance with the store (loading is started by `buildApp`). */
export default fp<StorePluginOptions>(
  async (app, opts) => {
    app.decorate('store', opts.store);
  },
  { name: 'artifact-store' },
);
