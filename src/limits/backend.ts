// Where rate-limit counters live: rate-limiter-flexible on Redis (its own fail-fast connection) when
// Redis is configured, in this process otherwise. A store failure is DependencyUnavailable: fail closed.
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { DependencyUnavailable } from '../errors.ts';
import { timed, type CallObserver } from '../dependency-calls.ts';
import {
  DEFAULT_COMMAND_TIMEOUT_MS, closeRedis, openFailFastRedis, waitForConnectionAttempt, withoutCommandArguments, type RedisConnection,
} from '../store/redis-connection.ts';

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

/** RateLimiterMemory expires a key with a timer, and a Node timer waits at most 2^31−1 ms (about 24.8 days). */
const LONGEST_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/**
 * `observe`: told how long each call to Redis took and how it ended (a refusal is an answer: ok); none are made
 * on the in-process counters.
 */
export function createCounterBackend(options: { redis: RedisConnection | undefined; prefix: string; onError?: (error: Error) => void; observe?: CallObserver | undefined }): CounterBackend {
  const keyPrefix = (name: string) => `${options.prefix}limit:${name}`;
  if (!options.redis) {
    return {
      // A longer timer would fire at once and drop the key: such keys (forgotten trusted devices) are kept for
      // the life of the process instead, where keeping one too long only leaves a device untrusted longer.
      counter: ({ name, points, seconds }) => new RateLimiterMemory({
        keyPrefix: keyPrefix(name), points, duration: seconds > LONGEST_TIMER_SECONDS ? 0 : seconds,
      }),
      run: (operation) => operation(),
      async close() {},
    };
  }
  // Its own connection, failing fast like the store's. No resends: an increment applied twice would
  // count one attempt as two.
  const client = openFailFastRedis(options.redis, { commandTimeoutMs: DEFAULT_COMMAND_TIMEOUT_MS, onError: options.onError, resendAfterReconnect: false, batchWrites: true });
  return {
    counter: ({ name, points, seconds }) => new RateLimiterRedis({
      storeClient: client, keyPrefix: keyPrefix(name), points, duration: seconds,
      // No insurance limiter: when Redis is down, nobody gets unlimited attempts.
      rejectIfRedisNotReady: true,
    }),
    async run(operation) {
      const answer = await timed(options.observe, (error) => error instanceof DependencyUnavailable, async () => {
        try {
          await waitForConnectionAttempt(client, DEFAULT_COMMAND_TIMEOUT_MS);
          return { result: await operation() };
        } catch (error) {
          if (error instanceof RateLimiterRes) return { refusal: error };
          throw new DependencyUnavailable('store', { cause: error instanceof Error ? withoutCommandArguments(error) : new Error(String(error)) });
        }
      });
      if ('refusal' in answer) throw answer.refusal;
      return answer.result;
    },
    close: () => closeRedis(client),
  };
}
