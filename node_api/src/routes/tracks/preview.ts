/**
 * GET (and HEAD) /tracks/:trackId/preview: the track's audio preview (previews/<name>.ogg, as previews.json
 * lists it; the path comes from that file, never from the request), as audio/ogg with byte ranges (one range:
 * 206 with Content-Range; several: the whole body; unsatisfiable: 416 with a Content-Range of `bytes *` and the size),
 * a strong ETag (a prefix of the file's sha256; If-None-Match answers 304, If-Range is honoured) and an hour of
 * public caching. The file is read and verified (size, sha256) when asked for (lib/previews.ts).
 */

import type { FastifyPluginAsync } from 'fastify';

import { HttpError } from '../../lib/errors.js';
import { PREVIEW_MIME_TYPE } from '../../lib/previews.js';
import { ifRangeAllows, noneMatchHits, parseRange } from '../../lib/range.js';
import { rowOf } from '../../lib/search.js';
import { errorResponses, trackParams } from '../schemas.js';

interface Params {
  trackId: string;
}

const CACHE_CONTROL = 'public, max-age=3600';

const audio = (description: string) => ({ description, content: { [PREVIEW_MIME_TYPE]: { schema: { type: 'string', format: 'binary' } } } });

const previewSchema = {
  summary: "The track's audio preview (Ogg/Opus), with byte ranges",
  description:
    'Accept-Ranges: bytes. Range `bytes=a-b`, `bytes=a-` or `bytes=-n` answers 206 with Content-Range; several ranges answer the whole body (200); a range past the end answers 416 with `Content-Range: bytes */<size>`. ETag is a prefix of the sha256 previews.json records (If-None-Match: 304; If-Range honoured); Cache-Control: public, max-age=3600.',
  params: trackParams,
  response: {
    200: audio('the whole preview'),
    206: audio('the range asked for (Content-Range says which bytes of how many)'),
    304: { description: 'Not Modified: If-None-Match matches the ETag', type: 'null' },
    ...errorResponses,
    416: { $ref: 'ErrorBody#' },
    500: { $ref: 'ErrorBody#' },
  },
} as const;

const previewRoute: FastifyPluginAsync = async (app) => {
  app.get<{ Params: Params }>('/tracks/:trackId/preview', { schema: previewSchema }, async (req, reply) => {
    const state = app.store.require();
    const { trackId } = req.params;
    const row = rowOf(state, trackId);
    const feature = state.features.previews;
    if (!feature.on) throw new HttpError(404, feature.reason);
    const entry = feature.value.entry(row);
    if (!entry) throw new HttpError(404, `Track '${trackId}' has no preview in ${state.artifactVersion}: ${feature.value.whyNone(row)}`);
    const validators = (): typeof reply => reply.header('etag', entry.etag).header('cache-control', CACHE_CONTROL).header('accept-ranges', 'bytes');
    if (noneMatchHits(req.headers['if-none-match'], entry.etag)) return validators().code(304).send();

    let bytes: Buffer;
    try {
      bytes = await feature.value.bytes(row, entry);
    } catch (err) {
      if (err instanceof HttpError && err.statusCode >= 500) req.log.error({ track_id: trackId, file: entry.file }, err.message);
      throw err;
    }
    validators().header('x-content-type-options', 'nosniff');
    const ifRange = req.headers['if-range'];
    const range = ifRangeAllows(Array.isArray(ifRange) ? ifRange.join(', ') : ifRange, entry.etag) ? parseRange(req.headers.range, bytes.length) : { kind: 'whole' as const };
    if (range.kind === 'unsatisfiable') {
      const message = `The Range header selects no byte of the preview of track '${trackId}', which has ${bytes.length} bytes${bytes.length > 0 ? ` (bytes=0-${bytes.length - 1} at most)` : ''}`;
      return reply.code(416).header('content-range', `bytes */${bytes.length}`).send({ error: 'Range Not Satisfiable', message, statusCode: 416 });
    }
    void reply.type(PREVIEW_MIME_TYPE);
    if (range.kind === 'whole') return reply.send(bytes);
    return reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${bytes.length}`)
      .send(bytes.subarray(range.start, range.end + 1));
  });
};

export default previewRoute;
