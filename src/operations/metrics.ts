// What operators scrape at /metrics, in Prometheus's text format (prom-client): requests and their latency,
// tokens issued, protocol errors, audited events (sign-in outcomes, lockouts…), rate-limit refusals, the
// queues' depth, store and database calls, and the process. One registry per runtime (tests run several).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CallOutcome } from '../dependency-calls.ts';

// Seconds: a token request is milliseconds; an argon2 sign-in or a slow database, tenths to seconds.
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics {
  readonly registry = new Registry();
  readonly #queues = new Map<string, () => Promise<number>>();
  readonly #requests = new Counter({
    name: 'gatehouse_http_requests_total', help: 'HTTP requests answered, by route (its pattern), method and status',
    labelNames: ['route', 'method', 'status'] as const, registers: [this.registry],
  });
  readonly #requestDuration = new Histogram({
    name: 'gatehouse_http_request_duration_seconds', help: 'Time from a request to its answer, by route and method',
    labelNames: ['route', 'method'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry],
  });
  readonly #tokensIssued = new Counter({
    name: 'gatehouse_tokens_issued_total', help: 'Token endpoint successes, by grant type and client',
    labelNames: ['grant_type', 'client_id'] as const, registers: [this.registry],
  });
  readonly #protocolErrors = new Counter({
    name: 'gatehouse_protocol_errors_total', help: 'OAuth and OpenID Connect errors answered (invalid_client, invalid_grant…), by endpoint and error',
    labelNames: ['endpoint', 'error'] as const, registers: [this.registry],
  });
  readonly #auditEvents = new Counter({
    name: 'gatehouse_audit_events_total', help: 'Audited events (login.succeeded, login.failed, login.locked_out…), by action and outcome',
    labelNames: ['action', 'outcome'] as const, registers: [this.registry],
  });
  readonly #rateLimited = new Counter({
    name: 'gatehouse_rate_limited_total', help: 'Attempts refused by a rate limit, by limit',
    labelNames: ['limit'] as const, registers: [this.registry],
  });
  readonly #dependencyCalls = new Histogram({
    name: 'gatehouse_dependency_call_duration_seconds', help: 'Calls to the store (Redis), the database and the rate limits (Redis), by outcome (ok, unavailable, error)',
    labelNames: ['dependency', 'outcome'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry],
  });
  readonly #queueDepth = new Gauge({
    name: 'gatehouse_queue_depth', help: 'Messages waiting to be delivered, by queue (mail, logout notices)',
    labelNames: ['queue'] as const, registers: [this.registry],
    // Every worker reads the same shared queue: with WORKERS, the primary reports it once, not summed.
    aggregator: 'max',
    // Read at each scrape; while the store is down the last depth stays (the store's calls show the outage).
    collect: async () => {
      await Promise.all([...this.#queues].map(async ([queue, read]) => {
        const depth = await read().catch(() => undefined);
        if (depth !== undefined) this.#queueDepth.set({ queue }, depth);
      }));
    },
  });

  /** `processMetrics`: CPU, memory, event-loop lag, handles (a server's; a one-shot command has none to show). */
  constructor(options: { processMetrics: boolean }) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'gatehouse_' });
  }

  requestAnswered(route: string, method: string, status: number, seconds: number): void {
    this.#requests.inc({ route, method, status: String(status) });
    this.#requestDuration.observe({ route, method }, seconds);
  }

  tokenIssued(grantType: string, clientId: string): void {
    this.#tokensIssued.inc({ grant_type: grantType, client_id: clientId });
  }

  protocolError(endpoint: string, error: string): void {
    this.#protocolErrors.inc({ endpoint, error });
  }

  audited(action: string, outcome: string): void {
    this.#auditEvents.inc({ action, outcome });
  }

  rateLimited(limit: string): void {
    this.#rateLimited.inc({ limit });
  }

  /** rate_limits: the rate limiter's own connection to Redis. */
  dependencyCalled(dependency: 'store' | 'database' | 'rate_limits', outcome: CallOutcome, seconds: number): void {
    this.#dependencyCalls.observe({ dependency, outcome }, seconds);
  }

  /** A queue whose depth is read at each scrape (mail, back-channel logout notices). */
  watchQueue(queue: string, depth: () => Promise<number>): void {
    this.#queues.set(queue, depth);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
