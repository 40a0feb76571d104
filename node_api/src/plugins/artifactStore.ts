/**
 * The artifact store: loads one artifact version through an `ArtifactSource` and holds the single reference
 * to the immutable `LoadedState`. Routes call `current()` once per request. `swap()` replaces the whole state
 * in one assignment (what a later `POST /models/reload` uses after loading a new version in full).
 */

import fp from 'fastify-plugin';

import { HttpError } from '../lib/errors.js';
import { loadArtifacts, type LoadOptions } from '../lib/loader.js';
import type { SchemaRegistry } from '../lib/schemas.js';
import type { ArtifactSource } from '../lib/source.js';
import type { LoadedState } from '../lib/state.js';

export type StoreStatus = 'loading' | 'ready' | 'failed';

export class ArtifactStore {
  private state: LoadedState | null = null;
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
