/**
 * Build the Fastify application: the one error handler (router errors, unknown routes and wrong methods
 * included, none of which echoes the URL), request validators, the plugins (OpenAPI, config, artifact store)
 * and the routes (one folder per resource). `buildApp` is what the server and the tests use. Path parameters
 * may be as long as the contract's longest track id in its longest percent-encoded form.
 * The artifact store plugin owns the artifacts' lifecycle (source, pgvector pool, first load, reloads, poll,
 * close), the feedback store plugin its PostgreSQL pool; this file only registers.
 */

import { homedir, tmpdir } from 'node:os';

import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv } from 'ajv';
import type { S3Client } from '@aws-sdk/client-s3';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';

import { HttpError, localPathRedactor } from './lib/errors.js';
import type { LoadOptions } from './lib/loader.js';
import { redact } from './lib/redact.js';
import { PRECOMPILED_DIR, SchemaRegistry, type TrackIdSchema } from './lib/schemas.js';
import type { ArtifactSource } from './lib/source.js';
import artifactStore from './plugins/artifactStore.js';
import env, { type AppConfig } from './plugins/env.js';
import feedbackStore from './plugins/feedbackStore.js';
import evalRoutes from './routes/eval/index.js';
import feedback from './routes/feedback/index.js';
import health from './routes/health/index.js';
import mix from './routes/mix/index.js';
import models from './routes/models/index.js';
import reloadRoute from './routes/models/reload.js';
import openapi, { servedDocument } from './routes/openapi/index.js';
import page from './routes/page/index.js';
import radio from './routes/radio/index.js';
import recommend from './routes/recommend/index.js';
import report from './routes/report/index.js';
import { errorBody, maxEncodedIdLength, trackIdShared } from './routes/schemas.js';
import search from './routes/search/index.js';
import cluster from './routes/tracks/cluster.js';
import tracks from './routes/tracks/index.js';
import preview from './routes/tracks/preview.js';
import trackSearch from './routes/tracks/search.js';

export interface BuildOptions {
  config: AppConfig;
  /** a fixed source to read (tests); default: the provider for config.artifactsUri */
  source?: ArtifactSource;
  /** S3 client to use (tests); default: from the standard AWS configuration */
  s3Client?: S3Client;
  /** wait for the artifacts before returning (tests); false: load in the background (server: /health is 503 meanwhile) */
  waitForLoad?: boolean;
  logger?: FastifyServerOptions['logger'];
  /** overrides of the loader's options (tests) */
  loadOptions?: Partial<LoadOptions>;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

function reason(code: number): string {
  return STATUS_TEXT[code] ?? (code >= 500 ? 'Internal Server Error' : 'Bad Request');
}

type ErrorHandler = (err: FastifyError | HttpError, req: FastifyRequest, reply: FastifyReply) => void;

/**
 * The one error handler: `{error, message, statusCode}`; a 4xx (and an HttpError) keeps its message, with the
 * server's local folders taken out by `redact`; anything else is a logged 500.
 */
const errorHandler = (redact: (message: string) => string): ErrorHandler => (err, req, reply) => {
  let status: number;
  let message: string;
  if (err instanceof HttpError) {
    status = err.statusCode;
    message = err.message;
  } else if ((err as FastifyError).validation) {
    status = 400;
    message = err.message;
  } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    status = err.statusCode;
    message = err.message;
  } else {
    status = 500;
    message = 'Internal server error';
    req.log.error({ err }, 'unhandled error');
  }
  sendError(reply, status, redact(message));
};

function sendError(reply: FastifyReply, status: number, message: string): void {
  void reply.status(status).send({ error: reason(status), message, statusCode: status });
}

/**
 * Errors the router raises before any route runs. Fastify's own bodies quote the whole URL; these name the
 * problem and the limit instead.
 */
