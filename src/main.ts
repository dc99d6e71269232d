// Process entry: configuration, then one server process (serve.ts), or with WORKERS above 1 a primary that
// runs that many of them and keeps them running (workers.ts).
import cluster from 'node:cluster';
import { ConfigError, loadConfig, type Config } from './config/index.ts';
import { createLogger } from './logger.ts';
import { serve } from './serve.ts';
import { superviseWorkers } from './workers.ts';

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`gatehouse: refusing to start: ${error.describe()}\n`);
  process.exit(1);
}
const logger = createLogger(config);
if (config.workers > 1 && cluster.isPrimary) await superviseWorkers(config, logger);
else await serve(config, logger);
