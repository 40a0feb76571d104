/**
 * Choices shared by the configuration (src/plugins/env.ts, which reads them from the environment) and the
 * loader (src/lib/loader.ts, which acts on them). They live here, below both, so neither imports the other.
 */

/**
 * VECTOR_BACKEND values a user may set. 'auto' (the default): HNSW when index_meta.json lists the index (then the
 * file must be there and sound: a listed index that is missing refuses the load), else exact search.
 */
export const BACKEND_CHOICES = ['auto', 'exact', 'hnsw', 'pgvector'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

/** NEIGHBORS_TABLE: use index/neighbors.i32 when listed (auto), refuse to start without it (require), ignore it (off). */
export const NEIGHBORS_TABLE_MODES = ['auto', 'require', 'off'] as const;
export type NeighborsTableMode = (typeof NEIGHBORS_TABLE_MODES)[number];
