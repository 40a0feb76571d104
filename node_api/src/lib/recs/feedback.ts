/**
 * What the feedback store (POST /feedback, table feedback_events) knows of one listener, by catalogue row: the
 * tracks they skipped or disliked (kept off their radio and recommendations), the confidence of the tracks they
 * played or liked (the content profile of a listener the trained recommenders do not know) and every track they
 * gave feedback on (history: not recommended again). The store is a plugin (plugins/feedbackStore.ts); this is
 * the part the recommenders read, so lib/ needs no database.
 */

import { EVENTS, type EventWeights, type ListeningEvent } from './model.js';

/** One (track, event) count of a listener's stored feedback. */
export interface FeedbackCount {
  track_id: string;
  event: ListeningEvent;
  n: number;
}

/** Reads a listener's stored feedback (one indexed query); null: no feedback store is configured. */
export type FeedbackReader = ((userId: string) => Promise<FeedbackCount[]>) | null;

export interface ListenerFeedback {
  /** confidence of each played / liked track (event weights of the positive events), never skipped or disliked */
  readonly positive: ReadonlyMap<number, number>;
  /** tracks skipped or disliked at least once */
  readonly negative: ReadonlySet<number>;
  /** every track with feedback */
  readonly tracks: ReadonlySet<number>;
}

export const NO_FEEDBACK: ListenerFeedback = Object.freeze({ positive: new Map<number, number>(), negative: new Set<number>(), tracks: new Set<number>() });

/** Weights of the positive events when no recs/ says otherwise (the spec's play 1, like 4, skip -1, dislike -4). */
export const DEFAULT_EVENT_WEIGHTS: EventWeights = Object.freeze({ play: 1, like: 4, skip: -1, dislike: -4 });

/**
 * `counts` by catalogue row: a track with a skip or dislike is negative (and not positive); one with only plays
 * and likes is positive with the sum of their weights. Track ids the loaded catalogue lacks (feedback stored
 * against another version) are left out.
 */
export function summarizeFeedback(counts: readonly FeedbackCount[], rowById: ReadonlyMap<string, number>, weights: EventWeights): ListenerFeedback {
  const positive = new Map<number, number>();
  const negative = new Set<number>();
  const tracks = new Set<number>();
  for (const c of counts) {
    const row = rowById.get(c.track_id);
    if (row === undefined || !EVENTS.includes(c.event)) continue;
    tracks.add(row);
    if (weights[c.event] < 0) negative.add(row);
    else positive.set(row, (positive.get(row) ?? 0) + weights[c.event] * c.n);
  }
  for (const row of negative) positive.delete(row);
  for (const [row, w] of positive) if (!(w > 0)) positive.delete(row);
  return { positive, negative, tracks };
}
