// Process entry: configuration → runtime → HTTP server, with a graceful shutdown on SIGTERM and SIGINT.
import { createServer } from 'node:http';
import { ConfigError, loadConfig } from './config/index.ts';
import { createLogger } from './logger.ts';
import { openRuntime, type Runtime } from './runtime.ts';
import { KeyError } from './keys/secrets.ts';
import { DependencyUnavailable } from './errors.ts';
import { createApp } from './app.ts';

let config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`gatehouse: refusing to start: ${error.describe()}\n`);
  process.exit(1);
}
const logger = createLogger(config);
let runtime: Runtime;
try {
  runtime = await openRuntime(config, logger);
} catch (error) {
  // Settings and outages an operator must fix get one line, like configuration errors; anything else is a bug.
  if (error instanceof KeyError) {
    process.stderr.write(`gatehouse: refusing to start: ${error.message}\n`);
  } else if (error instanceof ConfigError) {
    process.stderr.write(`gatehouse: refusing to start: ${error.describe()}\n`);
  } else if (error instanceof DependencyUnavailable) {
    process.stderr.write(`gatehouse: cannot start: ${error.describe()}\n`);
  } else {
    throw error;
  }
  process.exit(1);
}
const server = createServer(createApp(runtime).callback());
server.once('error', async (error: NodeJS.ErrnoException) => {
  // Most often the port is taken: say so in one line and let go of the database and store.
  process.stderr.write(`gatehouse: cannot listen on ${config.host}:${config.port}: ${error.code ?? error.message}\n`);
  await runtime.close();
  process.exit(1);
});
server.listen(config.port, config.host, () => {
  if (runtime.database.embedded || !config.redisUrl || runtime.secrets.development) {
    const database = runtime.database.embedded ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL';
    const store = config.redisUrl ? 'Redis' : 'in-process (lost on restart)';
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

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  server.closeIdleConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await runtime.close();
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
