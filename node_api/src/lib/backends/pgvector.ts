/**
 * The pgvector backend: nearest neighbours from PostgreSQL + pgvector, from the tables `research-job publish
 * --to pgvector` writes (`vector_versions` + one `track_vectors_<slug>_<hash>` table per version, HNSW
 * `vector_cosine_ops`). Track queries run the SQL of docs/publishing.md (Python `nearest_pgvector`): self
 * excluded by track_id, cosine distance ascending, ties by ascending row_id, k + 32 ANN candidates, and an
 * exact rerun (`enable_indexscan = off`) when the index leaves fewer than k rows. `hnsw.ef_search` is a
 * start-up option of every pooled connection, so a query is one round trip; only when k > ef_search does a
 * query run in a rolled-back transaction with `SET LOCAL hnsw.ef_search = k` (Python's max(ef_search, k)). Scores are pgvector's
 * (`1 - distance`, accumulated in float32 by pgvector). Metadata and the embeddings still come from the
 * artifacts; `open` checks that the version's N, dim and row -> track_id agree with them. No secret of
 * DATABASE_URL reaches a message: the location is `redact`ed, and so is every driver message.
 */

import pg from 'pg';

import { ArtifactError, StorageError } from '../errors.js';
import { redact } from '../redact.js';
import type { Hit, RowExclusion } from '../exact.js';
import type { VectorBackend } from './types.js';

/** Extra ANN candidates beyond k (Python CANDIDATE_MARGIN). */
export const CANDIDATE_MARGIN = 32;
const VERSIONS_TABLE = 'vector_versions';

const NEAREST_SQL = (table: string, album: boolean): string => `
SELECT row_id, track_id, album_id, composer, title, distance
FROM (
    SELECT t.row_id, t.track_id, t.album_id, t.composer, t.title,
           t.embedding <=> (SELECT q.embedding FROM ${table} q WHERE q.track_id = $1) AS distance
    FROM ${table} t
    WHERE t.track_id <> $1
      ${album ? `AND t.album_id <> (SELECT q.album_id FROM ${table} q WHERE q.track_id = $1)` : ''}
    ORDER BY t.embedding <=> (SELECT q.embedding FROM ${table} q WHERE q.track_id = $1)
    LIMIT $2
) c
ORDER BY distance, row_id
LIMIT $3`;

const VECTOR_SQL = (table: string): string => `
SELECT row_id, distance
FROM (
    SELECT t.row_id, t.embedding <=> $1::vector AS distance
    FROM ${table} t
    ORDER BY t.embedding <=> $1::vector
    LIMIT $2
) c
ORDER BY distance, row_id`;

/** A connection pool whose sessions use `hnsw.ef_search = efSearch`. */
export function makePool(databaseUrl: string, efSearch: number, max = 10): pg.Pool {
  // a session setting given at connection start-up: every pooled session searches with this ef
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    options: `-c hnsw.ef_search=${Math.trunc(efSearch)}`,
    connectionTimeoutMillis: 10_000,
    statement_timeout: 30_000,
  });
  // an idle client's error (server restart) must not crash the process; the next query reports it
  pool.on('error', () => {});
  return pool;
}

interface VersionRow {
  version: string;
  table_name: string;
  n: number;
  dim: number;
  content_sha256: string;
  hnsw_m: number;
  hnsw_ef_construction: number;
}

export interface PgvectorOpenOptions {
  pool: pg.Pool;
  databaseUrl: string;
  artifactVersion: string;
  /** `<artifact_version>/<release>`, or null for the model's latest */
  version: string | null;
  efSearch: number;
  trackIds: readonly string[];
  dim: number;
  /** the S3 manifest's content digest of the loaded artifacts, when known: must equal the version's */
  contentSha256: string | null;
}

export class PgvectorBackend implements VectorBackend {
  readonly kind = 'pgvector' as const;
  /** exact reruns (filters left fewer than k ANN rows) */
  exactReruns = 0;

  private constructor(
    private readonly pool: pg.Pool,
    readonly version: string,
    readonly table: string,
    private readonly quoted: string,
    private readonly count: number,
    private readonly efSearch: number,
    private readonly info: VersionRow,
    private readonly where: string,
    private readonly databaseUrl: string,
  ) {}