function routerErrors(maxParamLength: number, maxIdLength: number, handleError: ErrorHandler) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply): void => {
    if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      sendError(reply, 414, `A path parameter is longer than ${maxParamLength} characters (a track id has at most ${maxIdLength} characters, percent-encoded at most ${maxParamLength})`);
    } else if (err.code === 'FST_ERR_BAD_URL') {
      sendError(reply, 400, 'The URL path is not valid percent-encoded UTF-8');
    } else {
      handleError(err, req, reply);
    }
  };
}

/** The methods each route pattern answers, to tell a wrong method (405 with Allow) from an unknown path (404). */
class RouteMethods {
  private readonly routes: Array<{ url: string; re: RegExp; methods: Set<string> }> = [];

  add(method: string | string[], url: string): void {
    let r = this.routes.find((x) => x.url === url);
    if (!r) {
      const re = url
        .split('/')
        .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        .join('/');
      r = { url, re: new RegExp(`^${re}$`), methods: new Set() };
      this.routes.push(r);
    }
    for (const m of Array.isArray(method) ? method : [method]) r.methods.add(m.toUpperCase());
  }

  /** Methods allowed on `path` (the URL without its query), sorted; empty when no route matches it. */
  allowed(path: string): string[] {
    const out = new Set<string>();
    for (const r of this.routes) if (r.re.test(path)) for (const m of r.methods) out.add(m);
    return [...out].sort();
  }
}

/** Copy of a schema document usable as a Fastify response schema (meta keys dropped). */
function asResponseSchema(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

/**
 * A Fastify instance whose router takes path parameters as long as the contract's longest track id in its
 * longest percent-encoded form, with the one error handler (router errors included).
 */
/**
 * The log form of an error (pino's `err` field): name, message, stack and code, credentials redacted, so that a
 * driver's message quoting DATABASE_URL never reaches a log line whichever code path logs it.
 */
export function redactedError(err: FastifyError): { type: string; message: string; stack: string; [key: string]: unknown } {
  return { type: err.name, message: redact(err.message ?? ''), stack: redact(err.stack ?? ''), ...(err.code !== undefined ? { code: err.code } : {}) };
}

function createFastify(config: AppConfig, logger: BuildOptions['logger'], trackId: TrackIdSchema): FastifyInstance {
  const maxParamLength = maxEncodedIdLength(trackId.maxLength);
  const localRoots = [config.artifactCacheDir, config.artifactSchemaDir, process.cwd(), tmpdir(), homedir()];
  if (!config.artifactsUri.startsWith('s3://')) localRoots.push(config.artifactsUri);
  const handleError = errorHandler(localPathRedactor(localRoots));
  const app = Fastify({
    logger: logger ?? { level: config.logLevel, serializers: { err: redactedError } },
    // the request validators are useSchemas' (set before any route): this factory stands in for Fastify's
    // default, whose module (@fastify/ajv-compiler, 20 ms to load) is then never loaded
    schemaController: { compilersFactory: { buildSerializer: lazySerializers, buildValidator: () => validatorsUnset } },
    routerOptions: { maxParamLength },
    frameworkErrors: routerErrors(maxParamLength, trackId.maxLength, handleError),
  });
  app.setErrorHandler(handleError);
  return app;
}

/**
 * `compile()` run on the first call, not now: Fastify compiles every route's validators and serializers while
 * the routes register (~0.1 s of the start-up, most of it for responses that may never be sent). A compiled
 * validator's `errors` (what Fastify reports on a 400) are copied onto the wrapper after each call.
 */
function onFirstCall<F extends ((data: any) => any) & { errors?: unknown }>(compile: () => F): F {
  let fn: F | null = null;
  const lazy = ((data: unknown) => {
    fn ??= compile();
    const out = fn(data);
    lazy.errors = fn.errors;
    return out;
  }) as F;
  return lazy;
}

/** Fastify's own response serializers (fast-json-stringify), each compiled when its response is first sent. */
const lazySerializers: NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildSerializer'] = (externalSchemas, options) => {
  const compiler = SerializerSelector()(externalSchemas, options);
  return (route) => onFirstCall(() => compiler(route as Parameters<typeof compiler>[0]));
};

