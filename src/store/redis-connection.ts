// A Redis connection that fails fast during an outage and reconnects by itself, shared by the store and
// the rate-limit counters — to one server, to the master a set of Sentinels names, or to a Redis Cluster —
// plus what every user of one needs: waiting out a connection attempt, telling outages from other errors,
// and errors stripped of the command's arguments.
import { Cluster, Redis, type ClusterStatus, type RedisOptions, type RedisStatus } from 'ioredis';
import { DEFAULT_REDIS_PORT, DEFAULT_SENTINEL_PORT, parseRedisUrl, type RedisConnection } from '../config/redis-connection.ts';

export type { RedisConnection } from '../config/redis-connection.ts';

export const DEFAULT_COMMAND_TIMEOUT_MS = 2000;
const MAXIMUM_RECONNECT_DELAY_MS = 2000;

/** A connection of either kind: both have the same commands, events and statuses. */
export type RedisClient = Redis | Cluster;

export interface FailFastRedisOptions {
  commandTimeoutMs: number;
  keyPrefix?: string;
  /** Told about connection errors the client reports in the background, without command arguments. */
  onError?: ((error: Error) => void) | undefined;
  /**
   * Resend commands whose replies a brief drop lost: only for callers whose commands are all idempotent.
   * Like any timeout, it means a command reported as failed may still have taken effect.
   */
  resendAfterReconnect: boolean;
  /**
   * Commands issued in the same turn of the event loop leave in one write (ioredis's auto-pipelining): a write
   * to a socket is a system call, and a token request's several commands, and concurrent requests', would each
   * make one. Not for a subscriber's connection.
   */
  batchWrites?: boolean;
}

// Keep trying forever: whoever uses a connection must come back by itself when Redis does.
const reconnectDelay = (attempt: number): number => Math.min(50 * 2 ** Math.min(attempt, 6), MAXIMUM_RECONNECT_DELAY_MS);

export function openFailFastRedis(connection: RedisConnection, options: FailFastRedisOptions): RedisClient {
  const failFast = {
    // Without these a command issued during an outage waits for the connection instead of failing.
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs,
    autoResendUnfulfilledCommands: options.resendAfterReconnect,
    // A subscriber subscribes again itself on 'ready', so that it knows when it listens again.
    autoResubscribe: false,
    // A master demoted by a failover answers writes with READONLY until the connection finds the new one.
    reconnectOnError: (error: Error) => /^READONLY /.test(error.message),
    enableAutoPipelining: options.batchWrites ?? false,
  } satisfies RedisOptions;
  const keyPrefix = options.keyPrefix ? { keyPrefix: options.keyPrefix } : {};
  let client: RedisClient;
  if (!connection.cluster && !connection.sentinelMaster) {
    client = new Redis(connection.url, { ...keyPrefix, ...failFast, enableOfflineQueue: false, retryStrategy: reconnectDelay });
  } else {
    const address = parseRedisUrl(connection.url, connection.cluster ? DEFAULT_REDIS_PORT : DEFAULT_SENTINEL_PORT);
    const credentials = {
      ...(address.username ? { username: address.username } : {}),
      ...(address.password ? { password: address.password } : {}),
      ...(address.tls ? { tls: {} } : {}),
    };
    client = connection.cluster
      ? new Cluster(address.hosts, {
        ...keyPrefix,
        enableOfflineQueue: false,
        clusterRetryStrategy: reconnectDelay,
        // The cluster's own option: it groups commands by the node that holds their keys.
        enableAutoPipelining: failFast.enableAutoPipelining,
        redisOptions: { ...failFast, ...credentials },
      })
      : new Redis({
        ...keyPrefix, ...failFast, ...credentials,
        enableOfflineQueue: false,
        retryStrategy: reconnectDelay,
        sentinelRetryStrategy: reconnectDelay,
        db: address.database,
        sentinels: address.hosts,
        name: connection.sentinelMaster,
        ...(connection.sentinelPassword ? { sentinelPassword: connection.sentinelPassword } : {}),
        enableTLSForSentinelMode: address.tls,
      });
  }
  // An 'error' event without a listener would crash the process; reconnecting is already automatic.
  client.on('error', (error: Error) => {
    const sanitized = withoutCommandArguments(error);
    connectionErrors.set(client, sanitized);
    options.onError?.(sanitized);
  });
  client.on('ready', () => connectionErrors.delete(client));
  return client;
}

