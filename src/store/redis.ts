// The Store on Redis (ioredis): records are hashes {value, consumedAt?} with EXPIRE, indexes are sets.
// It fails fast with DependencyUnavailable while Redis is unreachable and reconnects by itself.

import { Redis, type RedisStatus } from 'ioredis';
import { DependencyUnavailable } from '../errors.ts';
import type { Store, StoredRecord } from './store.ts';
import { wholeSecondsTtl } from './ttl.ts';

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL; credentials in it never appear in errors raised here. */
  url: string;
  /** Prepended to every key (records and indexes, also inside the consume script). */
  prefix: string;
  /** Told about connection errors the client reports in the background (they are otherwise dropped). */
  onError?: (error: Error) => void;
  /** A command without a reply after this long fails as DependencyUnavailable. Default 2000 ms. */
  commandTimeoutMs?: number;
}

const defaultCommandTimeoutMs = 2000;
const maximumReconnectDelayMs = 2000;

/*
 * HSETNX alone would create a TTL-less hash for a missing (expired) record, and a separate EXISTS
 * would race with other processes, so both run in one script. A hash field write keeps the key's TTL.
 * Returns -1 when the record is missing, 0 when it was already consumed, 1 for the one winner.
 */
const consumeScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('HSETNX', KEYS[1], 'consumedAt', ARGV[1])
`;

type ConsumeOutcome = -1 | 0 | 1;

/** The client with the script registered by defineCommand (ioredis adds the method at run time). */
type RedisWithConsume = Redis & {
  consumeRecord(key: string, atEpochSeconds: number): Promise<ConsumeOutcome>;
};

type TransactionResults = [error: Error | null, result: unknown][] | null;

/** Statuses in which a connection attempt is under way and will end soon in 'ready' or a failure. */
const connectingStatuses: ReadonlySet<RedisStatus> = new Set<RedisStatus>(['wait', 'connecting', 'connect']);

const connectionErrorCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// Messages ioredis uses for commands that never reached Redis or never got an answer, plus the
// replies of a Redis that is up but cannot serve yet (loading its data, replica without master).
const connectionErrorMessages = [
  /^Connection is closed/,
  /^Stream isn't writeable/,
  /^Command timed out/,
  /^Command aborted due to connection close/,
  /^connect ETIMEDOUT/,
  /^Socket timeout/,
  /^LOADING /,
  /^MASTERDOWN /,
];

export class RedisStore implements Store {
  readonly #client: RedisWithConsume;
  readonly #commandTimeoutMs: number;
  #connectionAttempt: Promise<void> | undefined;

  constructor(options: RedisStoreOptions) {
    this.#commandTimeoutMs = options.commandTimeoutMs ?? defaultCommandTimeoutMs;
    const client = new Redis(options.url, {
      keyPrefix: options.prefix,
      // Without these a command issued during an outage waits for the connection instead of failing.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: this.#commandTimeoutMs,
      // Keep trying forever: the store must come back by itself when Redis does.
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), maximumReconnectDelayMs),
      // After a brief drop, commands whose replies were lost are resent. Every command used here is
      // idempotent (DEL/HSET/EXPIRE, HSETNX, SADD), so a resend never applies an operation twice.
      // Like any timeout, it means a command reported as failed may still have taken effect.
      autoResendUnfulfilledCommands: true,
    });
    client.defineCommand('consumeRecord', { numberOfKeys: 1, lua: consumeScript });
    // An 'error' event without a listener would crash the process; reconnecting is already automatic.
    client.on('error', (error: Error) => options.onError?.(withoutCommandArguments(error)));
    this.#client = client as RedisWithConsume;
  }

  async put(key: string, value: string, ttlSeconds: number): Promise<void> {
    const lifetimeSeconds = wholeSecondsTtl(ttlSeconds);
    await this.#run(async () => {
      // DEL first so a replaced record loses its consumed mark along with its old value.
      const results = await this.#client
        .multi()
        .del(key)
        .hset(key, 'value', value)
        .expire(key, lifetimeSeconds)
        .exec();
      throwFirstTransactionError(results);
    });
  }

  get(key: string): Promise<StoredRecord | undefined> {
    return this.#run(async () => {
      const fields = await this.#client.hgetall(key);
      const value = fields['value'];
      if (value === undefined) return undefined;
      const consumedAt = fields['consumedAt'];
      return consumedAt === undefined ? { value } : { value, consumedAt: Number(consumedAt) };
    });
  }

  consume(key: string, atEpochSeconds: number): Promise<boolean> {
    return this.#run(async () => (await this.#client.consumeRecord(key, atEpochSeconds)) === 1);
  }

  async delete(keys: readonly string[]): Promise<void> {
    // DEL without keys is a syntax error in Redis; deleting nothing is not.
    if (keys.length === 0) return;
    await this.#run(async () => {
      await this.#client.del(...keys);
    });
  }

  async addToIndex(indexKey: string, member: string, ttlSeconds: number): Promise<void> {
    const lifetimeSeconds = wholeSecondsTtl(ttlSeconds);
    await this.#run(async () => {
      // NX gives a new set its TTL; GT only ever lengthens an existing one (GT ignores TTL-less keys).
      const results = await this.#client
        .multi()
        .sadd(indexKey, member)
        .expire(indexKey, lifetimeSeconds, 'NX')
        .expire(indexKey, lifetimeSeconds, 'GT')
        .exec();
      throwFirstTransactionError(results);
    });
  }

  indexMembers(indexKey: string): Promise<string[]> {
    return this.#run(() => this.#client.smembers(indexKey));
  }

  ping(): Promise<void> {
    return this.#run(async () => {
      await this.#client.ping();
    });
  }

  async close(): Promise<void> {
    const status = this.#client.status;
    if (status === 'end') return;
    if (status === 'ready') {
      try {
        await this.#client.quit();
        return;
      } catch {
        // The connection broke while quitting; disconnecting below still stops the reconnect loop.
      }
    }
    this.#client.disconnect();
  }

  /** Runs one operation, turning connection-level failures into DependencyUnavailable. */
  async #run<Result>(operation: () => Promise<Result>): Promise<Result> {
    try {
      await this.#awaitConnectionAttempt();
      return await operation();
    } catch (error) {
      throw toStoreError(error);
    }
  }

  /**
   * With the offline queue off, a command sent while a connection is still being set up (right
   * after start, or during a reconnect) would fail although Redis is fine. Wait for that attempt
   * to finish, bounded by the command timeout; while Redis is down the attempt fails within
   * milliseconds and the command then fails fast.
   */
  #awaitConnectionAttempt(): Promise<void> {
    if (!connectingStatuses.has(this.#client.status)) return Promise.resolve();
    this.#connectionAttempt ??= new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        for (const event of ['ready', 'close', 'end'] as const) this.#client.off(event, finish);
        this.#connectionAttempt = undefined;
        resolve();
      };
      const timer = setTimeout(finish, this.#commandTimeoutMs);
      for (const event of ['ready', 'close', 'end'] as const) this.#client.once(event, finish);
    });
    return this.#connectionAttempt;
  }
}

function throwFirstTransactionError(results: TransactionResults): void {
  // exec() resolves null only when a WATCHed key changed; nothing here WATCHes.
  if (results === null) throw new Error('Redis transaction was aborted');
  for (const [error] of results) {
    if (error !== null) throw error;
  }
}

function isConnectionFailure(error: Error): boolean {
  if (error.name === 'MaxRetriesPerRequestError') return true;
  const code = (error as Error & { code?: unknown }).code;
  if (typeof code === 'string' && connectionErrorCodes.has(code)) return true;
  return connectionErrorMessages.some((pattern) => pattern.test(error.message));
}

function toStoreError(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(`Redis store failed: ${String(error)}`);
  const sanitized = withoutCommandArguments(error);
  if (isConnectionFailure(sanitized)) return new DependencyUnavailable('store', { cause: sanitized });
  return sanitized;
}

/**
 * ioredis attaches the failed command's arguments to its errors. Keys and values here are token
 * ids and token payloads, which must never reach a log line, so keep only the command's name.
 */
function withoutCommandArguments(error: Error): Error {
  const withCommand = error as Error & { command?: { name?: unknown; args?: unknown } };
  if (withCommand.command !== undefined && typeof withCommand.command === 'object') {
    withCommand.command = { name: withCommand.command.name };
  }
  return error;
}