  /**
   * Resolve the version (latest of the model unless pinned) and check it against the loaded artifacts.
   * @throws ArtifactError naming the version and the mismatch; StorageError when the database cannot be queried
   */
  static async open(o: PgvectorOpenOptions): Promise<PgvectorBackend> {
    const where = `pgvector ${redact(o.databaseUrl)}`;
    const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> => {
      try {
        return await o.pool.query<R>(text, values);
      } catch (err) {
        // the driver's message may quote the connection string (a malformed URL): its secrets are scrubbed
        throw new StorageError(`${where}: ${redact((err as Error).message, o.databaseUrl)}`);
      }
    };
    const reg = await q<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [VERSIONS_TABLE]);
    if (reg.rows[0]?.t == null) throw new ArtifactError(VERSIONS_TABLE, `missing in ${where}: nothing was published with research-job publish --to pgvector`);
    const cols = 'version, table_name, n, dim, content_sha256, hnsw_m, hnsw_ef_construction';
    const res =
      o.version === null
        ? await q<VersionRow>(`SELECT ${cols} FROM ${VERSIONS_TABLE} WHERE artifact_version = $1 AND is_latest`, [o.artifactVersion])
        : await q<VersionRow>(`SELECT ${cols} FROM ${VERSIONS_TABLE} WHERE version = $1`, [o.version]);
    const row = res.rows[0];
    if (!row) {
      const known = (await q<{ version: string }>(`SELECT version FROM ${VERSIONS_TABLE} ORDER BY version`)).rows.map((r) => r.version);
      const want = o.version === null ? `a latest version of ${o.artifactVersion}` : `version '${o.version}'`;
      throw new ArtifactError(VERSIONS_TABLE, `${where} has no ${want}; known versions: ${known.join(', ') || '(none)'}`);
    }
    const name = `${VERSIONS_TABLE} '${row.version}'`;
    if (!row.version.startsWith(`${o.artifactVersion}/`)) {
      throw new ArtifactError(name, `belongs to another artifact version than the loaded ${o.artifactVersion}`);
    }
    if (row.n !== o.trackIds.length) throw new ArtifactError(name, `has N = ${row.n} but the loaded artifacts have ${o.trackIds.length} tracks`);
    if (row.dim !== o.dim) throw new ArtifactError(name, `has dim = ${row.dim} but the loaded artifacts have dim ${o.dim}`);
    if (o.contentSha256 !== null && row.content_sha256 !== o.contentSha256) {
      throw new ArtifactError(name, `content_sha256 ${row.content_sha256} differs from the loaded release's manifest ${o.contentSha256} (different content)`);
    }
    const ef = (await q<{ ef: string | null }>("SELECT current_setting('hnsw.ef_search', true) AS ef")).rows[0]?.ef;
    if (ef !== String(o.efSearch)) {
      throw new StorageError(`${where}: sessions report hnsw.ef_search = ${ef ?? 'unset'}, expected ${o.efSearch} (the connection start-up option was not applied)`);
    }
    const quoted = pg.escapeIdentifier(row.table_name);
    const ids = await q<{ row_id: number; track_id: string }>(`SELECT row_id, track_id FROM ${quoted} ORDER BY row_id`);
    if (ids.rows.length !== o.trackIds.length) throw new ArtifactError(name, `table ${row.table_name} holds ${ids.rows.length} rows, expected ${o.trackIds.length}`);
    ids.rows.forEach((r, i) => {
      if (r.row_id !== i || r.track_id !== o.trackIds[i]) {
        throw new ArtifactError(name, `row_id ${r.row_id} is track '${r.track_id}' but row ${i} of the artifacts is '${o.trackIds[i]}'`);
      }
    });
    return new PgvectorBackend(o.pool, row.version, row.table_name, quoted, o.trackIds.length, o.efSearch, row, where, o.databaseUrl);
  }

  /** Run `text`: on the session's ef_search, with a larger `ef` (SET LOCAL), or as an exact scan. */
  private async run(text: string, values: unknown[], mode: 'ann' | 'exact', ef = 0): Promise<pg.QueryResultRow[]> {
    try {
      if (mode === 'ann' && ef <= this.efSearch) return (await this.pool.query(text, values)).rows;
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(mode === 'exact' ? 'SET LOCAL enable_indexscan = off' : `SET LOCAL hnsw.ef_search = ${Math.trunc(ef)}`);
        return (await client.query(text, values)).rows;
      } finally {
        await client.query('ROLLBACK').catch(() => {});
        client.release();
      }
    } catch (err) {
      throw new StorageError(`${this.where}: ${redact((err as Error).message, this.databaseUrl)}`);
    }
  }

  /**
   * Top-k of a catalogue track by the shared SQL (self excluded by track_id, optionally its album).
   * The caller has checked that the track exists in the loaded artifacts (same ids, checked at open).
   */
  async searchTrack(trackId: string, k: number, excludeSameAlbum: boolean): Promise<Hit[]> {
    const sql = NEAREST_SQL(this.quoted, excludeSameAlbum);
    const values = [trackId, k + CANDIDATE_MARGIN, k];
    let rows = await this.run(sql, values, 'ann', k);
    if (rows.length < k || rows.some((r) => r.distance === null)) {
      this.exactReruns++;
      rows = await this.run(sql, values, 'exact');
    }
    return rows.map((r) => ({ row: r.row_id as number, score: 1 - Number(r.distance) }));
  }

  /** Top-k of a query vector (POST /search): ANN candidates, exclusions skipped, exact rerun when short. */
  async search(query: Float64Array, k: number, exclude: RowExclusion): Promise<Hit[]> {
    const want = Math.min(k, Math.max(0, this.count - exclude.size));
    if (want <= 0) return [];
    const literal = `[${Array.from(query, (v) => Math.fround(v)).join(',')}]`;
    const pick = (rows: pg.QueryResultRow[]): Hit[] =>
      rows.filter((r) => !exclude.has(r.row_id as number)).slice(0, k).map((r) => ({ row: r.row_id as number, score: 1 - Number(r.distance) }));
    const limit = k + exclude.size + CANDIDATE_MARGIN;
    let hits = pick(await this.run(VECTOR_SQL(this.quoted), [literal, limit], 'ann', k + exclude.size));
    if (hits.length < want) {
      this.exactReruns++;
      hits = pick(await this.run(VECTOR_SQL(this.quoted), [literal, k + exclude.size], 'exact'));
    }
    return hits;
  }

  describe(): Record<string, unknown> {
    return {
      type: 'pgvector',
      version: this.version,
      table: this.table,
      ef_search: this.efSearch,
      exact_reruns: this.exactReruns,
      m: this.info.hnsw_m,
      ef_construction: this.info.hnsw_ef_construction,
      content_sha256: this.info.content_sha256,
    };
  }
}