/** Each client's last connection error, until it is ready again. */
const connectionErrors = new WeakMap<RedisClient, Error>();

/**
 * Why a client that is not ready cannot connect (Redis refused the login, nothing listens...): its commands fail
 * meanwhile with ioredis's own "Stream isn't writeable", which says nothing of it. Undefined once ready.
 */
export function connectionFailureOf(client: RedisClient): Error | undefined {
  return client.status === 'ready' ? undefined : connectionErrors.get(client);
}

/** Redis answered, but refused the connection's credentials (a wrong or missing password, an unknown user). */
export function isLoginRefusal(error: Error): boolean {
  return /^(WRONGPASS|NOAUTH|NOPERM)\b|^ERR (invalid password|AUTH <password> called without any password)/.test(error.message);
}

/** Statuses in which a connection attempt is under way and will end soon in 'ready' or a failure. */
const connectingStatuses: ReadonlySet<RedisStatus | ClusterStatus> = new Set<RedisStatus | ClusterStatus>(['wait', 'connecting', 'connect']);
const connectionAttempts = new WeakMap<RedisClient, Promise<void>>();

/**
 * With the offline queue off, a command sent while a connection is still being set up (right after
 * start, or during a reconnect) would fail although Redis is fine. Wait for that attempt to finish,
 * bounded by the command timeout; while Redis is down the attempt fails within milliseconds.
 */
export function waitForConnectionAttempt(client: RedisClient, timeoutMs: number): Promise<void> {
  if (!connectingStatuses.has(client.status)) return Promise.resolve();
  let attempt = connectionAttempts.get(client);
  if (!attempt) {
    attempt = new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        for (const event of ['ready', 'close', 'end'] as const) client.off(event, finish);
        connectionAttempts.delete(client);
        resolve();
      };
      const timer = setTimeout(finish, timeoutMs);
      for (const event of ['ready', 'close', 'end'] as const) client.once(event, finish);
    });
    connectionAttempts.set(client, attempt);
  }
  return attempt;
}

const connectionErrorCodes = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
]);

// Messages ioredis uses for commands that never reached Redis or never got an answer, plus the
// replies of a Redis that is up but cannot serve yet (loading its data, replica without master, a
// cluster moving slots or missing a master, a master just demoted by a failover) or cannot take a
// write (full under noeviction, or unable to persist it): an outage until an operator acts.
const connectionErrorMessages = [
  /^Connection is closed/,
  /^Stream isn't writeable/,
  /^Command timed out/,
  /^Command aborted due to connection close/,
  /^connect ETIMEDOUT/,
  /^Socket timeout/,
  /^LOADING /,
  /^MASTERDOWN /,
  /^CLUSTERDOWN /,
  /^TRYAGAIN /,
  /^READONLY /,
  /^OOM /,
  /^MISCONF /,
  /^Cluster isn't ready/,
  /^None of startup nodes is available/,
  /^Failed to refresh slots cache/,
  /^All sentinels are unreachable/,
];

export function isConnectionFailure(error: Error): boolean {
  if (error.name === 'MaxRetriesPerRequestError' || error.name === 'ClusterAllFailedError') return true;
  const code = (error as Error & { code?: unknown }).code;
  if (typeof code === 'string' && connectionErrorCodes.has(code)) return true;
  return connectionErrorMessages.some((pattern) => pattern.test(error.message));
}

/**
 * ioredis attaches the failed command's arguments to its errors. Keys and values are token ids, token
 * payloads, hashed emails and IPs, which must never reach a log line, so keep only the command's name.
 */
export function withoutCommandArguments(error: Error): Error {
  const withCommand = error as Error & { command?: { name?: unknown; args?: unknown } };
  if (withCommand.command !== undefined && typeof withCommand.command === 'object') {
    withCommand.command = { name: withCommand.command.name };
  }
  return error;
}

/** Quits politely when connected; otherwise (or if quitting breaks) disconnects, which also stops reconnecting. */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status === 'end') return;
  if (client.status === 'ready') {
    try {
      await client.quit();
      return;
    } catch {
      // Broke while quitting: disconnect below.
    }
  }
  client.disconnect();
}
