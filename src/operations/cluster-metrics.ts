// With WORKERS, the primary serves every worker's metrics summed on METRICS_PORT. It asks each worker that
// listens for its registry and sums the answers with prom-client's aggregator, but keeps what a scrape must
// not lose: a worker that does not answer in time (busy, stopped, starting) counts with its last answer, and
// a worker that dies leaves its counters behind, so that a sum Prometheus reads as a counter never goes down
// (a drop is taken for a restart of the whole series). prom-client's own clusterMetrics() fails the whole
// scrape when one worker does not answer, and forgets a dead worker's counts.
import type { Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

type Snapshot = MetricObjectWithValues<MetricValue<string>>[];
type Request = { type: 'gatehouse:metrics'; id: number };
type Answer = Request & { metrics: Snapshot };

/** How long a scrape waits for a worker before counting it with its last answer. */
const ANSWER_WAIT_MS = 1000;

/** In a worker: answer the primary's requests for this registry's metrics. */
export function answerMetricsRequests(registry: Registry): void {
  process.on('message', (message: Partial<Request>) => {
    if (message?.type !== 'gatehouse:metrics' || typeof message.id !== 'number') return;
    const id = message.id;
    void registry.getMetricsAsJSON().then((metrics) => process.send?.({ type: 'gatehouse:metrics', id, metrics } satisfies Answer));
  });
}

/** In the primary: the workers' metrics, summed, with the primary's own (workers running, restarted). */
export class ClusterMetrics {
  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;
  readonly #own = new Registry();
  readonly #running: Gauge;
  readonly #restarts: Counter;
  /** Each worker's last answer. */
  readonly #latest = new Map<Worker, Snapshot>();
  /** The counters and histograms of workers that died, summed; `#retiring` settles once the last death is in. */
  #retired: Snapshot = [];
  #retiring = Promise.resolve();
  #nextId = 0;

  constructor() {
    this.#running = new Gauge({ name: 'gatehouse_workers_running', help: 'Worker processes serving (WORKERS)', registers: [this.#own] });
    this.#restarts = new Counter({ name: 'gatehouse_worker_restarts_total', help: 'Workers that died and were replaced', registers: [this.#own] });
  }

  /** A worker died: its counters stay in the sums; its gauges (memory, queue depth…) leave them. */
  workerDied(worker: Worker): void {
    this.#restarts.inc();
    const last = this.#latest.get(worker);
    this.#latest.delete(worker);
    if (last === undefined) return;
    const counts = last.filter((metric) => ['counter', 'histogram'].includes(String(metric.type)) && metric.aggregator === 'sum');
    this.#retiring = this.#retiring.then(async () => {
      this.#retired = await AggregatorRegistry.aggregate([this.#retired, counts]).getMetricsAsJSON() as Snapshot;
    });
  }

  /** The sums over `serving` (the workers that listen) and those that died, in Prometheus's text format. */
  async text(serving: Worker[]): Promise<string> {
    this.#running.set(serving.length);
    await Promise.all(serving.map(async (worker) => {
      const answer = await this.#ask(worker);
      if (answer !== undefined && !worker.isDead()) this.#latest.set(worker, answer);
    }));
    await this.#retiring;
    const snapshots = serving.map((worker) => this.#latest.get(worker)).filter((snapshot) => snapshot !== undefined);
    const own = await this.#own.getMetricsAsJSON() as Snapshot;
    return AggregatorRegistry.aggregate([...snapshots, this.#retired, own]).metrics();
  }

  #ask(worker: Worker): Promise<Snapshot | undefined> {
    if (!worker.isConnected()) return Promise.resolve(undefined);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const done = (answer: Snapshot | undefined) => {
        clearTimeout(timer);
        worker.off('message', listen);
        resolve(answer);
      };
      const listen = (message: Partial<Answer>) => {
        if (message?.type === 'gatehouse:metrics' && message.id === id && Array.isArray(message.metrics)) done(message.metrics);
      };
      const timer = setTimeout(() => done(undefined), ANSWER_WAIT_MS);
      worker.on('message', listen);
      // A worker that exits between the check above and this send makes it fail: it is then counted as silent.
      worker.send({ type: 'gatehouse:metrics', id } satisfies Request, (error) => { if (error) done(undefined); });
    });
  }
}
