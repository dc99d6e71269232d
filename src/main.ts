// Process entry: configuration, then one server process (serve.ts), or with WORKERS above 1 a primary that
// runs that many of them and keeps them running (workers.ts).
import cluster from 'node:cluster';
import { ConfigError, readConfig, type Config } from './config/index.ts';
import { secretProblems } from './keys/secrets.ts';
import { createLogger } from './logger.ts';
import { superviseWorkers } from './workers.ts';

let config: Config;
try {
  const read = readConfig();
  config = read.config;
  // Every refused setting at once, the secrets' too: not one batch per start.
  const problems = read.refused.length ? [...read.refused, ...await secretProblems(config)] : [];
  if (problems.length) throw new ConfigError(problems);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`gatehouse: refusing to start: ${error.describe()}\n`);
  process.exit(1);
}
const logger = createLogger(config);
// Loaded only where it serves: a primary that only supervises its workers stays small (the server's modules are
// some 100 MB of memory, once per process).
if (config.workers > 1 && cluster.isPrimary) await superviseWorkers(config, logger);
else await (await import('./serve.ts')).serve(config, logger);
