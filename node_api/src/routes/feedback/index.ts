/**
 * POST /feedback: one listening event stored in the feedback store (PostgreSQL, FEEDBACK_DATABASE_URL), once per
 * idempotency key: 201 {stored: true}, or 200 {stored: false, duplicate: true} for a key seen before. 503 naming
 * the variable without a store; 404 for a track the catalogue lacks; 400 for a timestamp that is not ISO 8601
 * with an offset. A valid one is stored as given, in UTC: export-interactions drops (and counts) one before 2000
 * or more than a day ahead, so a client's clock error never loses the rest of its events.
 */

import type { FastifyPluginAsync } from 'fastify';

import { HttpError } from '../../lib/errors.js';
import { EVENTS, type ListeningEvent } from '../../lib/recs/model.js';
import { NOT_CONFIGURED } from '../../plugins/feedbackStore.js';
import { errorResponses, TRACK_ID_REF } from '../schemas.js';
import { userIdSchema } from '../recommend/schemas.js';

interface Body {
  user_id: string;
  track_id: string;
  event: ListeningEvent;
  ts?: string;
  duration_sec?: number;
  idempotency_key: string;
}

const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

/** `ts` as a UTC ISO string (now when absent). @throws HttpError 400 naming `ts` */
function timestamp(ts: string | undefined): string {
  if (ts === undefined) return new Date().toISOString();
  const ms = ISO_8601.test(ts) ? Date.parse(ts) : NaN;
  if (!Number.isFinite(ms)) throw new HttpError(400, `ts '${ts}' is not an ISO 8601 date-time with an offset (e.g. 2026-12-01T18:30:00Z)`);
  return new Date(ms).toISOString();
}

const stored = {
  type: 'object',
  additionalProperties: false,
  properties: { stored: { type: 'boolean' }, duplicate: { type: 'boolean' } },
  required: ['stored'],
} as const;

const feedback: FastifyPluginAsync = async (app) => {
  app.post<{ Body: Body }>(
    '/feedback',
    {
      schema: {
        summary: 'Store one listening event (idempotent)',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            user_id: userIdSchema(app, 'the listener'),
            track_id: TRACK_ID_REF,
            event: { type: 'string', enum: [...EVENTS] },
            ts: { type: 'string', format: 'date-time', maxLength: 40, description: 'RFC 3339 / ISO 8601 date-time with an offset (default: now); stored as given: export-interactions drops (and counts) one before 2000 or more than a day ahead' },
            duration_sec: { type: 'number', minimum: 0, maximum: 1e7 },
            idempotency_key: { type: 'string', minLength: 8, maxLength: 128, pattern: '^[\\x21-\\x7e]+$', description: 'printable ASCII; an event is stored once per key' },
          },
          required: ['user_id', 'track_id', 'event', 'idempotency_key'],
        },
        response: { 200: stored, 201: stored, ...errorResponses },
      },
    },
    async (req, reply) => {
      if (!app.feedback.configured) throw new HttpError(503, NOT_CONFIGURED);
      const state = app.store.require();
      const b = req.body;
      if (!state.rowById.has(b.track_id)) throw new HttpError(404, `Unknown track_id '${b.track_id}': no such track in ${state.artifactVersion}`);
      const ok = await app.feedback.insert({
        idempotency_key: b.idempotency_key,
        user_id: b.user_id,
        track_id: b.track_id,
        event: b.event,
        ts: timestamp(b.ts),
        duration_sec: b.duration_sec ?? null,
      });
      if (ok) return reply.status(201).send({ stored: true });
      return reply.status(200).send({ stored: false, duplicate: true });
    },
  );
};

export default feedback;
