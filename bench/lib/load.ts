// One scenario's load with autocannon, and what came of it: requests per second, latency, every error by kind, and
// the server's peak memory meanwhile. A connection can keep state between its requests (a refresh-token chain).
// A load held to a rate is paced here instead: requests spaced evenly in time.
import { Agent, request as httpRequest } from 'node:http';
import autocannon from 'autocannon';
import { CpuMeter, RssSampler } from './processes.ts';

/** What one connection keeps between its requests (its refresh token, say); each connection has its own. */
export type ConnectionState = { token?: string };

export interface LoadSpec {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  /** The body of each request, made just before it is sent (for this connection). */
  body?: (connection: ConnectionState) => string;
  /**
   * Reads each answer (status, body) on this connection; returns a problem ("inactive token") when a 2xx answer is
   * not the one expected, which counts as an error.
   */
  onAnswer?: (status: number, body: string, connection: ConnectionState) => string | undefined;
}

export interface Measurement {
  /** Mean of the per-second counts of answers (of any status). */
  requestsPerSecond: number;
  /** Latency of the 2xx answers, in milliseconds. */
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Every request that did not get its expected answer: non-2xx, connection errors, timeouts, wrong answers. */
  errors: number;
  /** The errors by kind: "HTTP 400 invalid_grant: …", "timeout", "connection error", or a problem an onAnswer found. */
  errorKinds: Record<string, number>;
  peakRssBytes: number;
  /** CPU the server's processes used meanwhile, in percent of one CPU. */
  serverCpuPercent: number;
  /** How busy the whole machine was meanwhile (servers, load generator, PostgreSQL, Redis), in percent of all CPUs. */
  machineBusyPercent: number;
  notes: string[];
}

export interface LoadRun {
  origin: string;
  /** The server's process (its tree's memory is sampled every 250 ms). */
  pid: number;
  connections: number;
  durationSeconds: number;
  spec: LoadSpec;
  /**
   * Requests per second for all connections together, sent evenly spaced (not autocannon's own rate, which sends
   * each connection's share of a second at once at the start of the second: a burst at full speed, then nothing);
   * unset: as fast as the server answers.
   */
  overallRate?: number | undefined;
}

/** The error an OAuth answer names, and why (` invalid_grant: grant request is invalid`), or nothing. */
function protocolError(body: string): string {
  try {
    const answer = JSON.parse(body) as { error?: unknown; error_description?: unknown };
    if (typeof answer.error !== 'string') return '';
    return ` ${answer.error}${typeof answer.error_description === 'string' ? `: ${answer.error_description}` : ''}`;
  } catch {
    return '';
  }
}

/** A running load: `stop()` ends it early (at its next one-second sample); `result` settles when it ends. */
export interface RunningLoad {
  stop(): void;
  result: Promise<Measurement>;
}

export function startLoad(run: LoadRun, options: { sampleRss?: boolean } = {}): RunningLoad {
  if (run.overallRate) return startPacedLoad({ ...run, overallRate: run.overallRate }, options);
  const problems = new Map<string, number>();
  const count = (problem: string) => problems.set(problem, (problems.get(problem) ?? 0) + 1);
  const { spec } = run;
  // autocannon copies the request for each connection (deeply), `connection` included: one state per connection.
  // The context it passes both hooks is made again before every request: it carries the state from one to the other.
  const request = {
    method: spec.method,
    path: spec.path,
    headers: spec.headers,
    connection: {} as ConnectionState,
    setupRequest(built: autocannon.Request, context: object) {
      const connection = (built as typeof request).connection;
      (context as { connection?: ConnectionState }).connection = connection;
      if (spec.body) built.body = spec.body(connection);
      return built;
    },
    onResponse(status: number, body: string, context: object) {
      const connection = (context as { connection?: ConnectionState }).connection ?? {};
      const problem = spec.onAnswer?.(status, body, connection);
      if (status < 200 || status >= 300) count(`HTTP ${status}${protocolError(body)}`);
      else if (problem) count(problem);
    },
  };
  const sampler = options.sampleRss === false ? undefined : new RssSampler(run.pid, 250);
  const cpu = new CpuMeter(run.pid);
  let instance: autocannon.Instance | undefined;
  const result = new Promise<Measurement>((resolve, reject) => {
    instance = autocannon({
      url: run.origin,
      connections: run.connections,
      duration: run.durationSeconds,
      ...(run.overallRate ? { overallRate: run.overallRate } : {}),
      // A request still unanswered after this long is a timeout, counted as an error.
      timeout: 10,
      requests: [request],
    }, (error: unknown, outcome: autocannon.Result) => {
      const peakRssBytes = sampler?.stop() ?? 0;
      if (error) return reject(error instanceof Error ? error : new Error(String(error)));
      // Every answer passes through onResponse; should autocannon count more, the difference is not lost.
      const readNon2xx = [...problems].filter(([kind]) => kind.startsWith('HTTP ')).reduce((sum, [, times]) => sum + times, 0);
      if (outcome.non2xx > readNon2xx) problems.set('non-2xx (body not read)', outcome.non2xx - readNon2xx);
      const connectionErrors = outcome.errors - outcome.timeouts;
      if (outcome.timeouts) problems.set('timeout', outcome.timeouts);
      if (connectionErrors) problems.set('connection error', connectionErrors);
      const errorKinds = Object.fromEntries(problems);
      resolve({
        requestsPerSecond: outcome.requests.average,
        p50Ms: outcome.latency.p50,
        p99Ms: outcome.latency.p99,
        requests: outcome.requests.total,
        errors: Object.values(errorKinds).reduce((sum, times) => sum + times, 0),
        errorKinds,
        peakRssBytes,
        ...cpu.read(),
        notes: [],
      });
    });
  });
  return { stop: () => instance?.stop(), result };
}

