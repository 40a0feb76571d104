/**
 * Entry point: read the config from the environment, build the app, listen, load the artifacts (503 on /health
 * until then), and close gracefully on SIGINT/SIGTERM. A bad config (environment, schema folder, artifact list)
 * or unservable artifacts exit with code 1 and one message naming the variable or the file.
 */

import { buildApp } from './app.js';
import { ArtifactError, ConfigError, StorageError } from './lib/errors.js';
import { loadConfig } from './plugins/env.js';

/** Exit 1 with `node_api: refusing to start: <message>` on a ConfigError; rethrow anything else. */
function refuseOnConfigError(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`node_api: refusing to start: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
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
    process.stderr.write(`node_api: refusing to start: ${msg}\n`);
    await app.close();
    process.exit(1);
  }
}

void main().catch((err: unknown) => {
  process.stderr.write(`node_api: fatal: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