/** The validator compiler until useSchemas sets its own. */
const validatorsUnset = (): never => {
  throw new Error('route validators are compiled by the compiler useSchemas sets');
};

/** Request validators, and the shared schemas (ErrorBody, TrackId) route schemas `$ref`. */
function useSchemas(app: FastifyInstance, trackIdSchema: Record<string, unknown>): void {
  // Query strings arrive as text: coerce them ("5" -> 5). Bodies are JSON: never coerce (null must not become 0).
  // Start-up cost: each route's validators compile on its first request (onFirstCall), without ajv's
  // name-optimising passes, and without compiling the draft-07 meta-schema in each instance to check the route
  // schemas, which are this code's constants (the openapi tests compile every one of them)
  const fast = { strict: false, validateSchema: false, code: { optimize: false } } as const;
  const ajvQuery = new Ajv({ coerceTypes: true, useDefaults: true, removeAdditional: false, allErrors: false, ...fast });
  const ajvBody = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false, ...fast });
  for (const ajv of [ajvQuery, ajvBody]) ajv.addSchema(trackIdSchema);
  app.setValidatorCompiler(({ schema, httpPart }) => onFirstCall(() => (httpPart === 'body' ? ajvBody : ajvQuery).compile(schema)));
  app.addSchema(errorBody);
  app.addSchema(trackIdSchema);
}

/** Requests no route takes: 405 with `Allow` when another method of the path has a route, else 404. */
function answerUnrouted(app: FastifyInstance): void {
  const routes = new RouteMethods();
  app.addHook('onRoute', (r) => routes.add(r.method, r.url));
  const unrouted = (req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const allowed = routes.allowed(req.url.split('?')[0] ?? '');
    if (allowed.length > 0) {
      void reply.header('allow', allowed.join(', '));
      sendError(reply, 405, `Method ${req.method} is not allowed on this path (allowed: ${allowed.join(', ')})`);
    } else {
      sendError(reply, 404, `No route answers ${req.method} on this path (see GET /openapi.json)`);
    }
    return reply;
  };
  // answered on arrival: a body method (QUERY, PUT...) would otherwise meet the body parser's 400/415 first
  app.addHook('onRequest', async (req, reply) => (req.is404 ? unrouted(req, reply) : undefined));
  app.setNotFoundHandler(unrouted);
}

/**
 * The application with its store. With `waitForLoad` (default true) resolves once the artifacts are loaded
 * and rejects with the loader's ArtifactError when they cannot be served; otherwise the load runs in the
 * background and `app.store.status` tells how it went.
 */
export async function buildApp(opts: BuildOptions): Promise<FastifyInstance> {
  const { config } = opts;
  const schemas = new SchemaRegistry(config.artifactSchemaDir, config.precompiledValidators ? PRECOMPILED_DIR : null);
  const trackId = schemas.trackIdSchema();
  const app = createFastify(config, opts.logger, trackId);
  useSchemas(app, trackIdShared(trackId));
  answerUnrouted(app);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Audio similarity API',
        description: "Nearest-neighbour search and composer-retrieval evaluation over the research job's artifacts",
        version: '0.1.0',
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', transformSpecification: (spec) => servedDocument(app, spec) });
  await app.register(env, { config });
  await app.register(artifactStore, { schemas, source: opts.source, s3Client: opts.s3Client, loadOptions: opts.loadOptions });
  await app.register(feedbackStore);

  for (const routes of [health, models, tracks, trackSearch, cluster, preview, report, search, openapi, reloadRoute, page, recommend, radio, mix, feedback]) await app.register(routes);
  await app.register(evalRoutes, { evalSchema: asResponseSchema(schemas.schema('eval_results')) });

  if (opts.waitForLoad ?? true) {
    try {
      await app.artifactsLoaded;
    } catch (err) {
      await app.close();
      throw err;
    }
  }
  await app.ready();
  return app;
}
