/**
 * The artifact store plugin, which owns the artifacts' whole lifecycle: it opens the source (a `SourceProvider`
 * for ARTIFACTS_URI: local folder or verified S3 release; or a fixed source in tests), the pgvector pool when
 * VECTOR_BACKEND=pgvector, starts the first load, reloads (`app.reloadArtifacts`: POST /models/reload),
 * polls the latest pointer (RELOAD_POLL_SEC) and, on close, stops the poll and ends the pool.
 *
 * `ArtifactStore` holds the single reference to the immutable `LoadedState`. Routes call `current()` once per
 * request. `swap()` replaces the whole state in one assignment. `reload()` loads the new version beside the
 * old one through the provider and swaps only when it loaded and verified in full; a failed reload leaves the
 * old state serving. One reload runs at a time.
 */

import type { S3Client } from '@aws-sdk/client-s3';
import type { FastifyBaseLogger } from 'fastify';
import fp from 'fastify-plugin';
import type pg from 'pg';

import { HttpError } from '../lib/errors.js';
import { loadArtifacts, type LoadOptions } from '../lib/loader.js';
import { redact } from '../lib/redact.js';
import { providerFor, type SourceProvider } from '../lib/provider.js';
import type { SchemaRegistry } from '../lib/schemas.js';
import type { ArtifactSource } from '../lib/source.js';
import type { LoadedState } from '../lib/state.js';
import type { AppConfig } from './env.js';

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
    /** load what ARTIFACTS_URI names now beside the serving state and swap (see ArtifactStore.reload) */
    reloadArtifacts: () => Promise<ReloadResult>;
    /** the first load: resolves with the state, or rejects with the loader's error (the store is then 'failed') */
    artifactsLoaded: Promise<LoadedState>;
  }
}

export interface StorePluginOptions {
  schemas: SchemaRegistry;
  /** a fixed source to read (tests); default: the provider for config.artifactsUri */
  source?: ArtifactSource;
  /** S3 client to use (tests); default: from the standard AWS configuration */
  s3Client?: S3Client;
  /** overrides of the loader's options (tests) */
  loadOptions?: Partial<LoadOptions>;
}

/** A provider that always opens `source` (no identity, never follows a pointer). */
function fixedProvider(source: ArtifactSource): SourceProvider {
  return { description: source.description, follows: false, peek: async () => null, open: async () => ({ source, key: null }) };
}

/** The loader's options from the config (the pgvector pool when there is one), then the caller's overrides. */
function loadOptionsFor(config: AppConfig, pool: pg.Pool | null, log: FastifyBaseLogger, overrides: Partial<LoadOptions> = {}): Partial<LoadOptions> {
  return {
    ...(pool && config.databaseUrl
      ? { pgvector: { pool, databaseUrl: config.databaseUrl, version: config.pgvectorVersion, efSearch: config.pgvectorEfSearch } }
      : {}),
    backend: config.vectorBackend,
    hnswEf: config.hnswEf,
    hnswEfMax: config.hnswEfMax,
    recallSample: config.recallSample,
    recallTarget: config.recallTarget,
    neighborsTable: config.neighborsTable,
    log: (msg, fields) => log.info(fields ?? {}, msg),
    ...overrides,
  };
}

/**
 * Decorates the instance with the store, `reloadArtifacts` and `artifactsLoaded` (the first load, started
 * here in the background), configured by `app.config` (the env plugin, registered first); polls when RELOAD_POLL_SEC > 0 and the source follows a latest pointer; on close
 * stops the poll, then ends the pgvector pool.
 */
export default fp<StorePluginOptions>(
  async (app, opts) => {
    const { config } = app;
    const { schemas } = opts;
    const store = new ArtifactStore();
    app.decorate('store', store);
    const provider = opts.source ? fixedProvider(opts.source) : providerFor(config.artifactsUri, config.artifactCacheDir, schemas, opts.s3Client);
    // pg is imported only for the pgvector backend (0.1 s of every other start-up)
    const pool = config.vectorBackend === 'pgvector' && config.databaseUrl ? (await import('../lib/backends/pgvector.js')).makePool(config.databaseUrl, config.pgvectorEfSearch) : null;
    const loadOptions = loadOptionsFor(config, pool, app.log, opts.loadOptions);

    const reload = async (): Promise<ReloadResult> => {
      const res = await store.reload(provider, schemas, loadOptions);
      app.log.info({ ...res }, `reload: ${res.status}`);
      return res;
    };
    app.decorate('reloadArtifacts', reload);

    let poll: NodeJS.Timeout | null = null;
    if (config.reloadPollSec > 0 && provider.follows) {
      poll = setInterval(() => {
        if (store.status !== 'ready' || store.reloading) return;
        reload().catch((err: unknown) => app.log.error({ err }, 'reload poll failed; the previous version keeps serving'));
      }, config.reloadPollSec * 1000);
      poll.unref();
    }
    app.addHook('onClose', async () => {
      if (poll) clearInterval(poll);
    });
    if (pool) {
      app.log.info({ database: redact(config.databaseUrl!) }, 'pgvector backend');
      app.addHook('onClose', async () => {
        await pool.end();
      });
    }

    app.log.info({ source: provider.description }, 'loading artifacts');
    const loaded = store.loadFrom(provider, schemas, loadOptions).then((state) => {
      app.log.info({ artifact_version: state.artifactVersion, release: state.release, count: state.count, dim: state.dim, backend: state.backend.kind, load_sec: state.loadSec, schema_validators: { ...schemas.made } }, 'artifacts loaded');
      return state;
    });
    // whoever awaits artifactsLoaded sees the rejection; keep it from going unhandled meanwhile
    loaded.catch(() => {});
    app.decorate('artifactsLoaded', loaded);
  },
  { name: 'artifact-store', dependencies: ['env'] },
);
