/**
 * Build the Fastify application: the one error handler, request validators, the plugins (OpenAPI, config,
 * artifact store) and the routes (one folder per resource). `buildApp` is what the server and the tests use.
 * The artifact store plugin owns the artifacts' lifecycle (source, pgvector pool, first load, reloads, poll,
 * close); this file only registers.
 */

import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv } from 'ajv';
import type { S3Client } from '@aws-sdk/client-s3';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';

import { HttpError } from './lib/errors.js';
import type { LoadOptions } from './lib/loader.js';
import { SchemaRegistry } from './lib/schemas.js';
import type { ArtifactSource } from './lib/source.js';
import artifactStore from './plugins/artifactStore.js';
import env, { type AppConfig } from './plugins/env.js';
import evalRoutes from './routes/eval/index.js';
import health from './routes/health/index.js';
import models from './routes/models/index.js';
import reloadRoute from './routes/models/reload.js';
import { errorBody } from './routes/schemas.js';
import search from './routes/search/index.js';
import tracks from './routes/tracks/index.js';

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
  413: 'Payload Too Large',
  409: 'Conflict',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

function reason(code: number): string {
  return STATUS_TEXT[code] ?? (code >= 500 ? 'Internal Server Error' : 'Bad Request');
}

/** The one error handler: `{error, message, statusCode}`; a 4xx keeps its message, anything else is a logged 500. */
function handleError(err: FastifyError | HttpError, req: FastifyRequest, reply: FastifyReply): void {
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
  void reply.status(status).send({ error: reason(status), message, statusCode: status });
}

/** Copy of a schema document usable as a Fastify response schema (meta keys dropped). */
function asResponseSchema(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

/**
 * The application with its store. With `waitForLoad` (default true) resolves once the artifacts are loaded
 * and rejects with the loader's ArtifactError when they cannot be served; otherwise the load runs in the
 * background and `app.store.status` tells how it went.
 */
export async function buildApp(opts: BuildOptions): Promise<FastifyInstance> {
  const { config } = opts;
  const schemas = new SchemaRegistry(config.artifactSchemaDir);
  const app = Fastify({
    logger: opts.logger ?? { level: config.logLevel },
  });

  // Query strings arrive as text: coerce them ("5" -> 5). Bodies are JSON: never coerce (null must not become 0).
  const ajvQuery = new Ajv({ coerceTypes: true, useDefaults: true, removeAdditional: false, allErrors: false, strict: false });
  const ajvBody = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false, strict: false });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? ajvBody : ajvQuery).compile(schema));

  app.setErrorHandler(handleError);
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: 'Not Found', message: `Route ${req.method} ${req.url.split('?')[0]} not found`, statusCode: 404 });
  });

  app.addSchema(errorBody);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Audio similarity API',
        description: "Nearest-neighbour search and composer-retrieval evaluation over the research job's artifacts",
        version: '0.1.0',
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(env, { config });
  await app.register(artifactStore, { schemas, source: opts.source, s3Client: opts.s3Client, loadOptions: opts.loadOptions });

  await app.register(health);
  await app.register(models);
  await app.register(tracks);
  await app.register(evalRoutes, { evalSchema: asResponseSchema(schemas.schema('eval_results')) });
  await app.register(search);
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.register(reloadRoute);

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
