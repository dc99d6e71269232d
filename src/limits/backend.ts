// Where rate-limit counters live: rate-limiter-flexible on Redis (its own fail-fast connection) when
// REDIS_URL is set, in this process otherwise. A store failure is DependencyUnavailable: fail closed.
import { Redis, type RedisStatus } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { DependencyUnavailable } from '../errors.ts';

/** One counter family: `points` per `seconds`, keys under `name`. */
export interface CounterSpec {
  name: string;
  points: number;
  seconds: number;
}

export interface CounterBackend {
  /** A limiter whose keys are `<storePrefix>limit:<name>:<key>`. */
  counter(spec: CounterSpec): RateLimiterAbstract;
  /** Runs a limiter call: a refusal (RateLimiterRes) passes through, any store failure becomes DependencyUnavailable. */
  run<Result>(operation: () => Promise<Result>): Promise<Result>;
  close(): Promise<void>;
}

const commandTimeoutMs = 2000;
const connectingStatuses: ReadonlySet<RedisStatus> = new Set<RedisStatus>(['wait', 'connecting', 'connect']);

export function createCounterBackend(options: { redisUrl: string | undefined; prefix: string; onError?: (error: Error) => void }): CounterBackend {
  const keyPrefix = (name: string) => `${options.prefix}limit:${name}`;
  if (!options.redisUrl) {
    return {
      counter: ({ name, points, seconds }) => new RateLimiterMemory({ keyPrefix: keyPrefix(name), points, duration: seconds }),
      run: (operation) => operation(),
      async close() {},
    };
  }
  // Its own connection: the limiter must fail fast during an outage exactly like the store does.
  const client = new Redis(options.redisUrl, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: commandTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
  });
  client.on('error', (error: Error) => options.onError?.(error));
  return {
    counter: ({ name, points, seconds }) => new RateLimiterRedis({
      storeClient: client, keyPrefix: keyPrefix(name), points, duration: seconds,
      // No insurance limiter: when Redis is down, nobody gets unlimited attempts.
      rejectIfRedisNotReady: true,
    }),
    async run(operation) {
      try {
        await settledConnection(client);
        return await operation();
      } catch (error) {
        if (error instanceof RateLimiterRes) throw error;
        throw new DependencyUnavailable('store', { cause: error instanceof Error ? withoutArguments(error) : new Error(String(error)) });
      }
    },
    async close() {
      if (client.status === 'ready') {
        try {
          await client.quit();
          return;
        } catch {
          // Broke while quitting; disconnect below still stops reconnecting.
        }
      }
      client.disconnect();
    },
  };
}

/** Right after start or during a reconnect, wait (bounded) for the attempt instead of failing a healthy Redis. */
async function settledConnection(client: Redis): Promise<void> {
  if (!connectingStatuses.has(client.status)) return;
  await new Promise<void>((resolve) => {
    const finish = (): void => {
      clearTimeout(timer);
      for (const event of ['ready', 'close', 'end'] as const) client.off(event, finish);
      resolve();
    };
    const timer = setTimeout(finish, commandTimeoutMs);
    for (const event of ['ready', 'close', 'end'] as const) client.once(event, finish);
  });
}

/** ioredis attaches command arguments (here: hashed emails, IPs) to errors; keep only the command's name. */
function withoutArguments(error: Error): Error {
  const withCommand = error as Error & { command?: { name?: unknown } };
  if (withCommand.command && typeof withCommand.command === 'object') withCommand.command = { name: withCommand.command.name };
  return error;
}
