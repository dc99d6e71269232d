// WORKERS above 1: this primary process forks that many server processes (node:cluster, which shares the port
// among them), replaces one that dies, serves their metrics summed on METRICS_PORT, and on SIGTERM or SIGINT
// has each finish its requests under way before it exits itself.
import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from './config/index.ts';
import { ClusterMetrics } from './operations/cluster-metrics.ts';

export async function superviseWorkers(config: Config, logger: Logger): Promise<void> {
  const log = logger.child({ component: 'workers' });
  let stopping = false;
  const listening = new WeakSet<Worker>();
  /** Whether a worker of this run has served: a worker failing to start after that is no setting refused. */
  let served = false;
  /** Replacements that failed to start in a row: each waits twice as long as the one before (at most a minute). */
  let failedReplacements = 0;

  const start = (): Worker => {
    const worker = cluster.fork();
    worker.once('listening', () => {
      listening.add(worker);
      served = true;
      failedReplacements = 0;
    });
    worker.once('exit', (code, signal) => {
      if (stopping) return;
      if (listening.has(worker)) {
        metrics.workerDied(worker);
        log.error({ pid: worker.process.pid, code, signal }, 'a worker died: starting another');
        start();
      } else if (!served) {
        // The first start failed (settings refused, database still down after STARTUP_WAIT): neither will the next.
        log.error({ pid: worker.process.pid, code, signal }, 'a worker could not start: stopping');
        void stop('worker failed to start', code ?? 1);
      } else {
        // A replacement could not start (the database down longer than STARTUP_WAIT, say) while the others serve:
        // tried again later, rather than taking them down with it.
        const delayMs = Math.min(1000 * 2 ** failedReplacements, 60_000);
        failedReplacements += 1;
        log.error({ pid: worker.process.pid, code, signal, retryInSeconds: delayMs / 1000 }, 'a replacement worker could not start: trying again');
        setTimeout(() => { if (!stopping) start(); }, delayMs);
      }
    });
    return worker;
  };

  const metricsServer = config.metrics.port === undefined ? undefined : createServer(async (request, response) => {
    if (request.method !== 'GET' || request.url !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    const serving = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined && listening.has(worker));
    const text = await metrics.text(serving);
    response.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(text);
  });
  const metrics = new ClusterMetrics();

  async function stop(reason: string, exitCode: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'shutting down: each worker finishes its requests under way');
    metricsServer?.close();
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined && !worker.isDead());
    await Promise.all(workers.map((worker) => new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      worker.process.kill('SIGTERM');
    })));
    process.exit(exitCode);
  }

  process.on('SIGTERM', () => void stop('SIGTERM', 0));
  process.on('SIGINT', () => void stop('SIGINT', 0));
  for (let count = 0; count < config.workers; count += 1) start();
  metricsServer?.once('error', (error: NodeJS.ErrnoException) => log.error({ port: config.metrics.port, code: error.code }, 'cannot serve /metrics on METRICS_PORT'));
  metricsServer?.listen(config.metrics.port, config.host);
  log.info({ workers: config.workers, port: config.port }, `running ${config.workers} workers`);
}
