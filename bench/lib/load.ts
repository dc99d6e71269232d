// One scenario's load with autocannon, and what came of it: requests per second, latency, every error by kind, and
// the server's peak memory meanwhile. A connection can keep state between its requests (a refresh-token chain).
import autocannon from 'autocannon';
import { RssSampler } from './processes.ts';

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
  notes: string[];
}

export interface LoadRun {
  origin: string;
  /** The server's process (its tree's memory is sampled every 250 ms). */
  pid: number;
  connections: number;
  durationSeconds: number;
  spec: LoadSpec;
  /** Requests per second for all connections together, at most; unset: as fast as the server answers. */
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
        notes: [],
      });
    });
  });
  return { stop: () => instance?.stop(), result };
}