/** How often the pacer looks at the clock: it sends each time what is due by then (at 1,000/s, one or two). */
const PACER_TICK_MS = 1;

/**
 * `overallRate` requests a second, the n-th sent at n/rate seconds (as near as the event loop allows), over at most
 * `connections` kept-alive connections: a request due while all of them are busy waits for one (and is late, its
 * wait counted in its latency). One connection state for all: for requests that keep none between them.
 */
function startPacedLoad(run: LoadRun & { overallRate: number }, options: { sampleRss?: boolean }): RunningLoad {
  const { spec } = run;
  const target = new URL(run.origin);
  const agent = new Agent({ keepAlive: true, maxSockets: run.connections });
  const problems = new Map<string, number>();
  const count = (problem: string) => problems.set(problem, (problems.get(problem) ?? 0) + 1);
  const latenciesMs: number[] = [];
  const connection: ConnectionState = {};
  const sampler = options.sampleRss === false ? undefined : new RssSampler(run.pid, 250);
  const cpu = new CpuMeter(run.pid);
  const startedAt = performance.now();
  const durationMs = run.durationSeconds * 1000;
  let sent = 0;
  let answered = 0;
  let stopped = false;

  const send = (dueAt: number): Promise<void> => new Promise((resolve) => {
    const body = spec.body?.(connection);
    const outgoing = httpRequest({
      agent, host: target.hostname, port: target.port, method: spec.method, path: spec.path,
      headers: { ...spec.headers, ...(body === undefined ? {} : { 'content-length': Buffer.byteLength(body) }) },
      timeout: 10_000,
    }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        answered += 1;
        const status = response.statusCode ?? 0;
        const text = Buffer.concat(chunks).toString();
        const problem = spec.onAnswer?.(status, text, connection);
        if (status < 200 || status >= 300) count(`HTTP ${status}${protocolError(text)}`);
        else if (problem) count(problem);
        else latenciesMs.push(performance.now() - dueAt);
        resolve();
      });
    });
    outgoing.on('timeout', () => outgoing.destroy(new Error('timeout')));
    outgoing.on('error', (error) => {
      count(error.message === 'timeout' ? 'timeout' : 'connection error');
      resolve();
    });
    outgoing.end(body);
  });

  const inFlight = new Set<Promise<void>>();
  const result = new Promise<Measurement>((resolve) => {
    const pacer = setInterval(() => {
      const elapsedMs = performance.now() - startedAt;
      if (stopped || elapsedMs >= durationMs) {
        clearInterval(pacer);
        void Promise.all(inFlight).then(() => {
          agent.destroy();
          const peakRssBytes = sampler?.stop() ?? 0;
          const sorted = latenciesMs.sort((a, b) => a - b);
          const percentile = (fraction: number) => (sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!) : 0);
          const errorKinds = Object.fromEntries(problems);
          const cpuUsed = cpu.read();
          resolve({
            requestsPerSecond: answered / (Math.min(elapsedMs, durationMs) / 1000),
            p50Ms: percentile(0.5),
            p99Ms: percentile(0.99),
            requests: answered,
            errors: Object.values(errorKinds).reduce((sum, times) => sum + times, 0),
            errorKinds,
            peakRssBytes,
            ...cpuUsed,
            notes: [`paced: ${run.overallRate} requests a second, evenly spaced; latency counted from when each was due`],
          });
        });
        return;
      }
      // Request n is due at n/rate seconds: by now, those up to this count (the first at once).
      const due = Math.floor((elapsedMs / 1000) * run.overallRate) + 1;
      while (sent < due) {
        const dueAt = startedAt + (sent / run.overallRate) * 1000;
        sent += 1;
        const answer = send(dueAt);
        inFlight.add(answer);
        void answer.then(() => inFlight.delete(answer));
      }
    }, PACER_TICK_MS);
  });
  return { stop: () => (stopped = true), result };
}
