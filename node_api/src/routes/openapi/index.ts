/**
 * GET /openapi.json: the OpenAPI 3.1 document of the routes (@fastify/swagger, from the route schemas),
 * completed at request time with what only the loaded artifacts know: the length POST /search's `vector`
 * must have (the loaded dim, which a reload can change; and not all zeros, which cannot be normalised), a real
 * track id of the catalogue as the example of every `{trackId}` path parameter, and the composer filter values
 * and track ids the version knows (an enum, for a catalogue of up to MAX_ENUM), so that a client generated from
 * the document sends requests the server accepts. The Swagger UI at /docs shows the same document
 * (`servedDocument`).
 */

import type { FastifyInstance, FastifyPluginAsync } from 'fastify';

type Json = Record<string, any>;

/** The vector schema of POST /search's JSON body in `doc`, or undefined when the document has none. */
function searchVector(doc: Json): Json | undefined {
  return doc.paths?.['/search']?.post?.requestBody?.content?.['application/json']?.schema?.properties?.vector as Json | undefined;
}

/** Up to this many values (composers, track ids) are listed as an enum; a larger catalogue gets a few examples. */
const MAX_ENUM = 1000;

/** `schema` restricted to `values`: an enum when there are at most MAX_ENUM of them, else examples only. */
function restrictTo(schema: Json, values: readonly string[]): void {
  if (values.length <= MAX_ENUM) schema.enum = [...values];
  else schema.examples = values.slice(0, 3);
}

/** The `composer` query parameter object of GET /tracks/{trackId}/nearest in `doc`. */
function composerParameter(doc: Json): Json | undefined {
  return (doc.paths?.['/tracks/{trackId}/nearest']?.get?.parameters as Json[] | undefined)?.find((p) => p.in === 'query' && p.name === 'composer');
}

/** Every `{trackId}` path parameter object of `doc`. */
function trackIdParameters(doc: Json): Json[] {
  const out: Json[] = [];
  for (const item of Object.values((doc.paths ?? {}) as Record<string, Json>)) {
    for (const op of Object.values(item)) {
      for (const p of (op as Json)?.parameters ?? []) if (p.in === 'path' && p.name === 'trackId') out.push(p as Json);
    }
  }
  return out;
}

/** The served document of each loaded state (the routes' document is fixed once the app is ready). */
const servedByState = new WeakMap<object, Json>();

/**
 * A copy of the app's OpenAPI document with the loaded version's facts: `vector` gets minItems = maxItems = dim
 * (and `not` all zeros), each `{trackId}` parameter the catalogue's first track id as its example, `composer`
 * the filter values the version knows (every standardised key and display name, lower-cased: the match ignores
 * case and surrounding spaces) as its enum, and `exclude_track_ids` the catalogue's ids (unknown ones are a 400);
 * both only up to MAX_ENUM values. Before a version is loaded the document is served as the routes declare it.
 */
export function servedDocument(app: FastifyInstance, spec?: Readonly<Json>): Json {
  const state = app.store.current();
  if (!state) return structuredClone(spec ?? (app.swagger() as Json)) as Json;
  // built once per loaded version (a reload publishes a new state): a request does not clone the document
  const cached = servedByState.get(state);
  if (cached) return cached;
  const doc = structuredClone(spec ?? (app.swagger() as Json)) as Json;
  servedByState.set(state, doc);
  const vector = searchVector(doc);
  if (vector) {
    vector.minItems = state.dim;
    vector.maxItems = state.dim;
    vector.not = { items: { const: 0 } };
    vector.description = `the query embedding: exactly ${state.dim} numbers, not all zero (dim of ${state.artifactVersion}, GET /models), same model and postprocess`;
  }
  const composer = composerParameter(doc);
  if (composer?.schema) {
    const max = typeof composer.schema.maxLength === 'number' ? composer.schema.maxLength : Infinity;
    const values = [...state.composerFilterRows.keys()].filter((v) => v.length > 0 && [...v].length <= max).sort();
    restrictTo(composer.schema as Json, values);
  }
  const excluded = doc.paths?.['/search']?.post?.requestBody?.content?.['application/json']?.schema?.properties?.exclude_track_ids?.items as Json | undefined;
  if (excluded) restrictTo(excluded, state.trackIds);
  const example = state.trackIds[0];
  if (example !== undefined) for (const p of trackIdParameters(doc)) p.example = example;
  return doc;
}

const openapi: FastifyPluginAsync = async (app) => {
  app.get('/openapi.json', { schema: { hide: true } }, async () => servedDocument(app));
};

export default openapi;
