// One server process: configuration in hand, it opens the runtime (waiting for the database and the store if
// they are not up yet), serves HTTP (and /metrics on METRICS_PORT when it serves alone), and shuts down
// gracefully on SIGTERM and SIGINT. main.ts runs it directly, or in each worker when WORKERS is above 1.
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ConfigError, type Config } from './config/index.ts';
import { openRuntime, type Runtime } from './runtime.ts';
import { DependencyUnavailable, LoginRefused } from './errors.ts';
import { createApp, createMetricsApp } from './app.ts';
import { answerMetricsRequests } from './operations/cluster-metrics.ts';
import { logUnreadableRequests } from './web/middleware/request-log.ts';

/** How long requests under way may take to finish at shutdown: within an orchestrator's usual 30 s. */
const SHUTDOWN_GRACE_MS = 20_000;

export async function serve(config: Config, logger: Logger): Promise<void> {
  let runtime: Runtime;
  try {
    runtime = await openWhenReachable(config, logger);
  } catch (error) {
    // Settings (secrets among them: KeyError) and outages an operator must fix get one line each; anything else is a bug.
    if (error instanceof ConfigError) {
      process.stderr.write(`gatehouse: refusing to start: ${error.describe()}\n`);
    } else if (error instanceof LoginRefused) {
      process.stderr.write(`gatehouse: refusing to start: ${error.setting}: ${error.describe()}\n`);
    } else if (error instanceof DependencyUnavailable) {
      process.stderr.write(`gatehouse: cannot start: ${error.describe()}\n`);
    } else {
      throw error;
    }
    process.exit(1);
  }
  let stopping = false;
  const server = createServer(createApp(runtime, { stopping: () => stopping }).callback());
  logUnreadableRequests(server, logger, runtime.metrics);
  // A worker's metrics are summed by the primary, which serves METRICS_PORT (workers.ts).
  if (cluster.isWorker) answerMetricsRequests(runtime.metrics.registry);
  const metricsServer = config.metrics.port === undefined || cluster.isWorker ? undefined : createServer(createMetricsApp(runtime).callback());
  server.once('error', async (error: NodeJS.ErrnoException) => {
    // Most often the port is taken: say so in one line and let go of the database and store.
    process.stderr.write(`gatehouse: cannot listen on ${config.host}:${config.port}: ${error.code ?? error.message}\n`);
    await runtime.close();
    process.exit(1);
  });
  server.listen(config.port, config.host, () => {
    // The banner once, not once per worker.
    const first = !cluster.isWorker || cluster.worker?.id === 1;
    if (first && (runtime.database.embedded || !config.redis || runtime.secrets.development)) {
      const database = runtime.database.embedded ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL';
      const store = config.redis ? 'Redis' : 'in-process (lost on restart)';
      const keys = runtime.secrets.development ? `generated in ${config.keysDir}` : 'configured';
      // Plain text on stderr for the person at the terminal; the same facts go to the JSON log.
      process.stderr.write([
        '',
        '  Gatehouse is running in DEVELOPMENT MODE',
        `    database: ${database}`,
        `    store:    ${store}`,
        `    keys:     ${keys}`,
        '  Not for real users: production needs NODE_ENV=production, DATABASE_URL, REDIS_URL, COOKIE_SECRETS and ENCRYPTION_KEYS.',
        '',
        '',
      ].join('\n'));
      logger.warn({ database, store, keys }, 'development mode');
    }
    logger.info({ issuer: config.issuer, port: config.port }, `Gatehouse is listening on ${config.issuer}`);
  });
  metricsServer?.once('error', (error: NodeJS.ErrnoException) => {
    // Metrics are not worth refusing service over: say so, and serve without them.
    logger.error({ port: config.metrics.port, code: error.code }, 'cannot serve /metrics on METRICS_PORT');
  });
  metricsServer?.listen(config.metrics.port, config.host, () => logger.info({ port: config.metrics.port }, 'metrics are served on METRICS_PORT'));

  async function stop(signal: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing the requests under way');
    // No new connections; requests under way finish (idle keep-alive connections close at once), unless they
    // outlast the grace period, when their connections are cut.
    const cutOff = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
    server.closeIdleConnections();
    // A client keeping its connection alive would otherwise go on sending requests over it until the cut-off: each
    // answer from now on closes its connection (Connection: close), so the client opens a new one elsewhere.
    server.on('request', (_request, response) => { response.shouldKeepAlive = false; });
    metricsServer?.close();
    metricsServer?.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    clearTimeout(cutOff);
    await runtime.close();
    process.exit(0);
  }
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/**
 * Started beside its database (docker compose, an orchestrator), Gatehouse may come up first: it waits for
 * the database and the store, saying so, up to STARTUP_WAIT seconds, before giving up.
 */
async function openWhenReachable(config: Config, logger: Logger): Promise<Runtime> {
  const deadline = Date.now() + config.startupWait * 1000;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await openRuntime(config, logger);
    } catch (error) {
      // A refused login is a setting to change: waiting would not help.
      if (!(error instanceof DependencyUnavailable) || error instanceof LoginRefused || Date.now() >= deadline) throw error;
      const retryInMs = Math.min(500 * 2 ** (attempt - 1), 5000, deadline - Date.now());
      logger.warn({ dependency: error.dependency, reason: error.describe(), attempt, retryInMs }, `waiting for the ${error.dependency} to answer`);
      await sleep(retryInMs);
    }
  }
}
