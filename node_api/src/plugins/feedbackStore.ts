/**
 * The feedback store plugin: listening feedback (POST /feedback) kept in PostgreSQL, table feedback_events,
 * which research-job export-interactions --feedback-database-url reads back for the next training. It owns its
 * `pg` pool (FEEDBACK_DATABASE_URL): creates the table and its user_id index if missing at start-up (retried on
 * the next request when the database is not reachable yet), stores an event once per idempotency key
 * (INSERT ... ON CONFLICT DO NOTHING) and reads one listener's feedback (one indexed query) for the
 * recommenders; on close it ends the pool. Without FEEDBACK_DATABASE_URL `app.feedback.configured` is false:
 * /feedback answers 503 naming the variable and the other endpoints serve without feedback. The URL's password
 * never reaches a log line or a response (lib/redact.ts).
 */

import fp from 'fastify-plugin';
import type pg from 'pg';

import { HttpError } from '../lib/errors.js';
import { redact } from '../lib/redact.js';
import type { FeedbackCount, FeedbackReader } from '../lib/recs/feedback.js';
import type { ListeningEvent } from '../lib/recs/model.js';

export const FEEDBACK_TABLE = 'feedback_events';

const CREATE = [
  `CREATE TABLE IF NOT EXISTS ${FEEDBACK_TABLE} (
    idempotency_key text PRIMARY KEY,
    user_id text NOT NULL,
    track_id text NOT NULL,
    event text NOT NULL CHECK (event IN ('play', 'like', 'skip', 'dislike')),
    ts timestamptz NOT NULL,
    duration_sec double precision CHECK (duration_sec IS NULL OR duration_sec >= 0),
    origin text NOT NULL DEFAULT 'feedback',
    received_at timestamptz NOT NULL DEFAULT now()
  )`,
  `CREATE INDEX IF NOT EXISTS ${FEEDBACK_TABLE}_user_id ON ${FEEDBACK_TABLE} (user_id)`,
];

/** One event to store. */
export interface FeedbackEvent {
  idempotency_key: string;
  user_id: string;
  track_id: string;
  event: ListeningEvent;
  /** ISO 8601 with an offset */
  ts: string;
  duration_sec: number | null;
}

export const NOT_CONFIGURED = 'FEEDBACK_DATABASE_URL is not set: this server stores no feedback (set it to a PostgreSQL URL, postgresql://user@host:5432/db)';

export class FeedbackStore {
  private ready: Promise<void> | null = null;

  constructor(
    private readonly pool: pg.Pool | null,
    private readonly url: string | null,
  ) {}

  get configured(): boolean {
    return this.pool !== null;
  }

  /** The table and index, created once; a failure is reported and retried by the next call. */
  ensureTable(): Promise<void> {
    if (this.pool === null) return Promise.reject(new HttpError(503, NOT_CONFIGURED));
    this.ready ??= (async () => {
      for (const sql of CREATE) await this.pool!.query(sql);
    })().catch((err: unknown) => {
      this.ready = null;
      throw this.unavailable(err);
    });
    return this.ready;
  }

  /** A database error as a 503 naming the (redacted) URL; the driver's message redacted too. */
  private unavailable(err: unknown): HttpError {
    if (err instanceof HttpError) return err;
    const msg = redact((err as Error).message ?? String(err), this.url ?? undefined);
    return new HttpError(503, `the feedback store (FEEDBACK_DATABASE_URL=${redact(this.url ?? '')}) is unavailable: ${msg}`);
  }

  /** Store `e`; false when its idempotency key was stored before. @throws HttpError 503 */
  async insert(e: FeedbackEvent): Promise<boolean> {
    await this.ensureTable();
    try {
      const r = await this.pool!.query(
        `INSERT INTO ${FEEDBACK_TABLE} (idempotency_key, user_id, track_id, event, ts, duration_sec) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING`,
        [e.idempotency_key, e.user_id, e.track_id, e.event, e.ts, e.duration_sec],
      );
      return r.rowCount === 1;
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /** A listener's feedback: events per (track, event). @throws HttpError 503 */
  async history(userId: string): Promise<FeedbackCount[]> {
    await this.ensureTable();
    try {
      const r = await this.pool!.query<{ track_id: string; event: ListeningEvent; n: string }>(
        `SELECT track_id, event, count(*) AS n FROM ${FEEDBACK_TABLE} WHERE user_id = $1 GROUP BY track_id, event ORDER BY track_id, event`,
        [userId],
      );
      return r.rows.map((row) => ({ track_id: row.track_id, event: row.event, n: Number(row.n) }));
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /** The reader the recommenders take (null when no store is configured). */
  get reader(): FeedbackReader {
    return this.pool === null ? null : (userId) => this.history(userId);
  }

  async close(): Promise<void> {
    await this.pool?.end();
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    feedback: FeedbackStore;
  }
}

/** Decorates the instance with `feedback` (configured by FEEDBACK_DATABASE_URL); creates the table in the background. */
export default fp(
  async (app) => {
    const url = app.config.feedbackDatabaseUrl;
    let pool: pg.Pool | null = null;
    if (url !== null) {
      // imported only when configured (pg costs 0.1 s of a start-up)
      const { default: pgModule } = await import('pg');
      pool = new pgModule.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 10_000, statement_timeout: 10_000 });
      // an idle client's error (server restart) must not crash the process; the next query reports it
      pool.on('error', () => {});
    }
    const store = new FeedbackStore(pool, url);
    app.decorate('feedback', store);
    if (url !== null) {
      app.log.info({ database: redact(url), table: FEEDBACK_TABLE }, 'feedback store');
      store.ensureTable().catch((err: unknown) => app.log.warn({ reason: (err as Error).message }, 'feedback store not ready; retried on the next request'));
    }
    app.addHook('onClose', async () => {
      await store.close();
    });
  },
  { name: 'feedback-store', dependencies: ['env'] },
);
