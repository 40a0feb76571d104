/**
 * Entry point: read the config from the environment, build the app, listen, load the artifacts (503 on /health
 * until then), and close gracefully on SIGINT/SIGTERM: the connections are drained first (`drainOnClose`), then
 * the app closes. A bad config (environment, schema folder, artifact list) or unservable artifacts exit with
 * code 1 and one message naming the variable or the file.
 */

import type { Server } from 'node:http';
import net from 'node:net';

import { buildApp } from './app.js';
import { ArtifactError, ConfigError, StorageError } from './lib/errors.js';
import { redact } from './lib/redact.js';
import { loadConfig } from './plugins/env.js';

/** Exit 1 with `node_api: refusing to start: <message>` on a ConfigError; rethrow anything else. */
function refuseOnConfigError(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`node_api: refusing to start: ${redact(err.message)}\n`);
    process.exit(1);
  }
  throw err;
}

/** How long a keep-alive connection left idle by the drain may stay silent before it is closed. */
const DRAIN_IDLE_MS = 1000;

/**
 * Track the server's connections so that `drain()` can close them without resetting a request: from then on
 * every response says `Connection: close` (Node then ends the connection after it), requests in flight finish,
 * a request arriving on an open keep-alive connection is still served (with `Connection: close`), and a
 * connection with no request in flight is closed once it has stayed idle for DRAIN_IDLE_MS. `http.Server.close`
 * alone destroys the idle keep-alive connections at once, resetting the request a client may be sending on one
 * at that moment. Resolves when every connection has closed. Call before `listen`.
 */
function drainOnClose(server: Server): { drain: () => Promise<void> } {
  const inFlight = new Map<net.Socket, number>();
  let draining = false;
  const closeWhenIdle = (socket: net.Socket): void => {
    setTimeout(() => {
      if (inFlight.get(socket) === 0) socket.destroy();
    }, DRAIN_IDLE_MS).unref();
  };
  server.on('connection', (socket: net.Socket) => {
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
    if (draining) closeWhenIdle(socket);
  });
  // before Fastify's listener, so the header is set before any route can write its response
  server.prependListener('request', (req, res) => {
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    if (draining) res.setHeader('connection', 'close');
    res.once('close', () => {
      const n = (inFlight.get(socket) ?? 1) - 1;
      if (!inFlight.has(socket)) return;
      inFlight.set(socket, n);
      if (draining && n === 0) closeWhenIdle(socket);
    });
  });
  const drain = (): Promise<void> =>
    new Promise((resolve) => {
      draining = true;
      // net.Server's close: stop accepting connections, keep the open ones (see above); resolves once all closed
      net.Server.prototype.close.call(server, () => resolve());
      for (const [socket, n] of inFlight) if (n === 0) closeWhenIdle(socket);
    });
  return { drain };
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    refuseOnConfigError(err);
  }
  // the schema folder (its schemas and artifacts.json) is read while the app is built
  const app = await buildApp({ config, waitForLoad: false }).catch(refuseOnConfigError);
  const { drain } = drainOnClose(app.server);
  let closing = false;
  const close = async (signal: string): Promise<void> => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'closing');
    const timer = setTimeout(() => {
      app.log.error('close timed out after 10 s; exiting');
      process.exit(1);
    }, 10_000);
    timer.unref();
    await drain();
    await app.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void close('SIGINT'));
  process.on('SIGTERM', () => void close('SIGTERM'));

  await app.listen({ host: config.host, port: config.port });
  try {
    await app.artifactsLoaded;
  } catch (err) {
    const msg = err instanceof ArtifactError || err instanceof ConfigError || err instanceof StorageError ? err.message : String(err);
    app.log.fatal({ err }, 'artifacts cannot be served');
    process.stderr.write(`node_api: refusing to start: ${redact(msg)}\n`);
    await app.close();
    process.exit(1);
  }
}

void main().catch((err: unknown) => {
  process.stderr.write(`node_api: fatal: ${redact(err instanceof Error ? err.message : String(err))}\n`);
  process.exit(1);
});
